"""Which run reconcile checks: Pub/Sub and S3 history runs; a missing run and a run written to a file are refused
with what to do."""

from __future__ import annotations

import pytest

from publisher.manifest import write_manifest
from reconcile.errors import ReconcileError
from reconcile.run import resolve_run


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    return tmp_path


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
