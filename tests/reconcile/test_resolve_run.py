"""Which run reconcile checks: Pub/Sub and S3 history runs; a missing run and a run written to a file are refused
with what to do."""

from __future__ import annotations

import pytest

from publisher.manifest import write_manifest
from reconcile.errors import ReconcileError, StillPublishing
from reconcile.run import resolve_run


def test_a_run_that_does_not_exist_names_the_runs_command(home):
    with pytest.raises(ReconcileError, match="no run 'nope'") as raised:
        resolve_run("nope")
    assert "workbench runs" in raised.value.fix


def test_a_run_written_to_a_file_has_no_sink_to_check(home):
    write_manifest("r1", {"run_id": "r1", "status": "completed", "target": {"kind": "file"}, "manifest_version": 9})
    with pytest.raises(ReconcileError, match="written to a file"):
        resolve_run("r1")


def test_a_history_run_in_s3_is_reconciled_like_a_stream(home):
    manifest = {"run_id": "h1", "status": "completed", "target": {"kind": "s3"}, "manifest_version": 9}
    write_manifest("h1", manifest)
    assert resolve_run("h1")["run_id"] == "h1"
    assert resolve_run("latest")["run_id"] == "h1"  # the newest run a pipeline reads, history included


def run_manifest(run_id: str, status: str, totals: dict | None = None, **extra) -> dict:
    return {"run_id": run_id, "status": status, "target": {"kind": "pubsub"}, "manifest_version": 9,
            "totals": totals or {"sent": 10, "published": 9, "failed": 1, "in_flight": 0}, **extra}  # fmt: skip


def test_an_interrupted_run_whose_messages_all_have_an_outcome_is_reconciled(home):
    write_manifest("i1", run_manifest("i1", "interrupted", stop={"signal": "SIGTERM", "forced": False,
                                                                 "complete": True}))  # fmt: skip
    assert resolve_run("i1")["status"] == "interrupted"


@pytest.mark.parametrize(
    "totals",
    [
        {"sent": 3711, "published": 3600, "failed": 0, "in_flight": 111},
        {"sent": 3711, "published": 3600, "failed": 0, "in_flight": 0},  # a manifest whose sums disagree
    ],
)
def test_an_interrupted_run_with_messages_in_flight_is_refused_with_how_many(home, totals):
    write_manifest("i2", run_manifest("i2", "interrupted", totals))
    with pytest.raises(ReconcileError, match="111 of its 3,711 messages were handed to Pub/Sub") as raised:
        resolve_run("i2")
    assert "stop it only once" in raised.value.fix


def test_an_interrupted_run_whose_workers_did_not_report_is_refused(home):
    stop = {"signal": "SIGINT", "forced": True, "complete": False}
    write_manifest("i3", run_manifest("i3", "interrupted", stop=stop))
    with pytest.raises(ReconcileError, match="messages may have been handed"):
        resolve_run("i3")


def test_a_running_run_waits_and_a_dead_one_is_refused_naming_its_pid(home):
    import os
    import socket
    import subprocess
    import sys

    from publisher.manifest import this_process

    write_manifest("live", run_manifest("live", "running", publisher=this_process()))
    with pytest.raises(StillPublishing, match="still publishing") as raised:
        resolve_run("latest")
    assert raised.value.run_id == "live"  # the run "latest" named, for the caller that waits for it

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    pid = int(gone.stdout)
    assert pid != os.getpid()
    write_manifest("dead", run_manifest("dead", "running", publisher={"pid": pid, "host": socket.gethostname()}))
    with pytest.raises(ReconcileError, match=rf"run dead is dead: .* \(pid {pid} on ") as raised:
        resolve_run("dead")
    assert not isinstance(raised.value, StillPublishing)  # waiting would not bring it back
    assert "publish the run again" in raised.value.fix


def test_a_failed_run_is_refused(home):
    write_manifest("f1", run_manifest("f1", "failed"))
    with pytest.raises(ReconcileError, match="ended failed"):
        resolve_run("f1")


def test_waiting_for_a_publish_gives_up_still_publishing_and_a_dead_run_is_not_waited_for(home):
    """reconcile_waiting waits for a live publisher (polling, told to on_poll) by the error's type, and ends with
    StillPublishing when the wait runs out; a dead run is refused at once, however long the wait."""
    import socket
    import subprocess
    import sys
    import time

    from publisher.manifest import this_process
    from reconcile.run import ReconcileTarget, reconcile_waiting

    target = ReconcileTarget(output_root=None, dataset=None, read_dead_letter_topic=False)
    write_manifest("live", run_manifest("live", "running", publisher=this_process()))
    polls: list[str] = []
    began = time.monotonic()
    with pytest.raises(StillPublishing, match=r"run live is still publishing after 0.3 s of waiting") as raised:
        reconcile_waiting("live", target, wait_s=0.3, on_poll=lambda report, left, what: polls.append(what))
    assert raised.value.run_id == "live" and "longer --wait" in raised.value.fix
    assert polls and set(polls) == {"waiting for the publish to finish"}
    assert time.monotonic() - began < 5

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    write_manifest("dead", run_manifest("dead", "running", publisher={"pid": int(gone.stdout),
                                                                      "host": socket.gethostname()}))  # fmt: skip
    began = time.monotonic()
    with pytest.raises(ReconcileError, match="run dead is dead") as refused:
        reconcile_waiting("dead", target, wait_s=20)
    assert not isinstance(refused.value, StillPublishing)
    assert time.monotonic() - began < 5
