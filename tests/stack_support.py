"""The local stack in tests, two ways.

- `LocalStack` and `make_stack`: the resources of one test (or one module) on the session's emulators, uniquely
  named, yielded and deleted at teardown, in the manner of python-docs-samples' dataflow/conftest.py. The
  `make_stack` fixture (tests/conftest.py) hands the factory to tests and fixtures of any scope.
- `Stack`: the stack as a user drives it, with the `workbench` CLI in a WORKBENCH_HOME of its own (tests that run
  commands end to end: the foreign pipelines, `workbench check`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from eventmodel import resources as names

REPO = Path(__file__).resolve().parents[1]
PROJECT = "workbench-local"  # the stack's project (`workbench up` default)
BUCKET = "workbench-local"  # the bucket `workbench up --gcs` makes

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

    def workbench(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None, cwd: Path = REPO):
        """`python -m workbench.cli ARGS`, as a user runs it (from the repository unless `cwd`); output in .text."""
        argv = [sys.executable, "-m", "workbench.cli", *args]
        done = subprocess.run(argv, cwd=cwd, env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        done.text = done.stdout + done.stderr  # type: ignore[attr-defined]
        return done

    def bigquery(self):
        """A strict client (location US) of the stack's BigQuery emulator, as the user's `bq` would be.

        Strict mode's partition-filter rules name the workbench's own tables (ddl/) by table name in any dataset:
        the flattened design's `user_activity` is not partitioned, so those rules do not apply to these datasets."""
        from endpoints import bigquery_strict
        from endpoints.bigquery import bigquery_client

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
class LocalStack:
    """One test's (or one module's) resources on the local emulators: a project of its own on the Pub/Sub emulator
    (the pipeline's topic and subscription, the dead-letter pair, reconcile's subscription), the BigQuery model in
    a dataset of that project, an S3 bucket, a GCS bucket; a WORKBENCH_HOME and an output folder of its own. While
    it lives, the environment points at it (`env`), as `eval "$(workbench env)"` would."""

    project: str
    home: Path
    output: Path
    pubsub_emulator: Any  # workbench.localstack.emulators.Emulator
    bigquery_emulator: Any = None  # None: no BigQuery (dataset None)
    dataset: str | None = None
    s3_emulator: Any = None  # None: no bucket
    bucket: str | None = None
    gcs_emulator: Any = None  # None: no GCS bucket
    gcs_bucket: str | None = None

    @property
    def gcs_root(self) -> str:
        """gs://BUCKET of the stack's GCS bucket, for an --output-root on the emulator."""
        return f"gs://{self.gcs_bucket}"

    @property
    def pubsub(self) -> str:
        """HOST:PORT, as PUBSUB_EMULATOR_HOST and --emulator take it."""
        return self.pubsub_emulator.target

    @property
    def bigquery(self) -> str:
        """http://HOST:PORT, as BIGQUERY_EMULATOR_HOST and --bigquery_emulator_host take it."""
        return self.bigquery_emulator.endpoint

    @property
    def bigquery_host_port(self) -> str:
        return self.bigquery_emulator.host_port

    @property
    def env(self) -> dict[str, str]:
        env = {"WORKBENCH_HOME": str(self.home), "NO_GCE_CHECK": "true", "PUBSUB_EMULATOR_HOST": self.pubsub}
        if self.bigquery_emulator:
            env["BIGQUERY_EMULATOR_HOST"] = self.bigquery
        if self.s3_emulator:
            env.update(self.s3_emulator.exports)
        if self.gcs_emulator:
            env["STORAGE_EMULATOR_HOST"] = self.gcs_emulator.endpoint
        return env

    def bigquery_client(self) -> Any:
        """A client (strict, location US, as the workbench builds it) whose jobs run in the stack's project."""
        from endpoints.bigquery import bigquery_client

        return bigquery_client(self.project, self.bigquery_host_port, "US")


def make_stack(
    request: pytest.FixtureRequest,
    name: str,
    *,
    pubsub: Any = None,
    bigquery: Any = True,
    dataset: str = names.DATASET,
    s3: bool = False,
    gcs: Any = None,
    ack_deadline_s: int | None = None,
    project: str | None = None,
) -> LocalStack:
    """A LocalStack named `name`-<8 hex digits>, deleted when the scope of `request` ends (the requesting fixture's:
    a module-scoped fixture's stack lives for the module, a test's for the test).

    pubsub: the Pub/Sub emulator (default the session's `workbench_emulator`). bigquery: True for the session's
    `bigquery_emulator`, an emulator of the test's own, or False for none; the DDL (ddl/*.sql) is applied to
    `dataset` in the stack's project. s3: a bucket of its own on the session's `s3_emulator`, and the AWS variables
    that reach it. gcs: a GCS emulator (the test's own: the emulator slows as objects pile up, and a test may kill
    it) on which the stack makes a bucket, with STORAGE_EMULATOR_HOST and Beam's anonymous gs:// access.
    ack_deadline_s: the subscriptions' ack deadline (the local stack's default otherwise).
    project: a fixed project id, for a module whose helpers name it (unique per test all the same: the emulators
    are the session's, and the stack is deleted before the next test makes it again).
    """
    from ddl.apply import apply_ddl
    from workbench.localstack.stack import create_pubsub_resources

    suffix = uuid.uuid4().hex[:8]
    if request.scope == "function":  # the test's own monkeypatch: its changes and the stack's undo in one order
        env, folder = request.getfixturevalue("monkeypatch"), request.getfixturevalue("tmp_path")
    else:
        env, folder = pytest.MonkeyPatch(), request.getfixturevalue("tmp_path_factory").mktemp(name)
        request.addfinalizer(env.undo)
    bigquery = request.getfixturevalue("bigquery_emulator") if bigquery is True else bigquery or None
    stack = LocalStack(
        project=project or f"{name}-{suffix}",
        home=folder / "home",
        output=folder / "output",
        pubsub_emulator=pubsub or request.getfixturevalue("workbench_emulator"),
        bigquery_emulator=bigquery,
        dataset=dataset if bigquery else None,
        s3_emulator=request.getfixturevalue("s3_emulator") if s3 else None,
        bucket=f"{name}-{suffix}" if s3 else None,
        gcs_emulator=gcs,
        gcs_bucket=f"{name}-{suffix}" if gcs else None,
    )
    request.addfinalizer(lambda: delete_resources(stack))  # before anything is made: a half-made stack goes too
    for variable, value in stack.env.items():
        env.setenv(variable, value)
    create_pubsub_resources(
        stack.pubsub, stack.project, **({"ack_deadline_seconds": ack_deadline_s} if ack_deadline_s else {})
    )
    if bigquery:
        result = apply_ddl(project=stack.project, dataset=stack.dataset, emulator=stack.bigquery_host_port)
        skipped = [s for s, _ in result.skipped if "TABLE" in s.sql.upper() and "SNAPSHOT" not in s.sql.upper()]
        assert not skipped, f"the emulator refused tables of the model: {skipped}"
    if s3:
        stack.s3_emulator.s3_client().create_bucket(Bucket=stack.bucket)
    if gcs:
        from endpoints.storage import storage_client, use_anonymous_beam_credentials

        storage_client(stack.project, gcs.endpoint).create_bucket(stack.gcs_bucket)
        use_anonymous_beam_credentials()
    return stack


def answers(host_port: str) -> bool:
    """Whether something listens at HOST:PORT (a test may have stopped the emulator it gave the stack)."""
    host, port = host_port.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def delete_resources(stack: LocalStack) -> None:
    """Delete what lives in the stack's project and buckets (its own: nothing else lives there) on every emulator
    that still answers; a stopped emulator took its resources with it. Deleting twice is no error."""
    if answers(stack.pubsub):
        _delete_pubsub_resources(stack)
    if stack.bigquery_emulator and answers(stack.bigquery_host_port):
        with stack.bigquery_client() as client:
            for dataset in client.list_datasets(project=stack.project, timeout=30):
                client.delete_dataset(dataset.reference, delete_contents=True, not_found_ok=True, timeout=60)
    if stack.bucket and answers(stack.s3_emulator.host_port):
        _delete_s3_bucket(stack.s3_emulator.s3_client(), stack.bucket)
    if stack.gcs_bucket and answers(stack.gcs_emulator.host_port):
        from google.api_core import exceptions

        from endpoints.storage import storage_client

        with contextlib.suppress(exceptions.NotFound):
            storage_client(stack.project, stack.gcs_emulator.endpoint).get_bucket(stack.gcs_bucket).delete(force=True)


def _delete_pubsub_resources(stack: LocalStack) -> None:
    from google.api_core import exceptions

    from endpoints.pubsub import publisher_client, subscriber_client

    publisher, subscriber = publisher_client(stack.pubsub), subscriber_client(stack.pubsub)
    try:
        place = {"project": f"projects/{stack.project}"}
        for subscription in subscriber.list_subscriptions(request=place, timeout=10):
            with contextlib.suppress(exceptions.NotFound):
                subscriber.delete_subscription(subscription=subscription.name, timeout=10)
        for topic in publisher.list_topics(request=place, timeout=10):
            with contextlib.suppress(exceptions.NotFound):
                publisher.delete_topic(topic=topic.name, timeout=10)
    finally:
        publisher.transport.close()
        subscriber.close()


def _delete_s3_bucket(s3: Any, bucket: str) -> None:
    if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        return  # deleted already (by the test, or by an earlier call)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
    s3.delete_bucket(Bucket=bucket)


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


def processes_under(*folders: Path) -> list[tuple[int, str]]:
    """Processes whose working folder is inside one of `folders` (the emulators run in HOME/stack/work/*, the
    pipeline in the checkout)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:160]
        except OSError:
            continue
        if any(cwd == f or f in cwd.parents for f in folders):
            found.append((int(entry.name), command))
    return found
