"""The local stack as a user drives it, with the `workbench` CLI in a WORKBENCH_HOME of its own (tests that run
commands end to end: the foreign pipelines, `workbench check`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

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
