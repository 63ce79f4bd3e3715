"""Nothing lost when the pipeline dies: `kill -9` of `workbench run-pipeline` mid-run, then a restart.

Real processes throughout: this project's Pub/Sub emulator, the BigQuery emulator, `workbench run-pipeline` as a
subprocess (killed with SIGKILL, restarted), the publisher at 500/s. The subscription's ack deadline is 10 s so
that what the killed run held comes back within the test.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from recovery_support import FLUSH_S, RATE, Run, digests, prepare, stop

from reconcile.run import reconcile

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def run(make_stack, request) -> Run:
    return prepare(make_stack, request)


def test_kill_9_mid_run_then_a_restart_loses_nothing_and_overwrites_nothing(run):
    count = 6000  # 12 s at 500/s; the kill comes 5 s in, as a file lands
    first = run.pipeline("first")
    try:
        run.wait_reading("first", first)
        publisher = run.publish("crash-run", count)
        time.sleep(5)
        # Kill the moment a new file lands: its events are written, and their acks (batched every 0.1 s) are not
        # yet sent, so the test always has something to prove (a kill at a random moment could find none).
        files = len(list(run.output.rglob("*.json")))
        deadline = time.monotonic() + 10
        while len(list(run.output.rglob("*.json"))) == files and time.monotonic() < deadline:
            time.sleep(0.005)
        os.killpg(first.pid, signal.SIGKILL)  # no drain, no goodbye: buffers, leases and dedup memory die with it
        first.wait(10)
    finally:
        stop(first)
    written_before = digests(run.output)
    publisher.join(60)
    assert publisher.outcome.get("status") == "completed"

    # The restart reads the backlog at once and what the killed run held once its leases run out (10 s).
    # By the time it reads, the killed run's leases (10 s) have run out: its messages are back.
    second = run.pipeline("second", "--stop-when-idle", "5")
    try:
        assert second.wait(240) == 0, run.log("second")[-4000:]
    finally:
        stop(second)
    assert "written and acknowledged" in run.log("second")

    after = digests(run.output)
    assert {path: after.get(path) for path in written_before} == written_before, "no file was overwritten"
    report = reconcile("crash-run", run.target())
    assert report.exit_code == 0, (report.problems[:10], report.notes)
    # Written but not yet acknowledged at the kill: written again, as the same message. The window is what the
    # file buffers held (rate x flush interval) plus the acks in flight; BigQuery rows come before the files.
    again = report.raw_duplicates
    assert again, "the kill left written-but-unacked events (else this test proves nothing)"
    assert len(again) <= RATE * (FLUSH_S + 2), len(again)


def test_the_pubsub_emulator_restarted_in_durable_mode_loses_nothing_confirmed(make_stack, request, tmp_path):
    from workbench.localstack.emulators import start_pubsub_emulator

    data = tmp_path / "pubsub-data"
    emulator = start_pubsub_emulator(data_dir=data)
    port = emulator.port
    try:
        run = prepare(make_stack, request, pubsub=emulator)
        pipeline = run.pipeline("pipeline", "--stop-when-idle", "5")  # a restart drops the leases: redelivered at once
        try:
            run.wait_reading("pipeline", pipeline)
            publisher = run.publish("pubsub-restart-run", 5000)
            time.sleep(4)
            emulator.kill()  # SIGKILL: whatever it confirmed is in its journal (fsync before the answer)
            time.sleep(5)
            emulator = start_pubsub_emulator(port=port, data_dir=data)
            publisher.join(120)
            assert publisher.outcome.get("status") == "completed", "the publisher reconnected and went on"
            assert pipeline.wait(300) == 0, run.log("pipeline")[-4000:]
        finally:
            stop(pipeline)
        report = reconcile("pubsub-restart-run", run.target())
        assert report.exit_code == 0, (report.problems[:10], report.notes)
    finally:
        emulator.stop()
