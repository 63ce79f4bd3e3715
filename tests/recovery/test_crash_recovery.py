"""Nothing lost when things fail: `kill -9` of the pipeline and a sink outage, each ending in reconcile's verdict.

Real processes throughout: this project's Pub/Sub emulator, the BigQuery emulator, `workbench run-pipeline` as a
subprocess (killed with SIGKILL, restarted), the publisher at a controlled rate. The subscription's ack deadline
is 10 s so that what the killed run held comes back within the test.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eventmodel import resources as names
from generator.publisher import PublishPlan, publish
from generator.sinks import PubSubTarget
from generator.stream import GeneratorConfig
from reconcile.run import ReconcileTarget, reconcile

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ACK_DEADLINE_S = 10
RATE = 500
FLUSH_S = 2.0
_projects = itertools.count(1)


class Run:
    def __init__(self, pubsub: str, bigquery, home: Path, tmp_path: Path) -> None:
        self.pubsub = pubsub
        self.bigquery = bigquery
        self.home = home
        self.project = f"recovery-{next(_projects)}"
        self.output = tmp_path / "output"
        self.logs = tmp_path

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

    def publish(self, run_id: str, count: int) -> threading.Thread:
        plan = PublishPlan(
            run_id=run_id,
            target=PubSubTarget(self.project, names.TOPIC, self.pubsub),
            rate=RATE,
            count=count,
            generator=GeneratorConfig(seed=17, malformed_rate=0.05, duplicate_rate=0.02),
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
            bigquery_emulator=self.bigquery.endpoint,
            pubsub_emulator=self.pubsub,
        )


@pytest.fixture
def run(workbench_emulator, bigquery_emulator, tmp_path, monkeypatch) -> Run:
    from workbench.bq_apply import apply_ddl
    from workbench.localstack.stack import create_pubsub_resources

    home = tmp_path / "home"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", workbench_emulator.target)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    it = Run(workbench_emulator.target, bigquery_emulator, home, tmp_path)
    create_pubsub_resources(workbench_emulator.target, it.project, ack_deadline_seconds=ACK_DEADLINE_S)
    apply_ddl(project=it.project, emulator=bigquery_emulator.host_port)
    return it


def _digests(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.json")}


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def test_kill_9_mid_run_then_a_restart_loses_nothing_and_overwrites_nothing(run):
    count = 6000  # 12 s at 500/s; the kill comes 5 s in
    first = run.pipeline("first")
    try:
        run.wait_reading("first", first)
        publisher = run.publish("crash-run", count)
        time.sleep(5)
        os.killpg(first.pid, signal.SIGKILL)  # no drain, no goodbye: buffers, leases and dedup memory die with it
        first.wait(10)
    finally:
        _stop(first)
    written_before = _digests(run.output)
    publisher.join(60)
    assert publisher.outcome.get("status") == "completed"

    # The restart reads the backlog at once and what the killed run held once its leases run out (10 s).
    second = run.pipeline("second", "--stop-when-idle", str(ACK_DEADLINE_S + 8))
    try:
        assert second.wait(240) == 0, run.log("second")[-4000:]
    finally:
        _stop(second)
    assert "written and acknowledged" in run.log("second")

    after = _digests(run.output)
    assert {path: after.get(path) for path in written_before} == written_before, "no file was overwritten"
    report = reconcile("crash-run", run.target())
    assert report.exit_code == 0, (report.problems[:10], report.notes)
    # Written but not yet acknowledged at the kill: written again, as the same message. The window is what the
    # file buffers held (rate x flush interval) plus the acks in flight; BigQuery rows come before the files.
    again = report.raw_duplicates
    assert again, "the kill left written-but-unacked events (else this test proves nothing)"
    assert len(again) <= RATE * (FLUSH_S + 2), len(again)
