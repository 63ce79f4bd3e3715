"""The backfill: history objects -> validate -> dedup against the sinks -> the same GCS tree and BigQuery tables.

    python -m pipeline.backfill --runner DirectRunner --project workbench-local \\
        --history_uri s3://workbench-history/exports --output_root ./output --bigquery_emulator_host ...
    python -m pipeline.backfill --runner DataflowRunner --project P --region R --temp_location gs://B/tmp \\
        --history_uri s3://BUCKET/PREFIX --output_root gs://B/output --s3_region_name us-east-1

A batch pipeline built from the streaming one's stages (pipeline/__init__.py): the same validator, reason codes
and dead letters (original bytes, and where in S3 each came from), the same file writer and row builder. What
differs is only what history needs: records are read from objects (pipeline.history_read), named by their
natural key and kept only for the sinks that lack them (pipeline.history_dedup), files are written when the
input ends rather than every few seconds, and rows go in by load jobs (pipeline.bigquery_load).
`workbench backfill` (workbench/cli/backfill.py) runs it with preflight checks and a live view.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline import metrics as M
from pipeline.history_dedup import DropLoadedHistory, DropRecordedLetters
from pipeline.history_read import ReadHistory, s3_client_settings
from pipeline.options import EventPipelineOptions, HistoryOptions
from pipeline.runners import DIRECT, runner_for
from pipeline.sinks import DEAD_LETTERS, FILES, LABEL, ROWS, WriteToSinks, sink_settings
from pipeline.validate import ParseAndValidate


def default_run_id(now: datetime | None = None) -> str:
    return f"backfill-{(now or datetime.now(UTC)):%Y%m%d-%H%M%S}"


class _InWindow:
    """Keeps events whose own time is in [since, until); counts the others."""

    def __init__(self, since: str | None, until: str | None) -> None:
        self.since = datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
        self.until = datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None
        self._outside = None

    def __call__(self, event: Any) -> bool:
        inside = (self.since is None or event.event_time >= self.since) and (
            self.until is None or event.event_time < self.until
        )
        if not inside:
            if self._outside is None:
                self._outside = M.counter(M.HISTORY_OUTSIDE_WINDOW)
            self._outside.inc()
        return inside


def build_backfill(pipeline: beam.Pipeline, options: PipelineOptions) -> dict[str, Any]:
    """Lay the backfill onto `pipeline`; returns its main PCollections by name (for tests)."""
    hist = options.view_as(HistoryOptions)
    if not hist.history_uri:
        raise ValueError("a backfill needs --history_uri s3://BUCKET/PREFIX")
    settings = sink_settings(options)
    project, dataset, endpoint = settings.bigquery_project, settings.dataset, settings.endpoint
    run_id = hist.backfill_run_id or default_run_id()
    sinks = WriteToSinks.batch(settings, options.view_as(EventPipelineOptions).file_max_lines, run_id)

    messages, unreadable = pipeline | "ReadHistory" >> ReadHistory(
        hist.history_uri,
        run_id,
        hist.aws_credentials_secret,
        s3_client_settings(options),
    )
    valid, invalid = messages | "ParseAndValidate" >> ParseAndValidate()
    if hist.since or hist.until:
        valid = valid | "InWindow" >> beam.Filter(_InWindow(hist.since, hist.until))
    to_files, to_rows = valid | "DropLoaded" >> DropLoadedHistory(settings.output_root, project, dataset, endpoint)
    record_letters = (invalid, unreadable) | "RecordDeadLetters" >> beam.Flatten()
    if dataset:
        record_letters = record_letters | "DropRecorded" >> DropRecordedLetters(
            hist.history_uri, project, dataset, endpoint
        )
    branches = {FILES: to_files, DEAD_LETTERS: record_letters}
    if to_rows is not None:
        branches[ROWS] = to_rows
    written = branches | LABEL >> sinks
    return {"messages": messages, "valid": valid, "files": written[FILES], "dead_letters": written[DEAD_LETTERS]}


def make_options(argv: Sequence[str] | None) -> PipelineOptions:
    options = PipelineOptions(argv)
    options.view_as(StandardOptions).streaming = False  # objects are a bounded source: a batch job
    return options


def run(argv: Sequence[str] | None = None, default_runner: str = DIRECT) -> beam.runners.runner.PipelineResult:
    """Parse the command line, build the backfill and start it (Dataflow returns once the job is submitted)."""
    options = make_options(argv)
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = default_runner  # named: runner_for keeps it off Prism
    pipeline = beam.Pipeline(runner=runner_for(options.view_as(StandardOptions).runner), options=options)
    build_backfill(pipeline, options)
    return pipeline.run()


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run().wait_until_finish()
