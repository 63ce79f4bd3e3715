"""The BigQuery sink: WriteEventRows, streaming inserts through google-cloud-bigquery's public client.

Rows come from the event model's row builder (eventmodel.rows), never built here. Streaming inserts go through
google-cloud-bigquery's public `insert_rows_json(table, rows, row_ids=...)` with every row's insert id = its
event_id: a redelivered or re-published event, or a pipeline restarted without its dedup state, is then
recognised by BigQuery's best-effort insertId dedup, and a retry needs no commit step. The emulator is reached
by its endpoint (--bigquery_emulator_host) with anonymous credentials; nothing else differs.
The Storage Write API is not offered: Beam's Python SDK reaches it only through a Java expansion service (a JRE
and a jar fetched from Maven when the job is built), which the Flex Template image does not have; a choice that
fails at launch is no choice (docs/pipeline.md, "BigQuery writes").

What happens when a write fails is decided by the kind of the error (pipeline.bigquery_errors, shared with the
backfill's load jobs), within the sink's retry budget (pipeline.retrying):
- content (a row `invalid`, `invalidQuery`, `notImplemented`; a whole request refused for what it holds, e.g. a
  400): a row error dead-letters that row at once; a refused request is split in halves until the row at fault
  stands alone, so the others are inserted. The dead letter is BIGQUERY_INSERT_FAILED with the original bytes;
- throttled (`quotaExceeded`, `rateLimitExceeded` — 403s — or a 429): nothing is split or dead-lettered; the
  batch waits, longer each time (1 s doubling to 32 s, with jitter), and is sent again; only a limit that lasts
  past `retry_seconds` dead-letters the rows, with a detail that says quota;
- transient (BigQuery or the network down, 5xx, rows "stopped" beside a rejected one): retried with backoff
  (0.5 s doubling to 10 s) for up to `retry_seconds`, then dead-lettered;
- fatal (`accessDenied`, `notFound`: no such table, no permission): dead-lettered at once, unsplit, with a detail
  that names the cause; no retry or split can fix it, and the bytes wait in the dead-letter topic for a re-drive;
- each committed row releases its message (pipeline.delivery), so the local run acks after the insert.

`ingest_time` is stamped just before each insertAll request (the attempt that landed the row), not when the row
was built: reconcile's publish -> BigQuery latency then includes batching, retries and back-off, up to the moment
the row was handed to BigQuery (streaming inserts are queryable seconds after that, docs/pipeline.md).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import apache_beam as beam
import orjson
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindows

from endpoints.bigquery import bigquery_client
from eventmodel import reasons as R
from eventmodel import rows
from eventmodel.validate import Accepted
from pipeline import bigquery_errors as E
from pipeline import core, delivery
from pipeline import metrics as M
from pipeline.constants import DEAD_LETTER, DEFAULT_RETRY_SECONDS
from pipeline.core import DeadLetter, ValidEvent
from pipeline.retrying import RetryBudget

_LOG = logging.getLogger(__name__)

BATCH_SIZE = 500  # rows per insertAll request (BigQuery recommends up to 500)
# BigQuery's streaming insert limits (https://cloud.google.com/bigquery/quotas#streaming_inserts, "Streaming
# inserts"): 10 MB per HTTP request and per row, 50,000 rows per request. Events go up to MAX_PAYLOAD_BYTES (1 MB)
# and a dead-letter row holds up to 1 MB of payload as base64 (1.33 MB): 500 such rows would be a request of
# hundreds of MB. So a batch is sent as requests of at most this many bytes, below the 10 MB with room for the
# request's envelope (apache_beam's own streaming-insert sink keeps 9 MB for the same reason,
# apache_beam/io/gcp/bigquery.py MAX_INSERT_PAYLOAD_SIZE).
MAX_REQUEST_BYTES = 9_000_000
_NON_ASCII = bytes(range(128))  # bytes.translate(None, this) leaves only the non-ASCII bytes
REQUEST_TIMEOUT_S = 30.0
MAX_DETAIL_CHARS = 2000  # a dead letter's detail, as far as a BigQuery sink writes it


def table_spec(project: str, dataset: str, table: str) -> str:
    return f"{project}:{dataset}.{table}"


def table_id(project: str, dataset: str, table: str) -> str:
    return f"{project}.{dataset}.{table}"


class RowSource:
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


def _source_from(data, attributes, message_id, event_id, publish_time) -> RowSource:
    source = RowSource.__new__(RowSource)
    source.data, source.attributes, source.message_id = data, attributes, message_id
    source.event_id, source.publish_time = event_id, publish_time
    return source


class RowEntry(NamedTuple):
    """One row on its way to a table. `source` is what its outcome goes back to: the event's RowSource for the
    event tables, the dead letter's own state for the dead_letters table (pipeline.dead_letters)."""

    row: dict[str, Any]
    insert_id: str  # the event id: BigQuery's insertId, and the order of a load job's rows
    source: Any


def insert_failed_letter(source: RowSource, detail: str) -> DeadLetter:
    """The BIGQUERY_INSERT_FAILED dead letter of a row that neither streaming inserts nor a load job could write.

    The source message id is "" when the event has none (a backfilled event: pipeline.history_dedup.named_by_key
    clears it): every other dead letter of a backfill carries "" too (pipeline.validate), and the id goes out as
    the topic copy's dlq_source_message_id attribute, which Pub/Sub takes as text only. Reconcile matches dead
    letters by event_id (reconcile/queries.py), never by this id."""
    return DeadLetter(
        source.data,
        source.attributes,
        R.BIGQUERY_INSERT_FAILED,
        detail[:MAX_DETAIL_CHARS],
        core.STAGE_BIGQUERY,
        source.message_id or "",
        source.event_id,
        source.publish_time,
    )


class BuildEventRowFn(beam.DoFn):
    """ValidEvent -> (table id, RowEntry(row, insert id = event_id, source)), or a PROCESSING_ERROR dead letter."""

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
            yield self._tables[event.event_type], RowEntry(row, event.event_id, RowSource(event))
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


def _describe_errors(errors: Any) -> str:
    try:
        return "; ".join(f"{e.get('reason')}: {e.get('message')}" for e in errors)[:900]
    except Exception:
        return str(errors)[:900]


def request_bytes(entry: RowEntry) -> int:
    """At least the bytes an entry (row, insert id, ...) takes in an insertAll body as google-cloud-bigquery writes
    it: json.dumps with ", " and ": " between tokens (one byte per comma or colon more than orjson's) and every
    non-ASCII character as \\uXXXX (at most 2 bytes more per UTF-8 byte), plus the insertId and stamp it adds."""
    data = orjson.dumps(entry.row)
    return len(data) + data.count(b",") + data.count(b":") + 2 * len(data.translate(None, _NON_ASCII)) + 128


def request_batches(entries: Sequence[RowEntry], limit: int = MAX_REQUEST_BYTES) -> list[list[RowEntry]]:
    """entries cut, in order, into runs whose request_bytes stay within `limit`. A single entry larger than the
    limit goes alone: BigQuery then refuses that row only (a content error, dead-lettered), not its neighbours."""
    batches: list[list[RowEntry]] = []
    current: list[RowEntry] = []
    size = 0
    for entry in entries:
        n = request_bytes(entry)
        if current and size + n > limit:
            batches.append(current)
            current, size = [], 0
        current.append(entry)
        size += n
    if current:
        batches.append(current)
    return batches


class InsertOutcome(NamedTuple):
    """One insert of a batch: committed entries, [(entry, detail)] rejected for good, entries to send again, the
    error that makes them wait, and its kind (bigquery_errors.THROTTLED or TRANSIENT; None when none waits)."""

    committed: list
    rejected: list
    retry: list
    error: str | None
    kind: str | None


def _merged(first: InsertOutcome, second: InsertOutcome) -> InsertOutcome:
    kinds = {first.kind, second.kind}
    return InsertOutcome(
        first.committed + second.committed,
        first.rejected + second.rejected,
        first.retry + second.retry,
        first.error or second.error,
        E.THROTTLED if E.THROTTLED in kinds else (E.TRANSIENT if E.TRANSIENT in kinds else None),
    )


class RowInserter:
    """insertAll for a batch, its answer sorted into committed, rejected (for good) and to-retry.

    `stamp`: a row column set to the time of each request just before it is sent (InsertRowsFn's ingest_time), so
    that it says when the row was handed to BigQuery, not when it was built. None leaves rows as they are."""

    def __init__(self, client: Any, stamp: str | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.client = client
        self.stamp = stamp
        self.clock = clock or (lambda: datetime.now(UTC))

    def attempt(self, table: str, entries: list[RowEntry]) -> tuple[list, list, list, str | None]:
        """Returns (committed, [(entry, detail)] rejected, retry, error)."""
        return self.insert(table, entries)[:4]

    def insert(self, table: str, entries: list[RowEntry]) -> InsertOutcome:
        """One insertAll per run of request_batches: a batch of large rows goes as several requests."""
        batches = request_batches(entries)
        if len(batches) == 1:
            return self._request(table, batches[0])
        return functools.reduce(_merged, (self._request(table, batch) for batch in batches))

    def _request(self, table: str, entries: list[RowEntry]) -> InsertOutcome:
        sent = self._stamped(entries)
        try:
            errors = self.client.insert_rows_json(
                table,
                [entry.row for entry in sent],
                row_ids=[entry.insert_id for entry in sent],
                retry=None,  # the sink's own budget decides how long to retry, not the client's 600 s default
                timeout=REQUEST_TIMEOUT_S,
            )
        except Exception as exc:
            return self._refused(table, sent, exc)
        failed = {item["index"]: item.get("errors") or [] for item in errors or []}
        committed, rejected, retry, kinds, error = [], [], [], set(), None
        for index, entry in enumerate(sent):
            row_errors = failed.get(index)
            if row_errors is None:
                committed.append(entry)
                continue
            kind = E.kind(row_errors)
            if kind in (E.CONTENT, E.FATAL):
                rejected.append((entry, f"{table}: {_describe_errors(row_errors)}"))
            else:
                retry.append(entry)
                kinds.add(kind)
                if error is None:
                    error = f"{table}: rows not inserted ({E.describe(row_errors)}): {_describe_errors(row_errors)}"
        kind = E.THROTTLED if E.THROTTLED in kinds else (E.TRANSIENT if retry else None)
        return InsertOutcome(committed, rejected, retry, error, kind)

    def _refused(self, table: str, sent: list[RowEntry], exc: Exception) -> InsertOutcome:
        """A whole request failed: split it (content), reject it (fatal), or send it again (throttled, transient)."""
        kind = E.kind(exc)
        named = ", ".join(dict.fromkeys(E.reasons(exc))) or f"HTTP {E.status_of(exc) or 'none'}"
        detail = f"{table}: insert failed, {E.describe(exc)} ({named}): {type(exc).__name__}: {exc}"[:900]
        if kind == E.CONTENT and len(sent) > 1:  # one row at fault refuses the request: find it, insert the rest
            middle = len(sent) // 2
            return _merged(self._request(table, sent[:middle]), self._request(table, sent[middle:]))
        if kind in (E.CONTENT, E.FATAL):
            return InsertOutcome([], [(entry, detail) for entry in sent], [], None, None)
        return InsertOutcome([], [], list(sent), detail, kind)

    def _stamped(self, entries: list[RowEntry]) -> list[RowEntry]:
        if self.stamp is None:
            return entries
        now = rows.rfc3339(self.clock())
        return [entry._replace(row={**entry.row, self.stamp: now}) for entry in entries]


class InsertRowsFn(beam.DoFn):
    """(table id, RowEntry) -> rows in BigQuery; what cannot be inserted -> dead letters.

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
        self._inserter = RowInserter(self._client, stamp=rows.INGEST_TIME)
        self._written = M.CounterFamily(M.bigquery_rows)
        self._failed = M.counter(M.BIGQUERY_FAILED)
        self._retries = M.counter(M.BIGQUERY_RETRIES)
        self._lag = M.gauge(M.BIGQUERY_LAG_MS)

    def start_bundle(self) -> None:
        self._buffer: dict[str, list[RowEntry]] = {}

    def process(self, element: tuple[str, RowEntry]) -> Iterator[Any]:
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

    def _insert(self, table: str, batch: list[RowEntry]) -> Iterator[pvalue.TaggedOutput]:
        budget = RetryBudget(self.retry_seconds)
        pending, dead = batch, []
        oldest = min((e.source.publish_time for e in batch if e.source.publish_time), default=None)
        written = 0
        while pending:
            with delivery.watch(delivery.BIGQUERY, f"inserting {len(pending)} rows into {table}"):
                committed, rejected, retry, error, kind = self._inserter.insert(table, pending)
            if committed:
                written += len(committed)
                delivery.release(entry.source.message_id for entry in committed)
            dead += rejected
            pending = retry
            if not pending:
                break
            throttled = kind == E.THROTTLED
            if rejected and not throttled:  # the others were "stopped" beside the rejected rows: again at once
                continue
            delivery.trouble(delivery.BIGQUERY, f"{error} (retrying for {budget.elapsed():.0f} s)")
            self._retries.inc()
            if throttled and budget.retries == 0:
                _LOG.warning("%s: backing off (up to %g s) before sending %d rows again", error, self.retry_seconds,
                             len(pending))  # fmt: skip
            waited = budget.wait(E.THROTTLED_INITIAL_S, E.THROTTLED_CAP_S) if throttled else budget.wait()
            if not waited:
                detail = f"{error}; gave up after {budget.elapsed():.0f} s (limit {self.retry_seconds:g} s)"
                dead += [(entry, detail) for entry in pending]
                break
        if budget.retries:
            delivery.trouble(delivery.BIGQUERY, None)
        self._count(table, written, len(dead), oldest)
        for entry, detail in dead:
            yield pvalue.TaggedOutput(DEAD_LETTER, insert_failed_letter(entry.source, detail))

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
