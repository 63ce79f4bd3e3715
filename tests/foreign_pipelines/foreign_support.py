"""Helpers of the foreign-pipeline tests (conftest.py has the fixtures): the local stack as a user drives it with the
`workbench` CLI, a run and what it published, the contracts rendered with a run's places."""

from __future__ import annotations

import contextlib
import csv
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml
from stack_support import PROJECT, REPO, Stack, stop_session

HERE = Path(__file__).resolve().parent
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/backend-events-topic-sub"
LOCAL_TZ = "Asia/Kolkata"  # +05:30: shifts the hour and the minute of a local-time folder
IDLE = "5s"
PIPELINE_TIMEOUT_S = 240.0  # a run takes 15-50 s here; the slow tests allow 900 s (fixture setup included)
DRAIN_GRACE_S = 30.0


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
