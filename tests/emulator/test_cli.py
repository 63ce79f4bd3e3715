"""`workbench emulator pubsub`: foreground run with clean SIGTERM shutdown, clear start-up errors, live view."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.pubsub.server import wait_healthy
from workbench.emulator_view import faults_line, stats_table
from workbench.localstack.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
WORKBENCH = [sys.executable, "-c", "from workbench.cli import main; main()"]

pytestmark = pytest.mark.timeout(60)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("view", "stop_signal"), [("--live", signal.SIGTERM), ("--no-live", signal.SIGTERM), ("--live", signal.SIGINT)]
)
def test_runs_in_foreground_and_stops_cleanly(view, stop_signal):
    port = free_port()
    process = subprocess.Popen(
        [*WORKBENCH, "emulator", "pubsub", "--port", str(port), view, "--seed", "3"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_healthy(f"127.0.0.1:{port}", timeout=30)
        process.send_signal(stop_signal)  # SIGINT is what Ctrl-C sends
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    text = err.decode()
    assert f"PUBSUB_EMULATOR_HOST=127.0.0.1:{port}" in text
    assert "stopped" in text


def test_port_in_use_exits_with_a_clear_message():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*WORKBENCH, "emulator", "pubsub", "--port", str(port), "--no-live"],
            cwd=ROOT,
            capture_output=True,
            timeout=30,
        )
    assert result.returncode == 2
    assert b"already in use" in result.stderr
    assert b"fix:" in result.stderr


def test_unwritable_data_dir_exits_with_a_clear_message(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = subprocess.run(
        [*WORKBENCH, "emulator", "pubsub", "--port", "0", "--no-live", "--data-dir", str(blocker / "data")],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"not writable" in result.stderr


def test_stats_table_shows_rates_between_snapshots():
    before = {
        "topics": {"projects/p/topics/t": {"published": 100, "subscriptions": 1}},
        "subscriptions": {
            "projects/p/subscriptions/s": {
                "topic": "projects/p/topics/t",
                "backlog": 10,
                "outstanding": 0,
                "delivered": 90,
                "acked": 90,
                "dead_lettered": 0,
            }
        },
    }
    after = {
        "topics": {"projects/p/topics/t": {"published": 300, "subscriptions": 1}},
        "subscriptions": {
            "projects/p/subscriptions/s": {
                "topic": "projects/p/topics/t",
                "backlog": 5,
                "outstanding": 0,
                "delivered": 295,
                "acked": 295,
                "dead_lettered": 1,
            }
        },
    }
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(stats_table(after, before, 2.0))
    text = console.export_text()
    assert "100/s" in text  # published 200 in 2 s
    assert "102/s" in text  # delivered 205 in 2 s
    assert "projects/p/subscriptions/s" in text


def test_faults_line_lists_settings_and_counts():
    report = {
        "seed": 7,
        "global": {"duplicate_rate": 0.1, "delay_ms": 0.0},
        "overrides": {"x": {}},
        "counts": {"duplicate": 3, "lost_ack": 0},
    }
    line = faults_line(report)
    assert "seed 7" in line and "duplicate_rate=0.1" in line and "duplicate 3" in line and "1 override" in line
