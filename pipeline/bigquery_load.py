"""The batch BigQuery sink: LoadEventRows, rows into the event tables by load jobs (a backfill's way in).

Load jobs, not streaming inserts: free of the streaming insert charge, no streaming buffer (the rows can be
modified by DML at once), and atomic per job. Rows come from the event model's row builder, exactly as the
stream's; they are grouped by table and by a shard of their event_id, and each group is loaded in jobs of up to
LOAD_ROWS rows (newline-delimited JSON uploaded with google-cloud-bigquery's `load_table_from_file`, into the
existing table: CREATE_NEVER, WRITE_APPEND, no schema autodetection, no unknown values).

Retries never load a row twice: a job's id is a digest of its table and rows plus an attempt number, so a
bundle Beam retries submits the same job id, which BigQuery refuses as a duplicate (409); the job that exists
is then looked up, and if it succeeded its rows count as loaded. A job BigQuery refuses for its content is
split in halves until the row at fault stands alone, which becomes a BIGQUERY_INSERT_FAILED dead letter; a job
that fails for any other reason is retried within the sink's retry budget (pipeline.retrying), past which its
rows are dead-lettered too.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zlib
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import orjson
from apache_beam import pvalue

from eventmodel import reasons as R
from pipeline import core
from pipeline import metrics as M
from pipeline.bigquery import REQUEST_TIMEOUT_S, BuildEventRowFn, bigquery_client, is_permanent
from pipeline.constants import DEAD_LETTER, DEFAULT_RETRY_SECONDS
from pipeline.core import DeadLetter
from pipeline.retrying import RetryBudget

_LOG = logging.getLogger(__name__)

LOAD_ROWS = 50_000  # rows per load job (~50 MB of JSON); BigQuery allows 1,500 load jobs per table and day
LOAD_SHARDS = 8  # groups per table: the loads' parallelism
JOB_TIMEOUT_S = 600.0
JOB_ID_PREFIX = "workbench_load_"


def job_id(table: str, insert_ids: list[str], attempt: int) -> str:
    """The id of a load job of these rows into table: the same rows, the same id (BigQuery refuses it twice)."""
    digest = hashlib.sha256(table.encode() + b"\0" + b"\0".join(i.encode() for i in insert_ids)).hexdigest()
    return f"{JOB_ID_PREFIX}{digest[:48]}_{attempt}"


def _shard(element: tuple[str, tuple]) -> tuple[tuple[str, int], tuple]:
    table, entry = element
    return (table, zlib.crc32(entry[1].encode("utf-8")) % LOAD_SHARDS), entry


class _Refused(Exception):
    """A load job BigQuery ran and refused for its rows' content."""


class LoadRowsFn(beam.DoFn):
    """((table, shard), [(row, insert id, source)]) -> the rows loaded; what cannot be loaded -> dead letters."""

    def __init__(self, project: str, endpoint: str | None, retry_seconds: float, client: Any = None) -> None:
        self.project, self.endpoint, self.retry_seconds, self.client = project, endpoint, retry_seconds, client

    def setup(self) -> None:
        self._client = self.client if self.client is not None else bigquery_client(self.project, self.endpoint)
        self._jobs = M.counter(M.BIGQUERY_LOAD_JOBS)
        self._failed = M.counter(M.BIGQUERY_FAILED)
        self._retries = M.counter(M.BIGQUERY_RETRIES)
        self._written = M.CounterFamily(M.bigquery_rows)

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None and self.client is None:
            client.close()

    def process(self, element: tuple[tuple[str, int], Any]) -> Iterator[Any]:
        (table, _), entries = element
        entries = sorted(entries, key=lambda e: e[1])  # the same rows in the same jobs on every attempt
        for start in range(0, len(entries), LOAD_ROWS):
            yield from self._load(table, entries[start : start + LOAD_ROWS])

    def _load(self, table: str, entries: list[tuple]) -> Iterator[Any]:
        budget = RetryBudget(self.retry_seconds)
        while True:
            try:
                self._run_job(table, entries)
                self._written.inc(table.rsplit(".", 1)[-1], len(entries))
                return
            except _Refused as refused:
                if len(entries) == 1:
                    yield from self._dead(entries, f"{table}: load refused the row: {refused}")
                    return
                middle = len(entries) // 2  # find the rows at fault; the others load
                yield from self._load(table, entries[:middle])
                yield from self._load(table, entries[middle:])
                return
            except Exception as exc:
                detail = f"{table}: load job failed: {core.describe_exception(exc)}"[:900]
                self._retries.inc()
                if not budget.retries:
                    _LOG.warning("%s (retrying up to %g s)", detail, self.retry_seconds)
                if not budget.wait():
                    yield from self._dead(entries, f"{detail}; gave up after {budget.elapsed():.0f} s")
                    return

    def _run_job(self, table: str, entries: list[tuple]) -> None:
        from google.api_core.exceptions import Conflict
        from google.cloud import bigquery

        body = b"".join(orjson.dumps(entry[0]) + b"\n" for entry in entries)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
            ignore_unknown_values=False,
            max_bad_records=0,
        )
        ids = [entry[1] for entry in entries]
        for attempt in range(100):
            name = job_id(table, ids, attempt)
            try:
                job = self._client.load_table_from_file(
                    io.BytesIO(body), table, job_id=name, job_config=config, timeout=REQUEST_TIMEOUT_S
                )
            except Conflict:  # submitted before (a retried bundle): that job's outcome is this one's
                job = self._client.get_job(name)
            self._jobs.inc()
            try:
                job.result(timeout=JOB_TIMEOUT_S)
                return
            except Exception as exc:
                if job.done() and job.error_result and is_permanent(exc):
                    raise _Refused(core.describe_exception(exc)) from None
                if job.done():
                    continue  # that attempt failed for good: the next attempt number makes a new job
                raise
        raise RuntimeError(f"{table}: 100 load attempts of the same rows failed")

    def _dead(self, entries: list[tuple], detail: str) -> Iterator[Any]:
        self._failed.inc(len(entries))
        for _, _, source in entries:
            yield pvalue.TaggedOutput(
                DEAD_LETTER,
                DeadLetter(
                    source.data,
                    source.attributes,
                    R.BIGQUERY_INSERT_FAILED,
                    detail,
                    core.STAGE_BIGQUERY,
                    source.message_id or "",
                    source.event_id,
                    source.publish_time,
                ),
            )


class LoadEventRows(beam.PTransform):
    """Valid events -> rows in the event tables of `dataset` by load jobs. Returns dead letters."""

    def __init__(self, project: str, dataset: str, endpoint: str | None = None,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS, client: Any = None) -> None:  # fmt: skip
        super().__init__()
        self.project, self.dataset, self.endpoint = project, dataset, endpoint
        self.retry_seconds, self.client = retry_seconds, client

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        built = events | "BuildRows" >> beam.ParDo(BuildEventRowFn(self.project, self.dataset)).with_outputs(
            DEAD_LETTER, main="rows"
        )
        loaded = (
            built.rows
            | "ByTableShard" >> beam.Map(_shard)
            | "GroupForLoad" >> beam.GroupByKey()
            | "Load"
            >> beam.ParDo(LoadRowsFn(self.project, self.endpoint, self.retry_seconds, self.client)).with_outputs(
                DEAD_LETTER, main="unused"
            )
        )
        return (built[DEAD_LETTER], loaded[DEAD_LETTER]) | "LoadDeadLetters" >> beam.Flatten()
