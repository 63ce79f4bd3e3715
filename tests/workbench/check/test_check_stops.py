"""Stopping `workbench check` as users do: SIGTERM while it publishes, Ctrl-C while it waits for the sinks, SIGHUP.
Each ends with 128 + the signal's number, the pipeline it started is stopped (drained) and nothing is left running;
a run stopped while publishing is recorded "interrupted", as a stopped `workbench publish` is."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

import orjson
import pytest
from stack_support import processes_under, stop_session

# A whole battery through a pipeline: minutes, not pytest's default 300 s per test.
pytestmark = pytest.mark.timeout(600)

PIPELINE = shlex.join([sys.executable, "-m", "workbench.cli", "run-pipeline", "--stop-when-idle", "60s"])
STOP_WITHIN_S = 150.0  # the pipeline drains what it read, then exits


def _start(stack, tmp_path) -> subprocess.Popen:
    (tmp_path / "output").mkdir()
    argv = [sys.executable, "-m", "workbench.cli", "check", "--pipeline", PIPELINE, "--rate", "100", "--duration",
            "20s", "--burst-for", "3s", "--repeats", "1", "--stop-when-idle", "60s", "--wait", "5m"]  # fmt: skip
    with (tmp_path / "check.log").open("wb") as log:  # a file, not a pipe: a full pipe would block the check
        return subprocess.Popen(argv, cwd=tmp_path, env=stack.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def _manifest(stack) -> dict | None:
    found = sorted((stack.home / "runs").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return orjson.loads(found[-1].read_bytes()) if found else None


def _stopped(check: subprocess.Popen, tmp_path) -> tuple[int, str]:
    try:
        code = check.wait(STOP_WITHIN_S)
    finally:
        if check.poll() is None:
            stop_session(check.pid)
    output = (tmp_path / "check.log").read_text(errors="replace")
    left = processes_under(tmp_path)
    if left:
        for pid, _ in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, f"left running: {left}\n{output[-3000:]}"
    return code, output


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_publishing_stops_the_publish_and_the_pipeline(check_stack, tmp_path, signum):
    check = _start(check_stack, tmp_path)
    _wait_for(lambda: (m := _manifest(check_stack)) is not None and m.get("status") == "running", 90,
              "the battery publishing")  # fmt: skip
    time.sleep(2)
    check.send_signal(signum)
    code, output = _stopped(check, tmp_path)
    assert code == 128 + signum, output[-3000:]
    manifest = _manifest(check_stack)
    assert manifest["status"] == "interrupted", manifest["status"]
    assert manifest["stop"]["signal"] == signal.Signals(signum).name
    assert "publish interrupted" in output


@pytest.mark.slow
def test_ctrl_c_while_waiting_for_the_sinks_stops_the_pipeline_it_started(check_stack, tmp_path):
    check = _start(check_stack, tmp_path)
    _wait_for(lambda: (m := _manifest(check_stack)) is not None and m.get("status") == "completed", 120,
              "the battery published")  # fmt: skip
    check.send_signal(signal.SIGINT)
    code, output = _stopped(check, tmp_path)
    assert code == 130, output[-3000:]
    assert "stopped by SIGINT: what the check started is stopped" in output
