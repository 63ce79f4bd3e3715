"""The local runner (pipeline.runners): Beam's DirectRunner without its try on Prism, so nothing is left behind.

Beam 2.77's DirectRunner hands a pipeline Prism supports to Prism first; offline its download fails after the job
server has made a `beam-temp*` folder in the system temp folder, which nothing removes. These tests point the temp
folder at their own and count what a run leaves in it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import apache_beam as beam
import pytest

from pipeline.runners import DATAFLOW, DIRECT, local_runner, runner_for


@pytest.fixture
def temp_folder(tmp_path: Path, monkeypatch) -> Path:
    """The system temp folder of this test alone (tempfile.gettempdir() answers it, as Beam asks it)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("beam-temp*"))


def test_a_batch_pipeline_on_the_local_runner_leaves_nothing_and_never_tries_prism(temp_folder, caplog):
    before = leftovers(temp_folder)
    caplog.set_level(logging.INFO, logger="apache_beam.runners.direct.direct_runner")
    with beam.Pipeline(runner=local_runner()) as pipeline:
        _ = pipeline | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2)
    assert before == [] and leftovers(temp_folder) == []
    assert "PrismRunner" not in caplog.text, caplog.text


def test_the_direct_runner_name_gets_the_local_runner_and_dataflow_is_left_to_beam():
    assert runner_for(DIRECT).__class__.__name__ == "SwitchingDirectRunner"
    assert runner_for(None) is not None, "unnamed: the DirectRunner, Beam's default"
    assert runner_for(DATAFLOW) is None
