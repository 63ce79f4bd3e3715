"""run-pipeline refuses to run with nowhere to put dead letters, as backfill does (issue #20, item 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.errors import WorkbenchError
from workbench.pipeline_run.stream_launcher import run

ROOT = Path(__file__).resolve().parents[3]
NOWHERE = "leave the dead letters nowhere: a rejected message would be lost"


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    env.update(PYTHONPATH=str(ROOT), WORKBENCH_HOME=str(tmp_path / "home"), NO_GCE_CHECK="true", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "workbench.cli", "run-pipeline", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


DATAFLOW = ["--runner", "DataflowRunner", "--dry-run", "--project", "p", "--region", "europe-west1",
            "--temp-location", "gs://b/tmp", "--output-root", "gs://b/out"]  # fmt: skip


@pytest.mark.parametrize("runner", [[], DATAFLOW], ids=["local", "dataflow"])
def test_no_dataset_and_no_dead_letter_topic_is_refused_with_the_fix(tmp_path, runner):
    done = _cli(tmp_path, *runner, "--dataset", "", "--dead-letter-topic", "")
    assert done.returncode == 2, done.stdout + done.stderr
    out = " ".join((done.stdout + done.stderr).split())
    assert f"--dataset '' and --dead-letter-topic '' {NOWHERE}" in out, out
    assert "keep the dead_letters table (a --dataset) or a --dead-letter-topic" in out, out


@pytest.mark.parametrize("kept", [["--dataset", ""], ["--dead-letter-topic", ""]], ids=["topic-kept", "table-kept"])
def test_either_dead_letter_sink_alone_is_enough(tmp_path, kept):
    done = _cli(tmp_path, *kept)  # then the local run goes on to look for the stack, which is not there
    out = done.stdout + done.stderr
    assert done.returncode == 2 and NOWHERE not in out, out
    assert "no Pub/Sub emulator is known" in out, out


def test_the_library_refuses_it_too_in_beams_flag_names():
    with pytest.raises(WorkbenchError) as refused:
        run(["--runner", "DirectRunner", "--dataset", "", "--dead_letter_topic", ""])
    assert f"--dead_letter_topic '' {NOWHERE}" in refused.value.message
