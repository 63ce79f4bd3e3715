"""How `workbench demo` stops, and what it never does to a stack that was already up.

- SIGTERM and SIGHUP stop what the demo started (the pipeline, the stack), as Ctrl-C does, and the exit status
  says it was stopped (128 + the signal).
- `demo --chaos` on a running stack whose Pub/Sub emulator lacks the admin service restarts it only when that
  provably loses nothing (durable, or nothing ever published); otherwise it refuses and the messages stay.

The demos run as a user runs them: the CLI as a process, WORKBENCH_HOME in a tmp folder, the stack on free ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from eventmodel import resources as names
from workbench.localstack.ports import free_port, free_port_pair

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 300.0  # stack up, the pipeline's start and the publisher's on a busy 2-core machine
STOP_TIMEOUT_S = 120.0  # the publish drains, the pipeline stops (SIGKILL after 30 s), the stack goes down


def env_for(home: Path) -> dict[str, str]:
    env = {**os.environ, "WORKBENCH_HOME": str(home), "NO_GCE_CHECK": "true", "COLUMNS": "160"}
    for name in ("PUBSUB_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        env.pop(name, None)
    return env


def workbench(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "workbench.cli", *args]
    return subprocess.run(argv, cwd=home.parent, env=env_for(home), capture_output=True, timeout=timeout, check=False)


def start_demo(home: Path, *args: str) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "workbench.cli", "demo", "--pubsub-port", str(free_port_pair()),
            "--bigquery-port", str(free_port_pair()), *args]  # fmt: skip
    log = (home / "demo.log").open("wb")
    return subprocess.Popen(argv, cwd=home.parent, env=env_for(home), stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def demo_output(home: Path) -> str:
    return (home / "demo.log").read_text(errors="replace")[-4000:]


def stack_state(home: Path) -> dict:
    path = home / "stack" / "state.json"
    return orjson.loads(path.read_bytes()) if path.exists() else {"services": {}}


def run_manifests(home: Path) -> list[dict]:
    found = []
    for path in (home / "runs").glob("*/manifest.json"):
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            found.append(orjson.loads(path.read_bytes()))
    return found


def processes_of(home: Path) -> list[int]:
    """Every process whose environment names this home: the demo's children (pipeline, emulators) inherit it."""
    marker = f"WORKBENCH_HOME={home}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
    return found


def wait_for(what: str, ready, process: subprocess.Popen, home: Path, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the demo ended before {what} ({process.returncode}): {demo_output(home)}"
        if ready():
            return
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout:g} s: {demo_output(home)}")


def stop_and_check(process: subprocess.Popen, home: Path, signum: int) -> None:
    os.kill(process.pid, signum)  # the demo's pid alone, as `kill`, a supervisor or CI sends it
    try:
        code = process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the demo did not stop within {STOP_TIMEOUT_S:g} s: {demo_output(home)}") from None
    assert code == 128 + signum, demo_output(home)
    assert f"stopped by {signal.Signals(signum).name}" in demo_output(home)
    assert stack_state(home)["services"] == {}, "the stack the demo started is down"
    deadline = time.monotonic() + 15
    while processes_of(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_of(home), "nothing the demo started is left running (pipeline, emulators)"


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "home"
    yield home
    for pid in processes_of(home):  # a failed test leaves nothing behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_sigterm_during_the_publish_stops_the_pipeline_and_the_stack_the_demo_started(home):
    process = start_demo(home, "--count", "30000", "--rate", "500")
    try:
        wait_for("publish under way", lambda: any(m["totals"]["published"] >= 200 for m in run_manifests(home)),
                 process, home)  # fmt: skip
        stop_and_check(process, home, signal.SIGTERM)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    (manifest,) = run_manifests(home)
    assert manifest["status"] == "interrupted" and manifest["stop"]["signal"] == "SIGTERM"


def test_sighup_while_the_stack_starts_stops_what_did_start(home):
    process = start_demo(home, "--count", "1000")
    try:
        wait_for("BigQuery emulator starting", lambda: "bigquery" in stack_state(home)["services"], process, home)
        stop_and_check(process, home, signal.SIGHUP)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert not run_manifests(home), "stopped before anything was published"


def test_chaos_on_an_up_stack_with_messages_refuses_and_loses_nothing(home):
    from emulator.pubsub.admin import AdminClient

    pubsub_port, bigquery_port = free_port_pair(), free_port_pair()
    home.mkdir(parents=True)
    up = workbench(home, "up", "--pubsub-port", str(pubsub_port), "--bigquery-port", str(bigquery_port))
    assert up.returncode == 0, (up.stdout + up.stderr).decode()[-3000:]
    try:
        emulator = f"{names.LOCAL_HOST}:{pubsub_port}"
        sent = workbench(home, "publish", "--count", "300", "--rate", "3000", "--emulator", emulator,
                         "--project", names.DEFAULT_PROJECT)  # fmt: skip
        assert sent.returncode == 0, (sent.stdout + sent.stderr).decode()[-3000:]
        before = stack_state(home)["services"]["pubsub"]["pid"]

        done = workbench(home, "demo", "--chaos", "--count", "100")
        text = (done.stdout + done.stderr).decode()
        assert done.returncode == 2, text[-3000:]
        assert "admin service" in text and "300 messages were published" in text, text[-3000:]
        assert "workbench down" in text and "--pubsub-admin" in text  # the fix names what to run

        assert stack_state(home)["services"]["pubsub"]["pid"] == before, "the emulator was not restarted"
        with AdminClient(emulator) as admin:
            subscription = admin.stats()["subscriptions"][
                f"projects/{names.DEFAULT_PROJECT}/subscriptions/{names.SUBSCRIPTION}"
            ]
        assert subscription["backlog"] == 300, "every unread message is still there"
    finally:
        workbench(home, "down")
    assert stack_state(home)["services"] == {}


def test_a_restart_loses_nothing_only_when_durable_or_nothing_was_ever_published(tmp_path):
    from pubsub_support import publish_one

    from workbench.localstack.emulators import start_pubsub_emulator
    from workbench.localstack.stack import create_pubsub_resources, restart_would_discard

    with start_pubsub_emulator(project="restart") as emulator:
        entry = {"host": emulator.host, "port": emulator.port, "argv": list(emulator.service.argv)}
        create_pubsub_resources(emulator.target, "restart")
        assert restart_would_discard(entry) is None  # topics and subscriptions are recreated by `up`
        publish_one(emulator.target, f"projects/restart/topics/{names.TOPIC}")
        assert "1 messages were published" in restart_would_discard(entry)
        durable = {**entry, "argv": [*entry["argv"], "--data-dir", str(tmp_path)]}
        assert restart_would_discard(durable) is None  # a durable emulator replays its journal
    gone = {"host": names.LOCAL_HOST, "port": free_port(), "argv": []}
    assert "cannot be read" in restart_would_discard(gone)  # what cannot be checked is not assumed empty


def test_the_running_stack_is_reproduced_exactly_so_that_up_restarts_nothing(tmp_path, monkeypatch):
    from workbench.demo import running_config
    from workbench.localstack.stack import StackConfig

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    for config in (
        StackConfig(pubsub_port=9001, bigquery_port=9011),
        StackConfig(pubsub_port=9002, pubsub_admin=True, data_dir=tmp_path / "ps", bigquery_persistent=False),
        StackConfig(pubsub_port=9003, bigquery_time_travel=True, with_gcs=True, gcs_port=9100, with_s3=True),
        StackConfig(project="other", pubsub_port=9004, with_bigquery=False),
    ):
        state = {
            "project": config.project,
            "services": {s.name: {"pid": 1, "argv": s.argv, "host": config.host, "port": s.port}
                         for s in config.services()},
        }  # fmt: skip
        again = running_config(state)
        assert again is not None
        assert {s.name: s.argv for s in again.services()} == {s.name: s.argv for s in config.services()}
    odd = {"services": {"pubsub": {"pid": 1, "argv": ["python", "-m", "emulator.pubsub", "--seed", "7"], "port": 1}}}
    assert running_config(odd) is None  # not started by `up`: the demo restarts nothing of it


def pipelines_of(home: Path) -> list[int]:
    found = []
    for pid in processes_of(home):
        with contextlib.suppress(OSError):
            if b"run-pipeline" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


@pytest.mark.slow
def test_a_stack_left_by_a_killed_demo_is_stopped_by_the_next_demo(home):
    killed = start_demo(home, "--count", "30000", "--rate", "500")
    try:
        wait_for("publish under way", lambda: any(m["totals"]["published"] >= 100 for m in run_manifests(home)),
                 killed, home)  # fmt: skip
    finally:
        os.kill(killed.pid, signal.SIGKILL)  # no cleanup can run: the stack and the pipeline stay behind
        killed.wait(10)
    left = stack_state(home)["services"]
    assert {"pubsub", "bigquery"} <= set(left), "the killed demo left its stack running"
    deadline = time.monotonic() + 90
    while pipelines_of(home) and time.monotonic() < deadline:  # its pipeline stops once idle
        time.sleep(0.5)
    assert not pipelines_of(home)

    port = str(left["pubsub"]["port"])
    done = workbench(home, "demo", "--count", "500", "--rate", "1000", "--pubsub-port", port, timeout=600)
    text = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, text[-4000:]
    assert f"started by a demo that was killed (pid {killed.pid})" in text, text[-4000:]
    assert stack_state(home)["services"] == {}, "the next demo stopped the stack the killed one had started"
    assert not (home / "demo" / "stack-owner.json").exists()


def test_a_taken_port_names_the_demo_option_to_choose_another(home):
    import socket

    home.mkdir(parents=True)
    with socket.socket() as taken:
        taken.bind((names.LOCAL_HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = workbench(home, "demo", "--pubsub-port", str(port), "--bigquery-port", str(free_port_pair()))
    text = (done.stdout + done.stderr).decode()
    assert done.returncode == 2, text[-3000:]
    assert "workbench demo --pubsub-port N" in text and "workbench up --pubsub-port" not in text, text[-3000:]
    assert stack_state(home)["services"] == {}


def test_a_pipeline_already_reading_the_subscription_makes_the_demo_refuse(home):
    """A user's `workbench run-pipeline` in another terminal holds the subscription's lock: the demo's own pipeline
    would split the messages with it (31 'duplicated' events were seen), so the demo refuses, naming it, and stops
    the stack it started."""
    from workbench.pipeline_run.subscription_lock import claim_subscription

    home.mkdir(parents=True)
    ports = ("--pubsub-port", str(free_port_pair()), "--bigquery-port", str(free_port_pair()))
    with claim_subscription(names.DEFAULT_PROJECT, names.SUBSCRIPTION, home):
        done = workbench(home, "demo", "--count", "100", *ports)
    text = " ".join((done.stdout + done.stderr).decode().split())
    assert done.returncode == 2, text[-3000:]
    assert f"another pipeline already reads projects/{names.DEFAULT_PROJECT}/subscriptions/" in text, text[-3000:]
    assert f"pid {os.getpid()}" in text
    assert stack_state(home)["services"] == {}
    assert not run_manifests(home)  # nothing was published
