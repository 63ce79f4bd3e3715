"""`workbench demo` end to end, as a user runs it: its own stack on free ports, its exit status is reconcile's.

Slow (a real pipeline on the DirectRunner, and under chaos a wait past the 20 s ack deadline for redeliveries).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from workbench.localstack.ports import free_port_pair

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]


def workbench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home"), "NO_GCE_CHECK": "true", "COLUMNS": "160"}
    for name in ("PUBSUB_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "workbench.cli", *args]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, timeout=900, check=False)


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    pubsub_port, bigquery_port = free_port_pair(), free_port_pair()
    return workbench(tmp_path, "demo", "--pubsub-port", str(pubsub_port), "--bigquery-port", str(bigquery_port), *args)


def stack_is_down(tmp_path: Path) -> bool:
    state = orjson.loads((tmp_path / "home" / "stack" / "state.json").read_bytes())
    return state["services"] == {}


def faults_injected(text: str) -> dict[str, int]:
    """The counts of `chaos off; faults injected: {...}`, the emulator's own tally (missing: the test fails)."""
    found = re.search(r"faults injected: (\{[^}]*\})", " ".join(text.split()))
    assert found, f"no count of injected faults in:\n{text[-3000:]}"
    return ast.literal_eval(found.group(1))


def test_a_stack_that_was_up_stays_up_and_the_run_reconciles_again(tmp_path):
    pubsub_port, bigquery_port = free_port_pair(), free_port_pair()
    up = workbench(tmp_path, "up", "--pubsub-port", str(pubsub_port), "--bigquery-port", str(bigquery_port))
    assert up.returncode == 0, up.stderr.decode()[-2000:]
    try:
        done = workbench(tmp_path, "demo", "--count", "1000", "--rate", "1000")
        assert done.returncode == 0, (done.stdout + done.stderr).decode()[-4000:]
        assert not stack_is_down(tmp_path)
        again = workbench(tmp_path, "reconcile", "latest", "--json", str(tmp_path / "again.json"))
        assert again.returncode == 0, (again.stdout + again.stderr).decode()[-4000:]
        assert orjson.loads((tmp_path / "again.json").read_bytes())["verdict"] == "matched"
    finally:
        workbench(tmp_path, "down")
    assert stack_is_down(tmp_path)


def test_the_demo_under_chaos_loses_nothing(tmp_path):
    done = run_demo(tmp_path, "--chaos", "--count", "3000", "--rate", "1000", "--seed", "3")
    text = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, text[-4000:]
    injected = faults_injected(text)
    assert injected["duplicate"] > 0 and injected["lost_ack"] > 0 and injected["publish_failure"] > 0, injected
    assert "chaos: killed the pipeline (SIGKILL)" in text, "the pipeline was killed once and restarted"
    assert "events accounted for" in text
