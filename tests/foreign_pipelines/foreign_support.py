"""Helpers of the foreign-pipeline tests (conftest.py has the fixtures): the local stack as a user drives it with the
`workbench` CLI, a run and what it published, the contracts rendered with a run's places."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROJECT = "workbench-local"  # the stack's project (`workbench up` default)
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/backend-events-topic-sub"
BUCKET = "workbench-local"  # the bucket `workbench up --gcs` makes
LOCAL_TZ = "Asia/Kolkata"  # +05:30: shifts the hour and the minute of a local-time folder
IDLE = "5s"
PIPELINE_TIMEOUT_S = 240.0  # a run takes 15-50 s here; the slow tests allow 900 s (fixture setup included)
DRAIN_GRACE_S = 30.0

# Variables that would point a child at another stack than this module's (exec sets the right ones itself).
CLIENT_ENV = ("PUBSUB_EMULATOR_HOST", "PUBSUB_PROJECT_ID", "GOOGLE_CLOUD_PROJECT", "BIGQUERY_EMULATOR_HOST",
              "STORAGE_EMULATOR_HOST", "WORKBENCH_HOME", "TZ")  # fmt: skip


@dataclass
class Stack:
    home: Path
    pubsub_port: int
    bigquery_port: int
    gcs_port: int

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
        return {**env, "WORKBENCH_HOME": str(self.home), "NO_GCE_CHECK": "true", "COLUMNS": "120"}

    def workbench(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None):
        """`python -m workbench.cli ARGS` from the repository, as a user runs it; output in .text."""
        argv = [sys.executable, "-m", "workbench.cli", *args]
        done = subprocess.run(argv, cwd=REPO, env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        done.text = done.stdout + done.stderr  # type: ignore[attr-defined]
        return done

    def bigquery(self):
        """A strict client (location US) of the stack's BigQuery emulator, as the user's `bq` would be.

        Strict mode's partition-filter rules name the workbench's own tables (ddl/) by table name in any dataset:
        the flattened design's `user_activity` is not partitioned, so those rules do not apply to these datasets."""
        from eventmodel import bigquery_strict
        from workbench.localstack.clients import bigquery_client

        client = bigquery_client(PROJECT, f"127.0.0.1:{self.bigquery_port}", "US")
        inner = client.unwrapped if isinstance(client, bigquery_strict.StrictClient) else client
        return bigquery_strict.wrap(inner, rules={})

    exports: dict[str, str] = field(default_factory=dict)  # `workbench env` of the running stack

    @property
    def user_env(self) -> dict[str, str]:
        """The environment after `eval "$(workbench env)"`: what reconcile needs to read gs:// from the emulator."""
        return {**self.env, **self.exports}

    def storage(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        endpoint = {"api_endpoint": f"http://127.0.0.1:{self.gcs_port}"}
        return storage.Client(project=PROJECT, credentials=AnonymousCredentials(), client_options=endpoint)


@dataclass
class ForeignRun:
    """One publish run and the foreign pipeline that consumed it."""

    stack: Stack
    name: str  # flattened | whole_event | buggy
    run_id: str
    dataset: str
    output_root: str  # local folder or gs://
    contract: Path  # the pipeline's contract with this run's dataset and places
    dead_letter_prefix: str | None
    pipeline: subprocess.CompletedProcess
    published: list[dict[str, str]] = field(repr=False, default_factory=list)  # the manifest's event lines

    @property
    def env(self) -> dict[str, str]:
        return self.stack.user_env

    def workbench(self, *args: str, timeout: float = 300):
        """`python -m workbench.cli ARGS` with the stack's exports (e.g. `reconcile RUN --sinks CONTRACT`)."""
        return self.stack.workbench(*args, timeout=timeout, env=self.stack.exports)

    def expected(self, kind: str, with_duplicates: bool = False) -> list[dict[str, str]]:
        return [r for r in self.published if r["expected"] == kind and (with_duplicates or not r["duplicate"])]


def manifest_lines(home: Path, run_id: str) -> list[dict[str, str]]:
    lines: list[dict[str, str]] = []
    for path in sorted((home / "runs" / run_id).glob("events-*.csv")):
        with path.open(newline="") as handle:
            lines += list(csv.DictReader(handle))
    return lines


def publish(stack: Stack, count: int, rate: int, *extra: str) -> str:
    done = stack.workbench("publish", "--count", str(count), "--rate", str(rate), *extra)
    assert done.returncode == 0, done.text[-3000:]
    manifests = sorted((stack.home / "runs").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return orjson.loads(manifests[-1].read_bytes())["run_id"]


def run_pipeline(stack: Stack, script: str, *args: str, env: dict[str, str] | None = None):
    """`workbench exec -- python SCRIPT --streaming ...` until it drains; output in .text.

    Bounded: past PIPELINE_TIMEOUT_S, exec gets a SIGTERM (it passes it on: the pipeline drains), then whatever is
    left of its session is killed. exec runs the pipeline in a process group of its own, so killing exec alone would
    leave the pipeline running; both stay in the session started here, which is what gets stopped."""
    argv = [sys.executable, "-m", "workbench.cli", "exec", "--stop-when-idle", IDLE, "--", sys.executable,
            str(HERE / script), "--streaming", "--runner", "DirectRunner", "--project", PROJECT, "--subscription",
            SUBSCRIPTION, *args]  # fmt: skip
    with tempfile.TemporaryFile() as output:
        child = subprocess.Popen(argv, cwd=REPO, env={**stack.env, **(env or {})}, stdout=output,
                                 stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            code = child.wait(PIPELINE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(DRAIN_GRACE_S)
            code = None
        finally:
            stop_session(child.pid)
            child.wait(10)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if code is None:
        raise AssertionError(f"{script} did not drain within {PIPELINE_TIMEOUT_S:g} s; its output:\n{text[-4000:]}")
    done = subprocess.CompletedProcess(argv, code, text, "")
    done.text = text  # type: ignore[attr-defined]
    return done


def stop_session(session: int) -> None:
    """SIGKILL every process left in `session` (one this module started with start_new_session)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == session:
                os.kill(int(entry.name), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def render_contract(name: str, target: Path, dataset: str, root: str, dead_letter_prefix: str | None) -> Path:
    """The pipeline's contract as committed, with this run's dataset, root and dead-letter prefix."""
    contract = yaml.safe_load((HERE / f"{name}.sinks.yaml").read_text())
    contract["bigquery"]["dataset"] = dataset
    contract["gcs"]["root"] = root
    if dead_letter_prefix:
        contract["dead_letters"]["gcs"]["prefix"] = dead_letter_prefix
    target.write_text(yaml.safe_dump(contract, sort_keys=False))
    return target


def make_dataset(stack: Stack, dataset: str) -> None:
    with stack.bigquery() as client:
        client.create_dataset(dataset, exists_ok=True)


def every_kind_weights(**heavier: int) -> str:
    """--malformed-kinds naming every kind of the catalogue (weight 1), some heavier: a short run still meets them."""
    from generator.malformed import CATALOGUE

    return ",".join(f"{name}={heavier.get(name, 1)}" for name in CATALOGUE)


# The malformed kinds the buggy pipeline meets: not JSON (it drops them: bug 1) and no known event_type (it does
# dead-letter those). Kinds it would accept into its tables (bad enums, ...) are left out, so that each finding of
# a reconcile is one of the five bugs its docstring lists.
BUGGY_KINDS = ("cut_off_write=1,python_repr=1,trailing_comma=1,key_value_log=1,concatenated_events=1,empty_body=1,"
               "missing_event_type=1,misspelled_event_type=1")  # fmt: skip
BUGGY_DROPPED_KINDS = {"cut_off_write", "python_repr", "trailing_comma", "key_value_log", "concatenated_events",
                       "empty_body"}  # fmt: skip
