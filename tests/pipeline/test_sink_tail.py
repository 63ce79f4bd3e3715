"""The sink tail (pipeline/sinks.py): one composite that the stream and the backfill both end in.

Its step names are what an update of a running stream matches (docs/pipeline.md, "A new version"), so they are
pinned here for both graphs, with and without a dataset.
"""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.pipeline import PipelineVisitor

from pipeline import backfill, stream
from pipeline.sinks import WriteToSinks, sink_settings

PROJECT = "my-project"
TAIL = {"WriteToSinks/WriteEventFiles", "WriteToSinks/AllDeadLetters", "WriteToSinks/WriteDeadLetters"}


def step_names(build, argv: list[str], make_options) -> set[str]:
    """Every step of the graph `build` lays, at most one level down (the stages and the sinks' writers)."""
    options = make_options(argv)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options)
    names: set[str] = set()

    class Names(PipelineVisitor):
        def enter_composite_transform(self, applied) -> None:
            names.add(applied.full_label)

        def visit_transform(self, applied) -> None:
            names.add(applied.full_label)

    pipeline.visit(Names())
    return {n for n in names if n and n.count("/") <= 1}


@pytest.mark.parametrize("dataset", ["events", ""])
def test_the_stream_ends_in_the_sink_tail_with_streaming_inserts(dataset):
    names = step_names(stream.build_pipeline, ["--project", PROJECT, "--dataset", dataset], stream.make_options)
    rows = {"WriteToSinks/WriteEventRows"} if dataset else set()
    assert {n for n in names if n.startswith("WriteToSinks/")} == TAIL | rows
    assert {"ReadEvents", "ParseAndValidate", "DeduplicateByEventId", "WriteToSinks"} <= names


@pytest.mark.parametrize("dataset", ["events", ""])
def test_the_backfill_ends_in_the_same_tail_with_load_jobs(dataset):
    argv = ["--project", PROJECT, "--history_uri", "s3://bucket/prefix", "--dataset", dataset]
    names = step_names(backfill.build_backfill, argv, backfill.make_options)
    rows = {"WriteToSinks/LoadEventRows"} if dataset else set()
    assert {n for n in names if n.startswith("WriteToSinks/")} == TAIL | rows
    assert {"ReadHistory", "ParseAndValidate", "DropLoaded", "RecordDeadLetters", "WriteToSinks"} <= names


def test_settings_are_read_once_for_both_and_a_tail_with_no_dead_letter_sink_is_refused():
    options = stream.make_options(["--project", PROJECT, "--dead_letter_topic", "dl", "--bigquery_project", "bq"])
    settings = sink_settings(options)
    assert (settings.dead_letter_topic, settings.bigquery_project, settings.dataset) == (
        f"projects/{PROJECT}/topics/dl",
        "bq",
        "events",
    )
    lost = sink_settings(stream.make_options(["--project", PROJECT, "--dataset", "", "--dead_letter_topic", ""]))
    with pytest.raises(ValueError, match="leave the dead letters nowhere"):
        WriteToSinks.streaming(lost, 5.0, 100)
    with pytest.raises(ValueError, match="leave the dead letters nowhere"):
        WriteToSinks.batch(lost, 100, run_id="r")
