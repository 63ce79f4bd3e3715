"""Latency percentiles in constant memory, snapshot merging, and the streamed run manifest."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from publisher.errors import PublishError
from publisher.manifest import (
    EventLog,
    iter_events,
    list_runs,
    new_run_id,
    payload_digest,
    read_manifest,
    run_dir,
    write_manifest,
)
from publisher.stats import LatencyHistogram, RunTotals, WorkerSnapshot


def test_percentiles_are_within_the_bucket_width():
    rng = random.Random(3)
    samples = sorted(rng.lognormvariate(-4, 1.2) for _ in range(50_000))
    histogram = LatencyHistogram()
    for s in samples:
        histogram.record(s)
    for q in (50, 90, 99, 99.9):
        true = samples[int(len(samples) * q / 100) - 1]
        assert histogram.percentile(q) == pytest.approx(true, rel=0.03)


def test_empty_histogram_has_no_percentile():
    assert LatencyHistogram().percentile(50) is None


def test_snapshots_merge_by_adding():
    a, b = LatencyHistogram(), LatencyHistogram()
    for x in (0.001, 0.002, 0.003):
        a.record(x)
    b.record(0.5)
    totals = RunTotals.merge(
        [
            WorkerSnapshot(worker=0, sent=10, published=8, failed=1, latency=a.sparse()),
            WorkerSnapshot(worker=1, sent=5, published=5, latency=b.sparse(), error="boom"),
        ]
    )
    assert (totals.sent, totals.published, totals.failed, totals.in_flight) == (15, 13, 1, 1)
    assert totals.latency.total == 4
    assert totals.latency.percentile(100) == pytest.approx(0.5, rel=0.03)
    assert totals.errors == ["worker 1: boom"]


@dataclass
class Message:
    event_id: str
    expected: str
    event_type: str
    reason: str | None = None
    kind: str | None = None
    event_time: str | None = None
    duplicate: bool = False
    data: bytes = b"{}"
    canonical_digest: str | None = None


def test_event_log_streams_rows_and_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    run_id = new_run_id()
    log = EventLog(run_dir(run_id), worker=0)
    log.record(Message("e1", "order", "order", event_time="2025-02-08T13:09:01.000Z"), "published", "m1")
    log.record(Message("e2", "dead_letter", "inventory", "BAD_UUID", "bad_uuid"), "published", "m2")
    log.record(Message("e1", "order", "order", duplicate=True), "published", "m3")
    log.record(Message("e3", "user_activity", "user_activity"), "failed", None)
    log.close()
    rows = list(iter_events(run_id))
    assert [r["event_id"] for r in rows] == ["e1", "e2", "e1", "e3"]
    assert rows[1]["reason"] == "BAD_UUID" and rows[1]["kind"] == "bad_uuid"
    assert rows[2]["duplicate"] == "1" and rows[3]["outcome"] == "failed"
    assert rows[0]["payload_digest"] == payload_digest(b"{}") and len(rows[0]["payload_digest"]) == 32
    assert log.counts["expected:order"] == 2
    assert log.counts["kind:bad_uuid"] == 1
    assert log.counts["duplicates"] == 1
    assert log.counts["failed"] == 1 and "expected:user_activity" not in log.counts


def test_manifest_is_replaced_atomically_and_listed_newest_first(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    write_manifest("20250101-000000-aaaa", {"run_id": "20250101-000000-aaaa", "status": "completed"})
    write_manifest("20250102-000000-bbbb", {"run_id": "20250102-000000-bbbb", "status": "running"})
    write_manifest("20250102-000000-bbbb", {"run_id": "20250102-000000-bbbb", "status": "interrupted"})
    assert [m["run_id"] for m in list_runs()] == ["20250102-000000-bbbb", "20250101-000000-aaaa"]
    assert read_manifest("20250102-000000-bbbb")["status"] == "interrupted"
    assert not list(tmp_path.glob("runs/*/manifest.json.tmp"))


def test_unknown_run_says_how_to_list_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    with pytest.raises(PublishError) as raised:
        read_manifest("nope")
    assert "workbench runs" in raised.value.fix


def _exited_pid() -> int:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(done.stdout)


def test_run_state_tells_a_live_publisher_from_a_dead_one():
    import socket

    from publisher.manifest import run_state, this_process

    me = this_process()
    assert me["pid"] and me["host"] == socket.gethostname() and me["start_ticks"]
    assert run_state({"status": "running", "publisher": me}) == "running"
    gone = {"pid": _exited_pid(), "host": socket.gethostname(), "start_ticks": 1}
    assert run_state({"status": "running", "publisher": gone}) == "dead"
    # Our pid, but a process that started at another moment: the recorded publisher is gone, its pid recycled.
    recycled = {**me, "start_ticks": me["start_ticks"] - 1}
    assert run_state({"status": "running", "publisher": recycled}) == "dead"
    # What cannot be checked from here is never called dead.
    assert run_state({"status": "running", "publisher": {**gone, "host": "elsewhere"}}) == "running"
    assert run_state({"status": "running"}) == "running"
    # Only a running run can be dead: the others say how they ended.
    for status in ("completed", "interrupted", "failed"):
        assert run_state({"status": status, "publisher": gone}) == status


def test_a_forced_stop_closes_the_event_log_and_the_recount_leaves_the_rest_in_flight(tmp_path, monkeypatch):
    from publisher.manifest import recount

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    log = EventLog(run_dir("r"), worker=0)
    assert log.record(Message("e1", "order", "order"), "published", "m1")
    assert log.record(Message("e2", "order", "order"), "failed", None)
    log.close()
    assert not log.record(Message("e3", "order", "order"), "published", "m3")  # came after the stop
    totals, counts = recount("r", sent=5)
    assert totals == {"sent": 5, "published": 1, "failed": 1, "in_flight": 3}
    assert counts["expected:order"] == 1


def test_an_interrupted_run_gets_a_note_that_says_so():
    from publisher.manifest import stop_note

    manifest = {"run_id": "r", "status": "interrupted", "stop": {"signal": "SIGTERM"}, "totals": {"published": 3711},
                "plan": {"count": 10000}}  # fmt: skip
    assert stop_note(manifest) == (
        "run r was interrupted by SIGTERM: 3,711 of the 10,000 planned messages were published before the stop, "
        "and those are what this report compares"
    )
    assert stop_note({**manifest, "status": "completed"}) is None
