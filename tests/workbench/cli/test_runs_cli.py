"""`workbench runs` as a user meets it: on terminals of 60, 80 and 160 columns every count is printed whole and
every run id can be copied; a run whose publisher died shows as dead (publisher.manifest.run_state)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from publisher.manifest import write_manifest

ROOT = Path(__file__).resolve().parents[3]


def runs(home: Path, columns: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_HOME": str(home), "COLUMNS": str(columns), "NO_GCE_CHECK": "true"}
    return subprocess.run([sys.executable, "-m", "workbench.cli", "runs"], capture_output=True, text=True,
                          timeout=60, cwd=home.parent, env=env)  # fmt: skip


def manifest(run_id: str, started: str, published: int, malformed: int, failed: int, **extra) -> dict:
    return {
        "run_id": run_id,
        "status": "completed",
        "started_at": started,
        "target": {"kind": "pubsub", "topic": "backend-events-topic"},
        "totals": {"sent": published + failed, "published": published, "failed": failed},
        "counts": {"expected:dead_letter": malformed},
        "elapsed_s": 60.0,
        **extra,
    }


RUNS = [
    manifest("20261207-091500-4f2a", "2026-12-07T09:15:00", 1_234_567, 98_765, 4_321),
    manifest("20261207-081344-fd45", "2026-12-07T08:13:44", 30_000, 2_345, 0),
    manifest("20261206-230000-0b1c", "2026-12-06T23:00:00", 2_712, 0, 17, status="interrupted"),
]


def _whole(number: str, text: str) -> bool:
    return re.search(rf"(?<![\d,.]){re.escape(number)}(?![\d,.])", text) is not None


@pytest.mark.parametrize("width", [60, 80, 160])
def test_every_count_and_run_id_is_whole(home, width):
    for m in RUNS:
        write_manifest(m["run_id"], m)
    shown = runs(home, width)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "…" not in text, text
    assert all(len(line) <= width for line in text.splitlines()), text
    for m in RUNS:
        assert m["run_id"] in text, text
        for n in (m["totals"]["published"], m["counts"]["expected:dead_letter"], m["totals"]["failed"]):
            assert _whole(f"{n:,}", text), f"{n:,} cut:\n{text}"
    # The status words are whole too (an 80-column terminal used to print `comp…`).
    assert "completed" in text and "interrupted" in text
    if width == 160:
        assert "backend-events-topic" in text and "20,648" in text and "left out" not in text


def test_a_run_whose_publisher_is_gone_shows_as_dead(home):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)  # that process has ended: its pid is free (or another process's, with other start ticks)
    dead = manifest("20261207-100000-dead", "2026-12-07T10:00:00", 2_245, 0, 0, status="running",
                    publisher={"pid": pid, "host": socket.gethostname(), "start_ticks": 1})  # fmt: skip
    live = manifest("20261207-100500-live", "2026-12-07T10:05:00", 10, 0, 0, status="running",
                    publisher={"pid": os.getpid(), "host": socket.gethostname()})  # fmt: skip
    write_manifest(dead["run_id"], dead)
    write_manifest(live["run_id"], live)
    text = runs(home, 160).stdout
    line = next(line for line in text.splitlines() if "20261207-100000-dead" in line)
    assert " dead " in line and "running" not in line, text
    assert "running" in next(line for line in text.splitlines() if "20261207-100500-live" in line)
    assert "publisher is gone" in runs(home, 160).stderr
