"""Keyed state and event-time timers of a user's own pipeline under `workbench exec`, as on Beam's DirectRunner: a
stock pipeline with DeduplicatePerKey (dedup_pipeline.py beside this file) keeps a key's first message and drops its
re-sends, also when a re-send reaches it in a later bundle than the first copy.

DeduplicatePerKey remembers a key in bag state until an event-time timer (element timestamp + the duration) clears
it; the timer fires when the watermark passes it. The workbench's reader reports that watermark
(workbench/pipeline_run/direct_runner.py `_watermark`): were it ahead of the messages' publish times by more than
the duration, or were state lost between bundles, the re-sends would be written again.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from endpoints.pubsub import publisher_client
from eventmodel import resources as names
from workbench.localstack.ports import free_port_pair

PIPELINE = Path(__file__).with_name("dedup_pipeline.py")
PROJECT = names.DEFAULT_PROJECT
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/{names.SUBSCRIPTION}"
CLIENT_ENV = ("PUBSUB_EMULATOR_HOST", "PUBSUB_PROJECT_ID", "GOOGLE_CLOUD_PROJECT", "BIGQUERY_EMULATOR_HOST",
              "STORAGE_EMULATOR_HOST", "WORKBENCH_HOME", "PYTHONPATH")  # fmt: skip
RUN_TIMEOUT_S = 240
# Long enough that the first batch's lines land (Beam's start included, on a busy machine) before the run
# drains for want of messages: the second batch must reach the same run.
IDLE = "15s"

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def user_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    return {**env, "WORKBENCH_HOME": str(home), "NO_GCE_CHECK": "true"}


def workbench(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "workbench.cli", *args]
    done = subprocess.run(argv, cwd=home, env=user_env(home), capture_output=True, text=True, timeout=timeout)
    done.text = done.stdout + done.stderr  # type: ignore[attr-defined]
    return done


@pytest.fixture(scope="module")
def stack_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("keyed-state-home")
    try:
        up = workbench(home, "up", "--pubsub-port", str(free_port_pair()), "--bigquery-port", str(free_port_pair()))
        assert up.returncode == 0, up.text[-3000:]
        yield home
    finally:
        workbench(home, "down", "--reset", timeout=120)


def pubsub_host(home: Path) -> str:
    shown = workbench(home, "env", timeout=60)
    exports = dict(line.removeprefix("export ").split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    return exports["PUBSUB_EMULATOR_HOST"]


def publish(host: str, messages: list[tuple[str, int]]) -> None:
    client = publisher_client(host)
    topic = client.topic_path(PROJECT, names.TOPIC)
    futures = [client.publish(topic, json.dumps({"key": key, "n": n}).encode()) for key, n in messages]
    for future in futures:
        future.result(timeout=30)
    client.transport.close()


def kept(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [(key, int(n)) for key, n in lines]


def wait_for(path: Path, keys: set[str], child: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not keys <= {key for key, _ in kept(path)}:
        assert child.poll() is None, f"the run ended before writing {sorted(keys - {k for k, _ in kept(path)})}"
        assert time.monotonic() < deadline, f"not written within {timeout:g} s: {sorted(keys)}"
        time.sleep(0.2)


def stop_session(session: int) -> None:
    """SIGKILL whatever is left of `session` (the exec this test started, and the pipeline it started)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue


def test_a_re_send_in_a_later_bundle_is_dropped_by_the_dedup_state(stack_home, tmp_path):
    host = pubsub_host(stack_home)
    output = tmp_path / "kept.txt"
    first = [(f"key-{i}", 1) for i in range(20)]
    # The same keys again (n=2: a copy written would show which one), and keys not seen yet (n=1).
    again = [(f"key-{i}", 2) for i in range(20)] + [(f"new-{i}", 1) for i in range(5)]
    publish(host, first)  # a backlog when the run starts: the first bundle
    argv = [sys.executable, "-m", "workbench.cli", "exec", "--stop-when-idle", IDLE, "--", sys.executable,
            str(PIPELINE), "--subscription", SUBSCRIPTION, "--output", str(output), "--streaming", "--runner",
            "DirectRunner", "--project", PROJECT]  # fmt: skip
    with (tmp_path / "exec.log").open("w+") as log:
        child = subprocess.Popen(argv, cwd=tmp_path, env=user_env(stack_home), stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # fmt: skip
        try:
            wait_for(output, {key for key, _ in first}, child, RUN_TIMEOUT_S)
            # The first copies are written, so their state is committed: the re-sends come in later bundles.
            publish(host, again)
            wait_for(output, {key for key, _ in again if key.startswith("new-")}, child, RUN_TIMEOUT_S)
            code = child.wait(RUN_TIMEOUT_S)
        finally:
            stop_session(child.pid)
            child.wait(10)
        log.seek(0)
        text = log.read()
    assert code == 0, text[-3000:]
    assert "read 45 messages" in text, text[-3000:]
    copies = collections.Counter(key for key, _ in kept(output))
    assert {key for key, count in copies.items() if count > 1} == set(), sorted(kept(output))
    assert sorted(kept(output)) == sorted(first + [m for m in again if m[0].startswith("new-")])
