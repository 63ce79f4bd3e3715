"""How a `workbench publish` stops, run as a user runs it (the CLI as a process, its own WORKBENCH_HOME) against
a real Pub/Sub emulator: every stop signal leaves a manifest that says `interrupted`, whose totals are what the
events CSVs hold, and that reconcile accepts (or refuses only for messages in flight). A SIGKILLed publisher is
dead, never "running" forever. And a run bounded by --duration publishes exactly the profile's integral.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from stack_support import LocalStack

from generator.stream import GeneratorConfig
from publisher.manifest import DEAD, INTERRUPTED, RUNNING, load_manifest, run_state, tally
from publisher.run import PublishPlan, publish
from publisher.sinks import FileTarget
from reconcile.errors import ReconcileError
from reconcile.run import resolve_run
from workbench.localstack.emulators import start_pubsub_emulator

pytestmark = pytest.mark.integration

STARTED_TIMEOUT_S = 90.0  # the CLI's start (imports, the generator's universe) on a busy 2-core machine
DRAIN_EXIT_S = 30.0  # a drained stop: what is in flight gets its outcome, then the process ends
FORCED_EXIT_S = 15.0  # a second signal: ABORT_WAIT_S at most, the CSV recount, the exit


@pytest.fixture(scope="module")
def pubsub_stack(make_stack, request) -> LocalStack:
    """The module's Pub/Sub resources on the session's emulator (no BigQuery: the publisher's tests read its CSVs)."""
    return make_stack(request, "stops", bigquery=False)


@pytest.fixture(scope="module")
def faulty_stack(make_stack, request) -> Iterator[LocalStack]:
    """Pub/Sub resources on an emulator of their own with the admin service, to hold messages in flight (every
    publish fails)."""
    with start_pubsub_emulator(project="stops", admin=True) as emulator:
        yield make_stack(request, "stops-faulty", pubsub=emulator, bigquery=False)


def start_publish(home: Path, stack: LocalStack, run_id: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "WORKBENCH_HOME": str(home), "NO_GCE_CHECK": "true", "COLUMNS": "120"}
    env.pop("PUBSUB_EMULATOR_HOST", None)
    argv = [sys.executable, "-m", "workbench.cli", "publish", "--emulator", stack.pubsub, "--project", stack.project,
            "--run-id", run_id, "--malformed-rate", "0.05", *args]  # fmt: skip
    home.mkdir(parents=True, exist_ok=True)
    log = (home / f"{run_id}.log").open("wb")
    # A session of its own: the test signals it as a terminal signals its foreground job (the group) or as
    # `kill` does (the pid), never the test runner.
    return subprocess.Popen(argv, cwd=home.parent, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def output(home: Path, run_id: str) -> str:
    return (home / f"{run_id}.log").read_text(errors="replace")[-3000:]


def wait_publishing(process: subprocess.Popen, home: Path, run_id: str, at_least: int = 300) -> dict:
    """Until the manifest shows `at_least` messages published (the run is well under way)."""
    deadline = time.monotonic() + STARTED_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"publish ended early ({process.returncode}): {output(home, run_id)}"
        manifest = load_manifest(run_id)
        if manifest and manifest["totals"]["published"] >= at_least:
            return manifest
        time.sleep(0.1)
    raise AssertionError(f"the publish did not get going within {STARTED_TIMEOUT_S:g} s: {output(home, run_id)}")


def wait_exit(process: subprocess.Popen, timeout: float) -> int:
    """The exit status, which must come within timeout (else the process is killed and the test fails)."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        raise AssertionError(f"the publish did not exit within {timeout:g} s of the stop") from None


def send(process: subprocess.Popen, signum: int, to: str) -> None:
    if to == "group":  # a terminal (Ctrl-C, hang-up) and `timeout` signal the whole foreground process group
        os.killpg(process.pid, signum)
    else:  # `kill PID`, a supervisor, a CI runner
        os.kill(process.pid, signum)


def assert_totals_are_the_csvs(run_id: str, manifest: dict) -> None:
    counts = tally(run_id)
    totals = manifest["totals"]
    assert totals["published"] == counts.get("published", 0), (totals, dict(counts))
    assert totals["failed"] == counts.get("failed", 0)
    assert totals["in_flight"] == totals["sent"] - totals["published"] - totals["failed"]
    assert manifest["counts"] == dict(sorted(counts.items()))


@pytest.mark.parametrize(
    ("signum", "to"),
    [(signal.SIGINT, "group"), (signal.SIGTERM, "pid"), (signal.SIGHUP, "pid")],
    ids=["SIGINT-once", "SIGTERM", "SIGHUP"],
)
def test_one_stop_signal_drains_and_leaves_a_reconcilable_run(home, pubsub_stack, signum, to):
    run_id = f"once-{signum.name.lower()}"
    process = start_publish(home, pubsub_stack, run_id, "--rate", "1500")
    try:
        wait_publishing(process, home, run_id)
        send(process, signum, to)
        code = wait_exit(process, DRAIN_EXIT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert code == 128 + signum, output(home, run_id)  # 130, 143, 129: the shell's "stopped by a signal"
    manifest = load_manifest(run_id)
    assert manifest["status"] == INTERRUPTED and run_state(manifest) == INTERRUPTED, output(home, run_id)
    assert manifest["stop"] == {"signal": signum.name, "forced": False, "complete": True}
    assert manifest["totals"]["in_flight"] == 0 and manifest["totals"]["published"] >= 300
    assert_totals_are_the_csvs(run_id, manifest)
    assert resolve_run(run_id)["run_id"] == run_id
    assert f"workbench reconcile {run_id}" in output(home, run_id)


@pytest.mark.parametrize(
    ("second", "workers"),
    [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGINT, 2)],
    ids=["SIGINT-twice", "SIGINT-then-SIGTERM", "SIGINT-twice-2-workers"],
)
def test_a_second_signal_stops_at_once_and_the_manifest_counts_what_is_in_flight(home, faulty_stack, second, workers):
    from emulator.pubsub.admin import AdminClient

    run_id = f"twice-{second.name.lower()}-{workers}"
    topic = f"projects/{faulty_stack.project}/topics/backend-events-topic"
    process = start_publish(home, faulty_stack, run_id, "--rate", "800", "--workers", str(workers))
    try:
        with AdminClient(faulty_stack.pubsub) as admin:
            wait_publishing(process, home, run_id, at_least=200)
            admin.set_faults(topic=topic, publish_failure_rate=1.0)  # from now on nothing gets an outcome soon
            try:
                time.sleep(1.0)
                os.killpg(process.pid, signal.SIGINT)  # drains: it would wait up to a minute for the retries
                time.sleep(1.0)
                assert process.poll() is None, "still draining the failing publishes"
                send(process, second, "group")
                code = wait_exit(process, FORCED_EXIT_S)
            finally:
                admin.clear_faults(topic)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert code == 128 + signal.SIGINT, output(home, run_id)  # the first signal names the stop
    manifest = load_manifest(run_id)
    assert manifest["status"] == INTERRUPTED, output(home, run_id)
    assert manifest["stop"]["forced"] is True and manifest["stop"]["complete"] is True
    assert_totals_are_the_csvs(run_id, manifest)
    in_flight = manifest["totals"]["in_flight"]
    assert in_flight > 0, manifest["totals"]
    with pytest.raises(ReconcileError, match=rf"{in_flight:,} of its .* messages were handed to Pub/Sub with no"):
        resolve_run(run_id)
    assert "in flight" in output(home, run_id)


@pytest.mark.parametrize("to", ["pid", "group"], ids=["SIGTERM-to-the-parent", "SIGTERM-to-the-group"])
def test_two_worker_processes_drain_on_sigterm(home, pubsub_stack, to):
    run_id = f"workers-{to}"
    process = start_publish(home, pubsub_stack, run_id, "--rate", "2000", "--workers", "2")
    try:
        wait_publishing(process, home, run_id, at_least=600)
        children = child_pids(process.pid)
        assert len(children) >= 2, children
        send(process, signal.SIGTERM, to)
        code = wait_exit(process, DRAIN_EXIT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert code == 128 + signal.SIGTERM, output(home, run_id)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "no worker outlives the publish"
    manifest = load_manifest(run_id)
    assert manifest["status"] == INTERRUPTED and manifest["stop"]["forced"] is False, output(home, run_id)
    assert manifest["totals"]["in_flight"] == 0
    assert len(list((home / "runs" / run_id).glob("events-*.csv"))) == 2
    assert_totals_are_the_csvs(run_id, manifest)
    assert resolve_run(run_id)["run_id"] == run_id


def child_pids(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
    return found


def test_a_killed_publisher_is_dead_and_reconcile_does_not_wait_for_it(home, pubsub_stack):
    run_id = "killed"
    process = start_publish(home, pubsub_stack, run_id, "--rate", "1000")
    try:
        running = wait_publishing(process, home, run_id)
        assert run_state(running) == RUNNING  # alive: its pid runs
        assert running["publisher"]["pid"] == process.pid
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    manifest = load_manifest(run_id)
    assert manifest["status"] == RUNNING and run_state(manifest) == DEAD

    env = {**os.environ, "WORKBENCH_HOME": str(home), "NO_GCE_CHECK": "true", "COLUMNS": "200"}
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "reconcile", run_id, "--wait", "15"],
                          cwd=home.parent, env=env, capture_output=True, timeout=60, check=False)  # fmt: skip
    took = time.monotonic() - began
    text = (done.stdout + done.stderr).decode()
    assert done.returncode == 2, text
    assert took < 12, f"reconcile waited {took:.1f} s for a publisher that is gone"
    assert f"pid {process.pid}" in text and "is dead" in text, text
    assert "--wait SECONDS" not in text


@pytest.mark.parametrize(
    ("rate", "profile", "duration", "expected"),
    [
        (500, "constant", 0.6, 300),  # rate x duration
        (333, "constant", 1.5, 500),  # 499.5, rounded half up
        (400, "ramp:1s:0", 1.3, 320),  # 200 under the ramp, then 400/s for 0.3 s
    ],
)
def test_a_run_bounded_by_duration_publishes_exactly_the_integral(home, rate, profile, duration, expected):
    out = home / f"{rate}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    plan = PublishPlan(run_id=f"duration-{rate}", target=FileTarget(str(out)), rate=rate, profile=profile,
                       duration=duration, generator=GeneratorConfig(seed=5))  # fmt: skip
    assert plan.total() == expected
    result = publish(plan)
    assert result.status == "completed"
    assert result.totals.published == expected
    assert len(out.read_bytes().splitlines()) == expected
    assert load_manifest(plan.run_id)["totals"]["published"] == expected


@pytest.mark.slow
def test_an_interrupted_run_reconciles_to_exit_0_when_the_sinks_hold_what_was_published(
    home, make_stack, request, tmp_path
):
    from workbench.pipeline_run.stream_launcher import LocalSettings
    from workbench.pipeline_run.stream_launcher import run as run_pipeline

    stack = make_stack(request, "stops-e2e")  # PUBSUB_EMULATOR_HOST too: the pipeline below runs in this process
    project, run_id, output = stack.project, "stopped-e2e", stack.output
    process = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "publish", "--emulator", stack.pubsub, "--project",
         project, "--run-id", run_id, "--rate", "1000", "--malformed-rate", "0.05", "--duplicate-rate", "0.02"],
        cwd=tmp_path, env={**os.environ, "WORKBENCH_HOME": str(home), "NO_GCE_CHECK": "true"},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTED_TIMEOUT_S
        while not ((m := load_manifest(run_id)) and m["totals"]["published"] >= 800) and time.monotonic() < deadline:
            assert process.poll() is None
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGTERM)
        assert wait_exit(process, DRAIN_EXIT_S) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert load_manifest(run_id)["status"] == INTERRUPTED

    args = ["--project", project, "--output_root", str(output), "--dataset", stack.dataset,
            "--bigquery_emulator_host", stack.bigquery, "--file_flush_seconds", "1"]  # fmt: skip
    assert run_pipeline(args, LocalSettings(stop_when_idle=3)).state == "DONE"

    env = {**os.environ, "WORKBENCH_HOME": str(home), "NO_GCE_CHECK": "true", "COLUMNS": "200",
           "PUBSUB_EMULATOR_HOST": stack.pubsub, "BIGQUERY_EMULATOR_HOST": stack.bigquery}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "reconcile", run_id, "--output-root", str(output), "--project",
         project, "--json", str(tmp_path / "report.json")],
        cwd=tmp_path, env=env, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    text = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, text[-4000:]
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    assert report["verdict"] == "matched" and report["run"]["status"] == INTERRUPTED
    assert report["run"]["totals"]["published"] >= 800
