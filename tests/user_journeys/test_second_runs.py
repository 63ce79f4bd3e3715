"""The product as a user runs it: from a checkout-like folder, WORKBENCH_HOME unset (the default, relative
./.workbench), default seeds, and every command run twice, with the README's commands in the README's order.

Each of these failed before issue 19: the second publish of a default seed repeated the first's event ids (the
pipeline rightly dropped them and reconcile called them missing), and the BigQuery emulator's tables did not
survive `down` + `up` under the relative default home. The only departure from the defaults is the ports (free
ones, so that tests running side by side do not meet); the commands find the stack through its state file, as
they do for a user who never ran `eval "$(workbench env)"`.

Slow: a real pipeline on the DirectRunner, several times.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from workbench.localstack.ports import free_port_pair

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENT_ENV = ("PUBSUB_EMULATOR_HOST", "PUBSUB_PROJECT_ID", "GOOGLE_CLOUD_PROJECT", "BIGQUERY_EMULATOR_HOST",
              "STORAGE_EMULATOR_HOST", "WORKBENCH_HOME")  # fmt: skip


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    return {**env, "NO_GCE_CHECK": "true", "COLUMNS": "80"}  # an ordinary terminal's width


def workbench(folder: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "workbench.cli", *args]
    done = subprocess.run(argv, cwd=folder, env=user_env(), capture_output=True, text=True, timeout=timeout)
    done.text = done.stdout + done.stderr  # type: ignore[attr-defined]
    return done


def flat(text: str) -> str:
    """Output with rich's line wrapping undone, for phrases that may break at 80 columns."""
    return " ".join(text.split())


def published_run(folder: Path) -> str:
    manifests = sorted((folder / ".workbench" / "runs").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return orjson.loads(manifests[-1].read_bytes())["run_id"]


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A folder like a user's checkout: the commands run from here, the home is its ./.workbench."""
    folder = tmp_path / "checkout"
    folder.mkdir()
    yield folder
    workbench(folder, "down", timeout=120)  # whatever a failed test left running


def readme_round(folder: Path, *publish_args: str) -> tuple[str, subprocess.CompletedProcess]:
    """publish -> run-pipeline -> reconcile, as the README lists them."""
    published = workbench(folder, "publish", "--rate", "500", "--count", "1500", "--malformed-rate", "0.05",
                          *publish_args)  # fmt: skip
    assert published.returncode == 0, published.text[-3000:]
    assert "target: the emulator at 127.0.0.1:" in flat(published.text)  # found the stack without the exports
    run_id = published_run(folder)
    pipeline = workbench(folder, "run-pipeline", "--stop-when-idle", "5s")
    assert pipeline.returncode == 0, pipeline.text[-3000:]
    verdict = workbench(folder, "reconcile", "latest", "--wait", "60s", "--json", "reports/latest.json")
    return run_id, verdict


def test_the_readme_sequence_twice_a_replay_and_a_restart(checkout):
    pubsub_port, bigquery_port = free_port_pair(), free_port_pair()
    up = workbench(checkout, "up", "--pubsub-port", str(pubsub_port), "--bigquery-port", str(bigquery_port))
    assert up.returncode == 0, up.text[-3000:]

    first, verdict = readme_round(checkout)
    assert verdict.returncode == 0, verdict.text[-4000:]
    second, verdict = readme_round(checkout)  # the same default seed
    assert verdict.returncode == 0, verdict.text[-4000:]
    assert second != first
    report = orjson.loads((checkout / "reports" / "latest.json").read_bytes())
    assert report["verdict"] == "matched" and report["run_id"] == second

    # An explicit replay of the first run: the pipeline drops the repeats, reconcile finds them under the first
    # run's id and says so, and the verdict holds.
    replay, verdict = readme_round(checkout, "--replay", first)
    assert verdict.returncode == 0, verdict.text[-4000:]
    assert f"replays the event ids of run {first}" in flat(verdict.text)
    report = orjson.loads((checkout / "reports" / "latest.json").read_bytes())
    held = sum(int(r.get("held_by_earlier_run") or 0) for r in report["by_type"] + report["by_kind"])
    assert report["run_id"] == replay and held > 1000

    # What the README says persists: BigQuery's tables under the home, until `down --reset`.
    assert workbench(checkout, "down").returncode == 0
    bigquery_files = list((checkout / ".workbench" / "stack" / "data" / "bigquery").rglob("*"))
    assert any(p.is_file() and p.stat().st_size > 0 for p in bigquery_files), bigquery_files
    assert not (checkout / ".workbench" / "stack" / "work" / "bigquery" / ".workbench").exists()
    up = workbench(checkout, "up", "--pubsub-port", str(pubsub_port), "--bigquery-port", str(bigquery_port))
    assert up.returncode == 0, up.text[-3000:]
    # Pub/Sub is in memory (the dead-letter topic starts empty); the files and BigQuery still hold both runs.
    for run_id in (first, second):
        again = workbench(checkout, "reconcile", run_id, "--no-dead-letter-topic")
        assert again.returncode == 0, again.text[-4000:]


def test_the_demo_twice_with_the_defaults(checkout):
    """`workbench demo` twice from the same folder (what scripts/demo.sh runs), each starting and stopping its
    own stack: both end in reconcile's exit 0, with the files in ./output and the stack down afterwards."""
    ports = ("--pubsub-port", str(free_port_pair()), "--bigquery-port", str(free_port_pair()))
    for attempt in (1, 2):
        done = workbench(checkout, "demo", "--count", "2000", "--rate", "1000", *ports, timeout=900)
        assert done.returncode == 0, f"demo {attempt}:\n" + done.text[-4000:]
        assert re.search(r"all 1,9\d\d events accounted for", flat(done.text)), done.text[-3000:]  # duplicates aside
        state = orjson.loads((checkout / ".workbench" / "stack" / "state.json").read_bytes())
        assert state["services"] == {}  # it stops the stack it started
    assert list((checkout / "output").rglob("*.json"))
