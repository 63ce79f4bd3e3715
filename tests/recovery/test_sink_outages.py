"""Nothing lost when a sink goes down: the BigQuery emulator and the GCS emulator killed mid-run (SIGKILL) and
started again.

Within the retry limit the pipeline backs off, retries, and writes everything once the sinks are back (both keep
their data on disk, as the local stack's BigQuery does); past the limit, rows go to the dead letter as
BIGQUERY_INSERT_FAILED and reconcile counts them as dead-lettered by the sink, not as lost. Each test owns the
emulator it kills, and ends with reconcile's verdict.
"""

from __future__ import annotations

import time

import pytest
from recovery_support import prepare, stop

from eventmodel import reasons as R
from reconcile.run import reconcile

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def own_bigquery(tmp_path):
    """A BigQuery emulator with its tables on disk, and a way to kill it and bring it back on the same port."""
    from workbench.localstack.emulators import start_bigquery_emulator

    data = tmp_path / "bigquery-data"
    data.mkdir()
    state = {"emulator": start_bigquery_emulator(project="outage", time_travel=False, data_dir=data)}

    def kill() -> None:
        state["emulator"].kill()

    def restart() -> None:
        port = state["emulator"].port
        state["emulator"] = start_bigquery_emulator(project="outage", port=port, time_travel=False, data_dir=data)

    state["kill"], state["restart"] = kill, restart
    try:
        yield state
    finally:
        state["emulator"].stop()


@pytest.fixture
def own_gcs(tmp_path, monkeypatch):
    """A GCS emulator with its objects on disk (they survive the kill), pointed at by STORAGE_EMULATOR_HOST."""
    from endpoints.storage import use_anonymous_beam_credentials
    from workbench.localstack.emulators import start_gcs_emulator

    storage = tmp_path / "gcs-data"
    storage.mkdir()
    state = {"emulator": start_gcs_emulator(bucket="workbench-test", data_dir=storage)}
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", state["emulator"].endpoint)
    use_anonymous_beam_credentials()

    def kill() -> None:
        state["emulator"].kill()

    def restart() -> None:
        port = state["emulator"].port
        state["emulator"] = start_gcs_emulator(port=port, bucket="workbench-test", data_dir=storage)

    state["kill"], state["restart"] = kill, restart
    try:
        yield state
    finally:
        state["emulator"].stop()


def _run_through_outage(run, sinks, count: int, down_s: float, limit_s: float, malformed_rate: float = 0.05):
    """Publish `count` events; once the pipeline reads them, kill every sink in `sinks` for `down_s`; return
    reconcile's report. The publisher starts first: the subscription keeps what it sends, and a pipeline started
    before it could stop idle (`--stop-when-idle`) while a loaded machine is still building the generator."""
    publisher = run.publish("outage-run", count, malformed_rate=malformed_rate)
    pipeline = run.pipeline("pipeline", "--sink-retry-seconds", str(limit_s), "--stop-when-idle", "5")
    try:
        run.wait_reading("pipeline", pipeline)
        for sink in sinks:
            sink["kill"]()
        time.sleep(down_s)
        for sink in sinks:
            sink["restart"]()
        publisher.join(120)
        assert publisher.outcome.get("status") == "completed"
        assert pipeline.wait(400) == 0, run.log("pipeline")[-4000:]
    finally:
        stop(pipeline)
    return reconcile("outage-run", run.target())


def test_bigquery_down_30_s_within_the_limit_is_retried_and_loses_nothing(make_stack, request, own_bigquery):
    run = prepare(make_stack, request, bigquery=own_bigquery["emulator"])
    restart = own_bigquery["restart"]
    own_bigquery["restart"] = lambda: (restart(), setattr(run, "bigquery", own_bigquery["emulator"]))
    # Valid events only: a dead letter's table insert would meet the outage first and hold the pipeline in its
    # own retries, and the event rows' retries would go untested.
    report = _run_through_outage(run, [own_bigquery], count=6000, down_s=30, limit_s=120, malformed_rate=0.0)
    assert report.exit_code == 0, (report.problems[:10], report.notes)
    log = run.log("pipeline")
    assert "sink retries" in log and "bigquery" in log.split("sink retries", 1)[1][:400], log[-3000:]
    assert R.BIGQUERY_INSERT_FAILED not in log, "nothing dead-lettered: BigQuery came back within the limit"
    assert sum(r["sink_gave_up"] or 0 for r in report.by_type) == 0


def test_gcs_down_30_s_with_a_gs_output_root_loses_nothing(make_stack, request, own_gcs):
    run = prepare(make_stack, request, gcs=own_gcs["emulator"])
    run.output = f"{run.gcs_root}/outage"
    report = _run_through_outage(run, [own_gcs], count=4000, down_s=30, limit_s=120)
    assert report.exit_code == 0, (report.problems[:10], report.notes)
    log = run.log("pipeline")
    assert R.GCS_WRITE_FAILED not in log
    assert f"gcs: writing {run.output}/" in log and "no answer" in log, "the outage was visible"


def test_bigquery_down_past_the_limit_dead_letters_the_rows_and_reconcile_counts_them(
    make_stack, request, own_bigquery
):
    run = prepare(make_stack, request, bigquery=own_bigquery["emulator"])
    pipeline = run.pipeline("pipeline", "--sink-retry-seconds", "3", "--stop-when-idle", "5")
    try:
        run.wait_reading("pipeline", pipeline)
        # Valid events only: a malformed event's dead_letters row would be given up too (the topic has it), and
        # reconcile rightly reports it missing from that table.
        publisher = run.publish("outage-run", 2500, malformed_rate=0.0)
        time.sleep(2)
        own_bigquery["kill"]()
        time.sleep(12)
        own_bigquery["restart"]()
        run.bigquery = own_bigquery["emulator"]
        publisher.join(120)
        assert publisher.outcome.get("status") == "completed"
        assert pipeline.wait(300) == 0, run.log("pipeline")[-4000:]
    finally:
        stop(pipeline)
    report = reconcile("outage-run", run.target())
    gave_up = sum(r["sink_gave_up"] or 0 for r in report.by_type)
    assert gave_up > 0, "rows written while BigQuery was down past the limit are dead-lettered"
    assert report.exit_code == 0, (report.problems[:10], report.notes)
    assert R.BIGQUERY_INSERT_FAILED in run.log("pipeline")
