"""The BigQuery sink: WriteEventRows, streaming inserts through google-cloud-bigquery's public client.

Rows come from the event model's row builder (eventmodel.rows), never built here. Streaming inserts go through
google-cloud-bigquery's public `insert_rows_json(table, rows, row_ids=...)` with every row's insert id = its
event_id: a redelivered or re-published event, or a pipeline restarted without its dedup state, is then
recognised by BigQuery's best-effort insertId dedup, and a retry needs no commit step. The emulator is reached
by its endpoint (--bigquery_emulator_host) with anonymous credentials; nothing else differs.
The Storage Write API is not offered: Beam's Python SDK reaches it only through a Java expansion service (a JRE
and a jar fetched from Maven when the job is built), which the Flex Template image does not have; a choice that
fails at launch is no choice (docs/pipeline.md, "BigQuery writes").

What happens when a write fails (the same rules for every sink, pipeline.retrying):
- a row BigQuery rejects for its content (reason invalid, invalidQuery, notImplemented, or a 4xx answer) is a
  BIGQUERY_INSERT_FAILED dead letter at once, with the original message bytes and attributes;
- anything else (BigQuery or the network down, 5xx, 429, rows "stopped" beside a rejected one) is retried with
  backoff for up to `retry_seconds`; only a sink that stays down past that sends its rows to the dead letter;
- each committed row releases its message (pipeline.delivery), so the local run acks after the insert.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindows

from eventmodel import reasons as R
from eventmodel import rows
from eventmodel.resources import http_endpoint
from eventmodel.validate import Accepted
from pipeline import core, delivery
from pipeline import metrics as M
from pipeline.constants import DEAD_LETTER, DEFAULT_RETRY_SECONDS
from pipeline.core import DeadLetter, ValidEvent
from pipeline.retrying import RetryBudget

_LOG = logging.getLogger(__name__)

BATCH_SIZE = 500  # rows per insertAll request (BigQuery recommends up to 500)
REQUEST_TIMEOUT_S = 30.0
# Beam's rule (apache_beam/io/gcp/bigquery_tools.py, RetryStrategy): these row errors are the row's own fault.
NON_TRANSIENT_ROW_ERRORS = frozenset({"invalid", "invalidQuery", "notImplemented"})


def table_spec(project: str, dataset: str, table: str) -> str:
    return f"{project}:{dataset}.{table}"


def table_id(project: str, dataset: str, table: str) -> str:
    return f"{project}.{dataset}.{table}"


class _Source:
    """What a failed row needs to become a dead letter: the original message, not the row."""

    __slots__ = ("attributes", "data", "event_id", "message_id", "publish_time")

    def __init__(self, event: ValidEvent) -> None:
        self.data = event.data
        self.attributes = event.attributes
        self.message_id = event.message_id
        self.event_id = event.event_id
        self.publish_time = event.publish_time

    def __reduce__(self):
        return _source_from, (self.data, self.attributes, self.message_id, self.event_id, self.publish_time)


def _source_from(data, attributes, message_id, event_id, publish_time) -> _Source:
    source = _Source.__new__(_Source)
    source.data, source.attributes, source.message_id = data, attributes, message_id
    source.event_id, source.publish_time = event_id, publish_time
    return source


class BuildEventRowFn(beam.DoFn):
    """ValidEvent -> (table id, (row, insert id = event_id, source)), or a PROCESSING_ERROR dead letter."""

    def __init__(self, project: str, dataset: str) -> None:
        self.project = project
        self.dataset = dataset

    def setup(self) -> None:
        self._tables = {t: table_id(self.project, self.dataset, rows.table_of(t)) for t in rows.TABLES}

    def process(self, event: ValidEvent) -> Iterator[Any]:
        try:
            row = rows.event_row(
                Accepted(event.event_type, event.event, event.event_time),
                message_id=event.message_id,
                publish_time=event.publish_time,
                attributes=event.attributes,
            )
            yield self._tables[event.event_type], (row, event.event_id, _Source(event))
        except Exception as exc:  # a row the model cannot build is a poison message: dead letter, keep going
            yield pvalue.TaggedOutput(
                DEAD_LETTER,
                core.dead_letter_from_event(
                    event,
                    R.PROCESSING_ERROR,
                    f"row builder failed: {core.describe_exception(exc)}",
                    core.STAGE_BUILD_ROW,
                ),
            )


# ---------------------------------------------------------------------------------------- streaming inserts


def bigquery_client(project: str, endpoint: str | None) -> Any:
    """google-cloud-bigquery's client: for BigQuery itself, or for an emulator at `endpoint` (anonymous)."""
    from google.cloud import bigquery

    if not endpoint:
        return bigquery.Client(project=project)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=http_endpoint(endpoint)),
    )


def is_permanent(exc: BaseException) -> bool:
    """A whole request refused for what it is (400 bad request, 403, 404 no such table), not for the service's
    state; 408 and 429 (and any 5xx or network error) pass with time."""
    code = getattr(exc, "code", None)
    return isinstance(code, int) and 400 <= code < 500 and code not in (408, 429)


def _describe_errors(errors: Any) -> str:
    try:
        return "; ".join(f"{e.get('reason')}: {e.get('message')}" for e in errors)[:900]
    except Exception:
        return str(errors)[:900]


class RowInserter:
    """One insertAll attempt for a batch, sorted into committed, rejected (the rows' fault) and to-retry."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def attempt(self, table: str, entries: list[tuple]) -> tuple[list, list, list, str | None]:
        """entries are (row, insert id, source); returns (committed, [(entry, detail)] rejected, retry, error)."""
        try:
            errors = self.client.insert_rows_json(
                table,
                [entry[0] for entry in entries],
                row_ids=[entry[1] for entry in entries],
                retry=None,  # the sink's own budget decides how long to retry, not the client's 600 s default
                timeout=REQUEST_TIMEOUT_S,
            )
        except Exception as exc:
            detail = f"{table}: insert failed: {type(exc).__name__}: {exc}"[:900]
            if is_permanent(exc):
                return [], [(entry, detail) for entry in entries], [], None
            return [], [], list(entries), detail
        failed = {item["index"]: item.get("errors") or [] for item in errors or []}
        committed, rejected, retry = [], [], []
        for index, entry in enumerate(entries):
            row_errors = failed.get(index)
            if row_errors is None:
                committed.append(entry)
            elif any(e.get("reason") in NON_TRANSIENT_ROW_ERRORS for e in row_errors):
                rejected.append((entry, f"{table}: {_describe_errors(row_errors)}"))
            else:
                retry.append(entry)
        error = f"{table}: rows not inserted: {_describe_errors(next(iter(failed.values())))}" if retry else None
        return committed, rejected, retry, error


class InsertRowsFn(beam.DoFn):
    """(table id, (row, insert id, source)) -> rows in BigQuery; what cannot be inserted -> dead letters.

    Buffers up to BATCH_SIZE rows per table and inserts them when a batch is full and when the bundle ends.
    Counts rows written per table, retries, failures, and the worst publish-to-insert lag of each batch.
    """

    def __init__(
        self,
        project: str,
        endpoint: str | None = None,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        client: Any = None,
    ) -> None:
        self.project = project
        self.endpoint = endpoint
        self.retry_seconds = retry_seconds
        self.client = client  # tests hand in their own; None builds google-cloud-bigquery's in setup()

    def setup(self) -> None:
        self._client = self.client if self.client is not None else bigquery_client(self.project, self.endpoint)
        self._inserter = RowInserter(self._client)
        self._written = M.CounterFamily(M.bigquery_rows)
        self._failed = M.counter(M.BIGQUERY_FAILED)
        self._retries = M.counter(M.BIGQUERY_RETRIES)
        self._lag = M.gauge(M.BIGQUERY_LAG_MS)

    def start_bundle(self) -> None:
        self._buffer: dict[str, list[tuple]] = {}

    def process(self, element: tuple[str, tuple]) -> Iterator[Any]:
        table, entry = element
        batch = self._buffer.setdefault(table, [])
        batch.append(entry)
        if len(batch) >= BATCH_SIZE:
            del self._buffer[table]
            yield from self._insert(table, batch)

    def finish_bundle(self) -> Iterator[Any]:
        buffered, self._buffer = self._buffer, {}
        for table, batch in buffered.items():
            for output in self._insert(table, batch):
                yield pvalue.TaggedOutput(DEAD_LETTER, GlobalWindows.windowed_value(output.value))

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None and self.client is None and hasattr(client, "close"):
            client.close()

    def _insert(self, table: str, batch: list[tuple]) -> Iterator[pvalue.TaggedOutput]:
        budget = RetryBudget(self.retry_seconds)
        pending, dead = batch, []
        oldest = min((e[2].publish_time for e in batch if e[2].publish_time), default=None)
        written = 0
        while pending:
            with delivery.watch(delivery.BIGQUERY, f"inserting {len(pending)} rows into {table}"):
                committed, rejected, retry, error = self._inserter.attempt(table, pending)
            if committed:
                written += len(committed)
                delivery.release(entry[2].message_id for entry in committed)
            dead += rejected
            pending = retry
            if not pending:
                break
            if rejected:  # the others were "stopped" beside the rejected rows: send them again at once
                continue
            delivery.trouble(delivery.BIGQUERY, f"{error} (retrying for {budget.elapsed():.0f} s)")
            self._retries.inc()
            if not budget.wait():
                detail = f"{error}; gave up after {budget.elapsed():.0f} s (limit {self.retry_seconds:g} s)"
                dead += [(entry, detail) for entry in pending]
                break
        if budget.retries:
            delivery.trouble(delivery.BIGQUERY, None)
        self._count(table, written, len(dead), oldest)
        for entry, detail in dead:
            source = entry[2]
            yield pvalue.TaggedOutput(
                DEAD_LETTER,
                DeadLetter(
                    source.data,
                    source.attributes,
                    R.BIGQUERY_INSERT_FAILED,
                    detail,
                    core.STAGE_BIGQUERY,
                    source.message_id,
                    source.event_id,
                    source.publish_time,
                ),
            )

    def _count(self, table: str, written: int, failed: int, oldest: datetime | None) -> None:
        self._written.inc(table.rsplit(".", 1)[-1], written)
        if failed:
            self._failed.inc(failed)
        if oldest is not None and written:
            self._lag.set(int((time.time() - oldest.timestamp()) * 1000))


class WriteEventRows(beam.PTransform):
    """Valid events -> rows in the event tables of `dataset`. Returns dead letters (row or insert failures).

    `endpoint` is a BigQuery emulator's http://host:port (None: BigQuery itself); `client` replaces the client
    altogether (tests). Rows are retried for up to `retry_seconds` while BigQuery is unreachable.
    """

    def __init__(
        self,
        project: str,
        dataset: str,
        endpoint: str | None = None,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        client: Any = None,
    ) -> None:
        super().__init__()
        self.project = project
        self.dataset = dataset
        self.endpoint = endpoint
        self.retry_seconds = retry_seconds
        self.client = client

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        built = events | "BuildRows" >> beam.ParDo(BuildEventRowFn(self.project, self.dataset)).with_outputs(
            DEAD_LETTER, main="rows"
        )
        inserted = built.rows | "InsertRows" >> beam.ParDo(
            InsertRowsFn(self.project, self.endpoint, self.retry_seconds, self.client)
        ).with_outputs(DEAD_LETTER, main="unused")
        return (built[DEAD_LETTER], inserted[DEAD_LETTER]) | "RowDeadLetters" >> beam.Flatten()


# ------------------------------------------------------------------------------------------- dead letters
