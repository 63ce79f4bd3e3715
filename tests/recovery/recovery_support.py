"""What the failure tests share: a project of their own on the session's emulators, the pipeline as a
subprocess (so that it can be killed), a publish run in a thread, reconcile's target."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from stack_support import LocalStack

from endpoints import Endpoints
from eventmodel import resources as names
from generator.stream import GeneratorConfig
from publisher.run import PublishPlan, publish
from publisher.sinks import PubSubTarget
from reconcile.run import ReconcileTarget

ROOT = Path(__file__).resolve().parents[2]
ACK_DEADLINE_S = 10
RATE = 500
FLUSH_S = 2.0


class Run:
    """A LocalStack (tests/conftest.py's `make_stack`) with the recovery tests' pipeline, publisher and target."""

    def __init__(self, stack: LocalStack) -> None:
        self.pubsub = stack.pubsub
        self.bigquery = stack.bigquery_emulator  # a test that restarts its emulator puts the new one here
        self.home = stack.home
        self.project = stack.project
        self.output = stack.output
        self.logs = stack.output.parent
        self.storage = stack.gcs_emulator.endpoint if stack.gcs_emulator else None
        self.gcs_root = stack.gcs_root if stack.gcs_emulator else None

    def pipeline(self, name: str, *extra: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "workbench.cli", "run-pipeline", "--project", self.project,
                "--emulator", self.pubsub, "--bigquery-emulator", self.bigquery.host_port,
                "--output-root", str(self.output), "--flush-seconds", str(FLUSH_S), *extra]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_HOME": str(self.home), "COLUMNS": "160"}
        log = (self.logs / f"{name}.log").open("wb")
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def wait_reading(self, name: str, process: subprocess.Popen, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while "DirectRunner" not in self.log(name):
            assert process.poll() is None, self.log(name)[-3000:]
            assert time.monotonic() < deadline, "the pipeline did not start"
            time.sleep(0.2)
        time.sleep(3)  # past the first pull

    def publish(self, run_id: str, count: int, malformed_rate: float = 0.05) -> threading.Thread:
        plan = PublishPlan(
            run_id=run_id,
            target=PubSubTarget(self.project, names.TOPIC, self.pubsub),
            rate=RATE,
            count=count,
            generator=GeneratorConfig(seed=17, malformed_rate=malformed_rate, duplicate_rate=0.02),
        )
        outcome = {}
        thread = threading.Thread(target=lambda: outcome.setdefault("status", publish(plan).status), daemon=True)
        thread.outcome = outcome
        thread.start()
        return thread

    def target(self) -> ReconcileTarget:
        return ReconcileTarget(
            output_root=str(self.output),
            project=self.project,
            dataset=names.DATASET,
            endpoints=Endpoints(bigquery=self.bigquery.endpoint, pubsub=self.pubsub, storage=self.storage),
        )


def prepare(make_stack, request, pubsub=None, bigquery=True, gcs=None) -> Run:
    """A Run in a project of its own: topic, subscription (ack deadline ACK_DEADLINE_S) and tables, on the session's
    emulators or on those given (make_stack's `pubsub`, `bigquery` and `gcs`)."""
    stack = make_stack(request, "recovery", pubsub=pubsub, bigquery=bigquery, gcs=gcs, ack_deadline_s=ACK_DEADLINE_S)
    return Run(stack)


def digests(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.json")}


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
