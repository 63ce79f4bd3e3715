"""The streaming pipeline: Pub/Sub -> validate -> dedup -> GCS files + BigQuery rows, dead letters beside.

    python -m pipeline.stream --runner DirectRunner --streaming --project workbench-local ...   # see docs/pipeline.md
    python -m pipeline.stream --runner DataflowRunner --project P --region R --temp_location gs://B/tmp \\
        --output_root gs://B/output --streaming

`build_pipeline` lays the transforms onto a Pipeline and returns nothing else; `run` parses arguments, builds,
and starts. Local runs with the live view and --stop-when-idle go through `workbench run-pipeline`
(workbench/cli/pipeline.py), which calls workbench.pipeline_run; Dataflow (and the Flex Template launcher) calls `run`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

from pipeline.dedup import DeduplicateByEventId
from pipeline.options import EventPipelineOptions, resource_path
from pipeline.read import ReadEvents
from pipeline.runners import DIRECT, runner_for
from pipeline.sinks import DEAD_LETTERS, FILES, LABEL, ROWS, WriteToSinks, sink_settings
from pipeline.validate import ParseAndValidate


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions) -> dict[str, Any]:
    """Lay the whole graph onto `pipeline`; returns its main PCollections by name (for tests and views)."""
    app = options.view_as(EventPipelineOptions)
    subscription = resource_path("subscriptions", app.subscription, options.view_as(GoogleCloudOptions).project)
    sinks = WriteToSinks.streaming(sink_settings(options), app.file_flush_seconds, app.file_max_lines)

    messages = pipeline | "ReadEvents" >> ReadEvents(subscription)
    valid, invalid = messages | "ParseAndValidate" >> ParseAndValidate()
    # Each kept event goes to the files and, with a dataset, to BigQuery: two copies that commit separately.
    copies = 2 if app.dataset else 1
    unique = valid | "DeduplicateByEventId" >> DeduplicateByEventId(
        app.dedup_ttl_seconds, app.dedup_shards, copies=copies, journal=app.dedup_journal
    )
    written = {FILES: unique, ROWS: unique, DEAD_LETTERS: invalid} | LABEL >> sinks
    return {"messages": messages, "valid": unique, "files": written[FILES], "dead_letters": written[DEAD_LETTERS]}


def make_options(argv: Sequence[str] | None) -> PipelineOptions:
    options = PipelineOptions(argv)
    options.view_as(StandardOptions).streaming = True  # an unbounded Pub/Sub source: always streaming
    return options


def run(argv: Sequence[str] | None = None, default_runner: str = DIRECT) -> beam.runners.runner.PipelineResult:
    """Parse the command line, build the pipeline and start it (Dataflow returns once the job is submitted)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", action="store_true", help="Block until the job ends.")
    known, pipeline_args = parser.parse_known_args(argv)
    options = make_options(pipeline_args)
    if options.view_as(StandardOptions).runner is None:
        # Named, so that the job options say which runner ran it; runner_for keeps the DirectRunner off Prism.
        options.view_as(StandardOptions).runner = default_runner
    pipeline = beam.Pipeline(runner=runner_for(options.view_as(StandardOptions).runner), options=options)
    build_pipeline(pipeline, options)
    result = pipeline.run()
    if known.wait:
        result.wait_until_finish()
    return result


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
