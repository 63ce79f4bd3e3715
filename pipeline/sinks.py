"""The sink tail both graphs end in: event files, BigQuery rows, and every dead letter to the topic and the table.

    letters = {FILES: events, ROWS: events, DEAD_LETTERS: invalid} | "WriteToSinks" >> WriteToSinks.streaming(sinks)

`WriteToSinks` is one composite transform (as Beam's own complete examples build theirs, e.g.
apache_beam/examples/complete/game): the stream (pipeline/stream.py) and the backfill (pipeline/backfill.py) apply
it with what each has for the files, for the rows and as dead letters already; what differs between them is only
how the files and the rows are written, which `streaming` and `batch` choose:

    stream:   files every few seconds per minute (WriteEventFiles),   rows by streaming inserts (WriteEventRows)
    backfill: files when the input ends (WriteEventFilesBatch),       rows by load jobs (LoadEventRows)

Its steps are named `WriteToSinks/WriteEventFiles`, `WriteToSinks/WriteEventRows` (or `LoadEventRows`),
`WriteToSinks/AllDeadLetters` and `WriteToSinks/WriteDeadLetters`: updating a streaming job built before the sink
tail was one transform maps the old names to these (docs/pipeline.md, "A new version").
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from pipeline.bigquery import WriteEventRows
from pipeline.bigquery_load import LoadEventRows
from pipeline.dead_letters import WriteDeadLetters
from pipeline.files import WriteEventFiles, WriteEventFilesBatch
from pipeline.options import EventPipelineOptions, resource_path

# The keys of WriteToSinks' input and output.
FILES = "files"  # in: events for the files; out: what the file writer returns (written files)
ROWS = "rows"  # in: events for the event tables (left out: none, or no dataset)
DEAD_LETTERS = "dead_letters"  # in: dead letters from before the sinks; out: every dead letter, counted

LABEL = "WriteToSinks"  # the composite's step name in both graphs


@dataclass(frozen=True)
class SinkSettings:
    """Where the sinks write and how long they retry, as both graphs read them from their options."""

    output_root: str
    bigquery_project: str | None
    dataset: str | None  # None: no BigQuery (no event rows, no dead_letters table)
    endpoint: str | None  # a BigQuery emulator's http://host:port; None: BigQuery itself
    dead_letter_topic: str | None  # projects/P/topics/T; None: no topic copy
    retry_seconds: float


def sink_settings(options: PipelineOptions) -> SinkSettings:
    app = options.view_as(EventPipelineOptions)
    project = options.view_as(GoogleCloudOptions).project
    return SinkSettings(
        output_root=app.output_root,
        bigquery_project=app.bigquery_project or project,
        dataset=app.dataset or None,
        endpoint=app.bigquery_emulator_host or None,
        dead_letter_topic=resource_path("topics", app.dead_letter_topic, project) if app.dead_letter_topic else None,
        retry_seconds=app.sink_retry_seconds,
    )


class WriteToSinks(beam.PTransform):
    """{FILES: events, ROWS: events, DEAD_LETTERS: letters} -> {FILES: written files, DEAD_LETTERS: every letter}.

    Events under FILES go to the files, events under ROWS to the event tables (with a dataset), and the dead
    letters of every stage (those given, the file writer's, the row writer's) to the dead-letter topic and the
    dead_letters table. Built by `streaming` or `batch`; `files` and `rows` are the two writers (labelled
    `files_label` and `rows_label`), each returning its dead letters (the file writer: (files, dead letters)).
    """

    def __init__(self, settings: SinkSettings, files: beam.PTransform, rows: beam.PTransform | None,
                 rows_label: str, files_label: str = "WriteEventFiles") -> None:  # fmt: skip
        super().__init__()
        self.settings = settings
        self.files, self.files_label = files, files_label
        self.rows, self.rows_label = rows, rows_label
        # Refused here, where the graph is built, before anything runs (require_a_dead_letter_sink says why).
        self.letters = WriteDeadLetters(
            settings.dead_letter_topic,
            settings.bigquery_project,
            settings.dataset,
            endpoint=settings.endpoint,
            retry_seconds=settings.retry_seconds,
        )

    @classmethod
    def streaming(cls, settings: SinkSettings, flush_seconds: float, max_lines: int) -> WriteToSinks:
        """The stream's: a minute's files at most flush_seconds after its first event (or at max_lines), rows by
        streaming inserts."""
        files = WriteEventFiles(settings.output_root, flush_seconds, max_lines, retry_seconds=settings.retry_seconds)
        rows = None
        if settings.dataset:
            rows = WriteEventRows(
                settings.bigquery_project, settings.dataset, settings.endpoint, settings.retry_seconds
            )
        return cls(settings, files, rows, "WriteEventRows")

    @classmethod
    def batch(cls, settings: SinkSettings, max_lines: int, run_id: str) -> WriteToSinks:
        """The backfill's: files of up to max_lines when the input ends, rows by load jobs whose ids carry `run_id`
        (with a nonce of this graph: a rerun never meets the jobs of an earlier backfill, whose rows may have been
        deleted since)."""
        files = WriteEventFilesBatch(settings.output_root, max_lines, settings.retry_seconds)
        rows = None
        if settings.dataset:
            rows = LoadEventRows(
                settings.bigquery_project, settings.dataset, settings.endpoint, settings.retry_seconds, run_id=run_id
            )
        return cls(settings, files, rows, "LoadEventRows")

    def expand(self, branches: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        files, file_failures = branches[FILES] | self.files_label >> self.files
        failures = [branches[DEAD_LETTERS], file_failures]
        to_rows = branches.get(ROWS)
        if self.rows is not None and to_rows is not None:
            failures.append(to_rows | self.rows_label >> self.rows)
        dead_letters = tuple(failures) | "AllDeadLetters" >> beam.Flatten()
        _ = dead_letters | "WriteDeadLetters" >> self.letters
        return {FILES: files, DEAD_LETTERS: dead_letters}
