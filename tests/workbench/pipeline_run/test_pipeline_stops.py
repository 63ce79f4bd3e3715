"""`workbench run-pipeline` stopping outside the clean room: its Pub/Sub gone for good or only restarting, a second
pipeline on the same subscription, durations written as people write them.

Real processes: `workbench run-pipeline` is a subprocess as a user starts it (WORKBENCH_HOME in a tmp folder), the
Pub/Sub emulator is this project's, started (and killed) by the test where the test needs to kill it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_support import files_under, generated, lines_of

from eventmodel import resources as names

ROOT = Path(__file__).resolve().parents[3]


class Pipeline:
    """`workbench run-pipeline` as a subprocess in its own session, its output in a log file."""

    def __init__(self, tmp_path: Path, name: str, home: Path, args: list[str]) -> None:
        self.log_path = tmp_path / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_HOME": str(home), "COLUMNS": "160",
               "NO_GCE_CHECK": "true"}  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "workbench.cli", "run-pipeline", *args], cwd=ROOT,
                                            env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_reading(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while "DirectRunner" not in self.log():
            assert self.process.poll() is None, self.log()[-3000:]
            assert time.monotonic() < deadline, "the pipeline did not start: " + self.log()[-3000:]
            time.sleep(0.2)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run-pipeline still running after {timeout:g} s:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def started(tmp_path):
    """Start pipelines; every one still running at the end is killed."""
    pipelines: list[Pipeline] = []

    def start(name: str, home: Path, *args: str) -> Pipeline:
        pipelines.append(Pipeline(tmp_path, name, home, list(args)))
        return pipelines[-1]

    yield start
    for pipeline in pipelines:
        pipeline.kill()


def _publish(emulator: str, project: str, count: int, seed: int = 43) -> None:
    from google.cloud import pubsub_v1

    os.environ["PUBSUB_EMULATOR_HOST"] = emulator
    publisher = pubsub_v1.PublisherClient()
    try:
        topic = f"projects/{project}/topics/{names.TOPIC}"
        messages = generated(count, seed=seed, run_id=f"run-stops-{seed}")
        for future in [publisher.publish(topic, m.data, **m.attributes) for m in messages]:
            future.result(timeout=30)
    finally:
        publisher.stop()


def _leased(emulator: str, project: str) -> int:
    """Messages of the pipeline's subscription delivered and not yet acknowledged (the emulator's own count)."""
    from emulator.pubsub.admin import AdminClient

    with AdminClient(emulator) as admin:
        stats = admin.stats()["subscriptions"]
    return stats[f"projects/{project}/subscriptions/{names.SUBSCRIPTION}"]["outstanding"]


# --------------------------------------------------------------------------------- Pub/Sub gone or restarting


@pytest.mark.integration
@pytest.mark.slow
def test_an_emulator_gone_for_good_ends_the_run_in_bounded_time_with_the_fix(started, tmp_path, monkeypatch):
    from workbench.localstack.emulators import start_pubsub_emulator
    from workbench.localstack.stack import create_pubsub_resources

    monkeypatch.setenv("NO_GCE_CHECK", "true")
    project, count, limit_s = "stops-gone", 300, 5
    emulator = start_pubsub_emulator(project=project)
    try:
        create_pubsub_resources(emulator.target, project)
        _publish(emulator.target, project, count)
        output = tmp_path / "output"
        # 60 s file buffers: everything read is still unacknowledged when Pub/Sub goes away.
        pipeline = started("gone", tmp_path / "home", "--project", project, "--emulator", emulator.target,
                           "--dataset", "", "--output-root", str(output), "--flush-seconds", "60",
                           "--stop-when-idle", "2m", "--source-retry-seconds", str(limit_s))  # fmt: skip
        pipeline.wait_reading()
        deadline = time.monotonic() + 60
        while _leased(emulator.target, project) < count:
            assert time.monotonic() < deadline, "the pipeline did not read the backlog"
            time.sleep(0.5)
        emulator.kill()  # `workbench down`, as far as the pipeline can tell: nothing answers on the port any more
        killed_at = time.monotonic()
        status = pipeline.wait(limit_s + 60)
        took = time.monotonic() - killed_at
    finally:
        emulator.stop()
    log = pipeline.log()
    assert status == 2, log[-3000:]
    assert took < limit_s + 45, f"{took:.0f} s from the kill to the exit"
    assert f"the Pub/Sub emulator at {emulator.target} did not answer for {limit_s} s" in log, log[-3000:]
    assert "workbench up" in log and "--source-retry-seconds" in log
    assert f"{count} messages it read were not acknowledged" in log, log[-3000:]
    assert "delivers them again" in log
    assert log.count("acknowledge failed") <= 1, "one line per outage, not one per retry"
    assert "Traceback" not in log, log[-3000:]
    # What it held was written on the way out (the drain): an emulator that kept nothing loses nothing either.
    assert len(lines_of(files_under(str(output)))) == count


@pytest.mark.integration
@pytest.mark.slow
def test_workbench_down_with_rows_in_retry_still_ends_the_run_in_bounded_time(started, tmp_path, monkeypatch):
    """Both emulators gone, as after `workbench down`, while BigQuery rows are being retried: the run must not wait
    out the sink's retries (300 s) on its way out."""
    from ddl.apply import apply_ddl
    from workbench.localstack.emulators import start_bigquery_emulator, start_pubsub_emulator
    from workbench.localstack.stack import create_pubsub_resources

    monkeypatch.setenv("NO_GCE_CHECK", "true")
    project, limit_s = "stops-down", 5
    pubsub = start_pubsub_emulator(project=project)
    bigquery = start_bigquery_emulator(project=project, time_travel=False)
    try:
        create_pubsub_resources(pubsub.target, project)
        apply_ddl(project=project, emulator=bigquery.host_port)
        _publish(pubsub.target, project, 200)
        pipeline = started("down", tmp_path / "home", "--project", project, "--emulator", pubsub.target,
                           "--bigquery-emulator", bigquery.host_port, "--output-root", str(tmp_path / "output"),
                           "--stop-when-idle", "2m", "--source-retry-seconds", str(limit_s))  # fmt: skip
        pipeline.wait_reading()
        time.sleep(3)
        bigquery.kill()
        _publish(pubsub.target, project, 200, seed=45)  # read, and their rows retried against a dead BigQuery
        time.sleep(3)
        pubsub.kill()
        killed_at = time.monotonic()
        status = pipeline.wait(limit_s + 90)
        took = time.monotonic() - killed_at
    finally:
        pubsub.stop()
        bigquery.stop()
    log = pipeline.log()
    assert status == 2, log[-3000:]
    assert took < limit_s + 60, f"{took:.0f} s from `down` to the exit"
    assert f"the Pub/Sub emulator at {pubsub.target} did not answer" in log, log[-3000:]
    assert "messages it read were not acknowledged" in log and "Traceback" not in log, log[-3000:]


@pytest.mark.integration
@pytest.mark.slow
def test_a_durable_emulator_restarted_within_the_grace_period_is_ridden_out(started, tmp_path, monkeypatch):
    from workbench.localstack.emulators import start_pubsub_emulator
    from workbench.localstack.stack import create_pubsub_resources

    monkeypatch.setenv("NO_GCE_CHECK", "true")
    project, count, data, limit_s = "stops-restart", 300, tmp_path / "pubsub-data", 15
    emulator = start_pubsub_emulator(project=project, data_dir=data)
    try:
        create_pubsub_resources(emulator.target, project)
        _publish(emulator.target, project, count)
        output = tmp_path / "output"
        pipeline = started("restart", tmp_path / "home", "--project", project, "--emulator", emulator.target,
                           "--dataset", "", "--output-root", str(output), "--flush-seconds", "1",
                           "--stop-when-idle", "15s", "--source-retry-seconds", str(limit_s))  # fmt: skip
        pipeline.wait_reading()
        time.sleep(2)
        port = emulator.port
        emulator.kill()
        killed_at = time.monotonic()
        time.sleep(8)
        emulator = start_pubsub_emulator(project=project, port=port, data_dir=data)
        # Past the grace period counted from the kill: the outage ended at the restart, so the run goes on.
        time.sleep(max(0.0, killed_at + limit_s + 5 - time.monotonic()))
        assert pipeline.process.poll() is None, pipeline.log()[-3000:]
        _publish(emulator.target, project, 100, seed=44)  # other event ids: not dropped as duplicates
        status = pipeline.wait(120)
        backlog = _leased(emulator.target, project)
    finally:
        emulator.stop()
    log = pipeline.log()
    assert status == 0, log[-3000:]
    assert "pipeline stopped (no message for 15 s)" in log, log[-3000:]
    assert backlog == 0, "everything read, written and acknowledged"
    # Some events possibly twice (written before the kill, acknowledged after it: redelivered), none missing.
    ids = {line.get("event_id") for line in lines_of(files_under(str(output)))}
    assert len(ids) == count + 100, log[-3000:]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_lasts_from_the_first_failure_to_the_next_answer():
    from workbench.pipeline_run.source_health import SourceHealth, gone

    clock = FakeClock()
    health = SourceHealth(clock)
    assert health.down_for() == 0 and not gone(health.down_for(), 5)
    assert health.failed("ServiceUnavailable: 503") is True, "the first failure starts the outage"
    clock.now += 3
    assert health.failed("ServiceUnavailable: 503 again") is False, "a retry continues it"
    clock.now += 2
    assert health.down_for() == 5 and gone(health.down_for(), 5) and not gone(health.down_for(), 6)
    assert health.last_error == "ServiceUnavailable: 503 again"
    health.answered()
    assert health.down_for() == 0 and health.last_error is None
    assert not gone(1e9, None), "no limit: ridden out forever"


def test_failing_acks_are_one_log_line_per_outage_and_count_as_pubsub_down(caplog):
    from workbench.pipeline_run.ack_ledger import AckLedger

    clock = FakeClock()
    up = {"answers": False}

    def acknowledge(ids: list[str]) -> None:
        if not up["answers"]:
            raise ConnectionRefusedError("503 Connection refused")

    ledger = AckLedger(acknowledge, lambda ids, seconds: None, clock=clock)
    ledger.received([("m1", "a1", 10)])
    ledger.release(["m1"])
    with caplog.at_level("WARNING"):
        for _ in range(50):  # five seconds of retries, one every 0.1 s
            assert ledger._flush_acks() is False
            clock.now += 0.1
    assert sum("acknowledge failed" in r.getMessage() for r in caplog.records) == 1
    assert ledger.source.down_for() == pytest.approx(5.0)
    assert "503" in ledger.snapshot().troubles["pubsub acks"]
    up["answers"] = True
    assert ledger._flush_acks() is True
    assert ledger.source.down_for() == 0 and ledger.snapshot().acked == 1


def test_the_waiting_loop_gives_up_once_the_limit_is_reached():
    from workbench.pipeline_run.direct_runner import ReadControl
    from workbench.pipeline_run.progress import outage_note
    from workbench.pipeline_run.source_health import SourceHealth
    from workbench.pipeline_run.stream_launcher import _give_up_on_a_lost_source

    clock = FakeClock()
    control = ReadControl(source=SourceHealth(clock), source_retry_seconds=10)
    control.source.failed("ServiceUnavailable: 503 failed to connect to all addresses")
    clock.now += 9
    assert not _give_up_on_a_lost_source(control) and not control.stop.is_set()
    assert outage_note(control.source.down_for(), 10) == (
        "no answer for 9 s; the run stops after 10 s (--source-retry-seconds)"
    )
    clock.now += 1
    assert _give_up_on_a_lost_source(control) and control.stop.is_set()
    assert (
        control.source_lost.startswith("ServiceUnavailable") and control.stop_reason == "Pub/Sub unreachable for 10 s"
    )
    assert not _give_up_on_a_lost_source(control), "once"


# ---------------------------------------------------------------------------------------- one per subscription


@pytest.mark.integration
@pytest.mark.slow
def test_a_second_pipeline_on_the_same_subscription_and_home_is_refused_until_the_first_is_gone(started, stack,
                                                                                               tmp_path):  # fmt: skip
    home = tmp_path / "home"
    args = ("--project", stack.project, "--emulator", stack.pubsub, "--dataset", "",
            "--output-root", str(tmp_path / "output"))  # fmt: skip
    first = started("first", home, *args)
    first.wait_reading()

    second = started("second", home, *args, "--stop-when-idle", "1")
    assert second.wait(60) == 2, second.log()[-3000:]
    refused = second.log()
    assert f"another pipeline already reads projects/{stack.project}/subscriptions/{names.SUBSCRIPTION}" in refused
    assert f"pid {first.pid}" in refused and f"kill {first.pid}" in refused, refused
    assert "running since" in refused and "DirectRunner" not in refused, "refused before it started anything"
    assert first.process.poll() is None, "the first one runs on"

    os.killpg(first.pid, signal.SIGKILL)  # no goodbye: the kernel releases the lock with the process
    first.process.wait(10)
    third = started("third", home, *args, "--stop-when-idle", "1s")
    assert third.wait(90) == 0, third.log()[-3000:]
    assert "pipeline stopped (no message for 1 s)" in third.log()


def test_the_lock_names_its_holder_and_is_free_again_once_released(tmp_path):
    from workbench.errors import WorkbenchError
    from workbench.pipeline_run.subscription_lock import claim_subscription, claimed_by, refuse_if_claimed

    assert claimed_by("p", "sub", tmp_path) is None
    with claim_subscription("p", "sub", tmp_path) as lock:
        assert lock == tmp_path / "pipeline" / "dedup-p-sub.lock"
        holder = claimed_by("p", "sub", tmp_path)
        assert holder is not None and holder.pid == os.getpid() and holder.started.endswith("Z")
        with pytest.raises(WorkbenchError) as refused:
            refuse_if_claimed("p", "projects/p/subscriptions/sub", tmp_path)
        assert f"pid {os.getpid()}" in refused.value.message and f"kill {os.getpid()}" in refused.value.fix
        with pytest.raises(WorkbenchError), claim_subscription("p", "sub", tmp_path):
            pass
        assert claimed_by("p", "other-sub", tmp_path) is None, "one lock per subscription"
    assert claimed_by("p", "sub", tmp_path) is None
    with claim_subscription("p", "sub", tmp_path):
        pass


# ---------------------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize("idle", ["10s", "1m", "1m30s", "10", "2.5"])
def test_stop_when_idle_takes_a_duration(idle, tmp_path, monkeypatch, cli_runner):
    from workbench.cli import cli

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    for name in ("PUBSUB_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)

    result = cli_runner.invoke(cli, ["run-pipeline", "--stop-when-idle", idle, "--dedup-ttl", "10m"])
    # Past the options: it stops only because no local stack runs here.
    assert "Invalid value" not in result.output, result.output
    assert "no Pub/Sub emulator is known" in str(result.exception) + result.output


def test_a_bad_duration_is_a_usage_error_saying_what_to_write(cli_runner):

    from workbench.cli import cli

    result = cli_runner.invoke(cli, ["run-pipeline", "--stop-when-idle", "ten"])
    assert result.exit_code == 2 and "Invalid value for '--stop-when-idle'" in result.output
    assert "5m" in result.output
