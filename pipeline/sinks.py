"""The BigQuery and dead-letter sinks: WriteEventRows and WriteDeadLetters.

Rows come from the event model's row builder (eventmodel.rows), never built here. Streaming inserts go through
google-cloud-bigquery's public `insert_rows_json(table, rows, row_ids=...)` with every row's insert id = its
event_id: a redelivered or re-published event, or a pipeline restarted without its dedup state, is then
recognised by BigQuery's best-effort insertId dedup, and a retry needs no commit step. The emulator is reached
by its endpoint (--bigquery_emulator_host) with anonymous credentials; nothing else differs.
STORAGE_WRITE_API (Dataflow) uses Beam's WriteToBigQuery: its streams are exactly-once without insert ids.

What happens when a write fails (the same rules for every sink, pipeline.retrying):
- a row BigQuery rejects for its content (reason invalid, invalidQuery, notImplemented, or a 4xx answer) is a
  BIGQUERY_INSERT_FAILED dead letter at once, with the original message bytes and attributes;
- anything else (BigQuery or the network down, 5xx, 429, rows "stopped" beside a rejected one) is retried with
  backoff for up to `retry_seconds`; only a sink that stays down past that sends its rows to the dead letter;
- each committed row releases its message (pipeline.delivery), so the local run acks after the insert.
Dead letters go to the dead-letter topic and the dead_letters table, each retried the same way. One that neither
took is never dropped: it is retried until one does, and its message stays unacknowledged meanwhile.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import apache_beam as beam
import orjson
from apache_beam import pvalue
from apache_beam.io.gcp.bigquery import BigQueryDisposition, WriteToBigQuery
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.timestamp import Timestamp

from eventmodel import reasons as R
from eventmodel import rows
from eventmodel.validate import Accepted
from pipeline import core, delivery
from pipeline import metrics as M
from pipeline.core import DeadLetter, ValidEvent
from pipeline.retrying import RetryBudget
from pipeline.transforms import DEAD_LETTER

_LOG = logging.getLogger(__name__)

STREAMING_INSERTS = "STREAMING_INSERTS"
STORAGE_WRITE_API = "STORAGE_WRITE_API"
METHODS = (STREAMING_INSERTS, STORAGE_WRITE_API)

DEFAULT_RETRY_SECONDS = 300.0  # how long a sink may stay down before its rows are dead-lettered
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

    endpoint = endpoint if "://" in endpoint else f"http://{endpoint}"
    return bigquery.Client(
        project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint)
    )


def _is_permanent(exc: BaseException) -> bool:
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
            if _is_permanent(exc):
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
        self._written: dict[str, Any] = {}
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
        name = table.rsplit(".", 1)[-1]
        counter = self._written.get(name)
        if counter is None:
            counter = self._written[name] = M.counter(M.bigquery_rows(name))
        counter.inc(written)
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
        method: str = STREAMING_INSERTS,
        endpoint: str | None = None,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        client: Any = None,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.project = project
        self.dataset = dataset
        self.method = method
        self.endpoint = endpoint
        self.retry_seconds = retry_seconds
        self.client = client

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        built = events | "BuildRows" >> beam.ParDo(BuildEventRowFn(self.project, self.dataset)).with_outputs(
            DEAD_LETTER, main="rows"
        )
        if self.method == STREAMING_INSERTS:
            inserted = built.rows | "InsertRows" >> beam.ParDo(
                InsertRowsFn(self.project, self.endpoint, self.retry_seconds, self.client)
            ).with_outputs(DEAD_LETTER, main="unused")
            failed = inserted[DEAD_LETTER]
        else:
            failed = built.rows | "StorageWrite" >> _StorageWrite(self.project, self.dataset)
        return (built[DEAD_LETTER], failed) | "RowDeadLetters" >> beam.Flatten()


def fetch_table_schema(project: str, dataset: str, table: str, client: Any = None) -> dict[str, Any]:
    """A table's schema as BigQuery has it ({"fields": [{"name", "type", "mode", "fields"?}, ...]}).

    STORAGE_WRITE_API needs the schema at construction time to turn rows into Beam Rows; reading it from the
    table (made from ddl/) keeps one source of truth. Called where the job is built, with its credentials.
    """
    if client is None:
        from google.cloud import bigquery

        client = bigquery.Client(project=project)
    found = client.get_table(f"{project}.{dataset}.{table}")

    def field(f: Any) -> dict[str, Any]:
        described = {"name": f.name, "type": f.field_type, "mode": f.mode or "NULLABLE"}
        if f.fields:
            described["fields"] = [field(sub) for sub in f.fields]
        return described

    return {"fields": [field(f) for f in found.schema]}


def to_storage_row(row: dict[str, Any], fields: list[dict[str, Any]]) -> dict[str, Any]:
    """An insertAll row (eventmodel.rows: TIMESTAMP and NUMERIC as text, BYTES as base64) in the Python types
    Beam's Storage Write conversion expects (Timestamp, Decimal, bytes), following the table's schema."""
    converted: dict[str, Any] = {}
    for field in fields:
        value = row.get(field["name"])
        if value is None:
            converted[field["name"]] = [] if field.get("mode") == "REPEATED" else None
        elif field.get("mode") == "REPEATED":
            converted[field["name"]] = [_storage_value(item, field) for item in value]
        else:
            converted[field["name"]] = _storage_value(value, field)
    return converted


def _storage_value(value: Any, field: dict[str, Any]) -> Any:
    kind = field["type"].upper()
    if kind in ("RECORD", "STRUCT"):
        return to_storage_row(value, field["fields"])
    if kind == "TIMESTAMP":
        return Timestamp.from_rfc3339(value) if isinstance(value, str) else value
    if kind in ("NUMERIC", "BIGNUMERIC"):
        return Decimal(str(value))
    if kind in ("INT64", "INTEGER"):
        return int(value)
    if kind in ("FLOAT", "FLOAT64"):
        return float(value)
    if kind == "BYTES":
        return base64.b64decode(value) if isinstance(value, str) else value
    return value


class _StorageWrite(beam.PTransform):
    """STORAGE_WRITE_API through WriteToBigQuery, one write per event table with the table's own schema.

    Beam runs it through a Java expansion service, so it is built and run on Dataflow (or with Java), never by the
    offline tests; to_storage_row and fetch_table_schema are tested on their own.
    """

    def __init__(self, project: str, dataset: str, schema_client: Any = None) -> None:
        super().__init__()
        self.project = project
        self.dataset = dataset
        self.schema_client = schema_client

    def expand(self, keyed_rows: beam.PCollection) -> beam.PCollection:
        failures = []
        for table in rows.TABLES.values():
            spec = table_spec(self.project, self.dataset, table)
            key = table_id(self.project, self.dataset, table)  # as BuildEventRowFn names it
            schema = fetch_table_schema(self.project, self.dataset, table, self.schema_client)
            result = (
                keyed_rows
                | f"Only{table}" >> beam.Filter(lambda kv, key=key: kv[0] == key)
                | f"StorageRows{table}"
                >> beam.Map(lambda kv, fields=schema["fields"]: to_storage_row(kv[1][0], fields))
                | f"StorageWrite{table}"
                >> WriteToBigQuery(
                    table=spec,
                    schema=schema,
                    method=WriteToBigQuery.Method.STORAGE_WRITE_API,
                    create_disposition=BigQueryDisposition.CREATE_NEVER,
                    write_disposition=BigQueryDisposition.WRITE_APPEND,
                )
            )
            failures.append(result.failed_rows_with_errors | f"FailedRows{table}" >> beam.Map(_storage_failure))
        return tuple(failures) | "StorageWriteFailures" >> beam.Flatten()


def _storage_failure(failure: Any) -> DeadLetter:
    # Storage Write hands back the row, not the message: the row (which holds the event) becomes the body.
    destination, row = failure[0], failure[1]
    errors = failure[2] if len(failure) > 2 else ""
    record = row._asdict() if hasattr(row, "_asdict") else dict(row)
    return DeadLetter(
        orjson.dumps(record, default=str),
        {},
        R.BIGQUERY_INSERT_FAILED,
        f"{destination}: {errors}"[:900],
        core.STAGE_BIGQUERY,
        str(record.get(rows.MESSAGE_ID) or ""),
        str(record.get(rows.EVENT_ID) or ""),
        None,
    )


# ------------------------------------------------------------------------------------------- dead letters


def _count_dead_letter(letter: DeadLetter, _cache: dict = {}) -> DeadLetter:  # noqa: B006 - per-process cache
    counter = _cache.get(letter.reason)
    if counter is None:
        counter = _cache[letter.reason] = M.counter(M.dead_letter(letter.reason))
    counter.inc()
    _cache.setdefault("_all", M.counter(M.DEAD_LETTERS)).inc()
    return letter


def to_pubsub_message(letter: DeadLetter) -> PubsubMessage:
    """The dead-letter topic's copy: the original bytes, the original attributes plus the dlq_* ones."""
    return PubsubMessage(letter.data, core.dead_letter_attributes(letter))


def dead_letter_table_row(letter: DeadLetter) -> tuple[dict[str, Any], str]:
    """The dead_letters row of a letter and its insert id (one per message, stage and reason)."""
    row = rows.dead_letter_row(
        letter.data,
        reason=letter.reason,
        detail=letter.detail,
        stage=letter.stage,
        message_id=letter.source_message_id,
        publish_time=letter.publish_time,
        attributes=letter.attributes,
        ingest_time=datetime.now(UTC),
    )
    return row, f"{letter.event_id or letter.source_message_id}:{letter.stage}:{letter.reason}"


NONE, PENDING, DONE, GAVE_UP = "none", "pending", "done", "gave up"


class _Letter:
    """One dead letter on its way: its state in each dead-letter sink (NONE when that sink is not configured)."""

    __slots__ = ("letter", "row", "table", "topic")

    def __init__(self, letter: DeadLetter, row: tuple | None, topic: bool, table: bool) -> None:
        self.letter = letter
        self.row = row  # (row, insert id, None) for the table
        self.topic = PENDING if topic else NONE
        self.table = PENDING if table and row is not None else (GAVE_UP if table else NONE)

    def finished(self) -> bool:
        return PENDING not in (self.topic, self.table)

    def landed(self) -> bool:
        return DONE in (self.topic, self.table)


class WriteDeadLettersFn(beam.DoFn):
    """DeadLetter -> the dead-letter topic and the dead_letters table, then its message is released.

    Each sink is retried for up to `retry_seconds`. Past that, a letter that one of the two took is released
    (the other sink is counted as failed for it); a letter neither took is retried until one does: a dead letter
    is the last place a message can go, so it is never dropped, and its message stays unacknowledged meanwhile.
    A row the table refuses for its content is counted and logged; the topic copy is then the one that counts.
    """

    def __init__(
        self,
        topic: str | None,
        project: str | None,
        dataset: str | None,
        endpoint: str | None = None,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        client: Any = None,
        publisher: Any = None,
    ) -> None:
        self.topic = topic
        self.project = project
        self.dataset = dataset
        self.endpoint = endpoint
        self.retry_seconds = retry_seconds
        self.client = client
        self.publisher = publisher

    def setup(self) -> None:
        self._inserter = None
        self._publisher = None
        if self.dataset:
            client = self.client if self.client is not None else bigquery_client(self.project, self.endpoint)
            self._inserter = RowInserter(client)
            self._table = table_id(self.project, self.dataset, rows.DEAD_LETTER_TABLE)
        if self.topic:
            if self.publisher is not None:
                self._publisher = self.publisher
            else:
                from google.cloud import pubsub_v1

                self._publisher = pubsub_v1.PublisherClient()
        self._rows_written = M.counter(M.bigquery_rows(rows.DEAD_LETTER_TABLE))
        self._rows_failed = M.counter(M.DEAD_LETTER_ROWS_FAILED)
        self._publish_failed = M.counter(M.DEAD_LETTER_PUBLISH_FAILED)
        self._retries = M.counter(M.DEAD_LETTER_RETRIES)

    def start_bundle(self) -> None:
        self._pending: list[_Letter] = []

    def process(self, letter: DeadLetter) -> None:
        row = None
        if self._inserter is not None:
            try:
                built, insert_id = dead_letter_table_row(letter)
                row = (built, insert_id, None)
            except Exception as exc:  # the topic copy still goes out
                self._rows_failed.inc()
                _LOG.error("dead-letter row for message %s failed: %s", letter.source_message_id, exc)
        self._pending.append(_Letter(letter, row, self._publisher is not None, self._inserter is not None))
        if len(self._pending) >= BATCH_SIZE:
            self._deliver(self._pending)
            self._pending = []

    def finish_bundle(self) -> None:
        if self._pending:
            self._deliver(self._pending)
            self._pending = []

    def teardown(self) -> None:
        publisher = getattr(self, "_publisher", None)
        if publisher is not None and self.publisher is None:
            publisher.stop()

    def _deliver(self, letters: list[_Letter]) -> None:
        budget = RetryBudget(self.retry_seconds)
        last_resort: RetryBudget | None = None  # past the limit: for letters that no sink took yet
        pending = letters
        while True:
            errors = []
            if any(item.topic == PENDING for item in pending):
                errors.append(self._publish([item for item in pending if item.topic == PENDING]))
            if any(item.table == PENDING for item in pending):
                errors.append(self._insert([item for item in pending if item.table == PENDING]))
            if budget.spent():  # give up on a failing sink where the other one took it
                for item in pending:
                    if item.topic == DONE and item.table == PENDING:
                        item.table = GAVE_UP
                        self._rows_failed.inc()
                    elif item.table == DONE and item.topic == PENDING:
                        item.topic = GAVE_UP
                        self._publish_failed.inc()
            finished = [item for item in pending if item.finished()]
            for item in finished:
                if not item.landed() and (item.topic, item.table) != (NONE, NONE):
                    _LOG.error("dead letter of message %s (%s) was refused by the dead_letters table and there is "
                               "no dead-letter topic", item.letter.source_message_id, item.letter.reason)  # fmt: skip
            if finished:
                delivery.release(item.letter.source_message_id for item in finished)
            pending = [item for item in pending if not item.finished()]
            if not pending:
                break
            detail = "; ".join(e for e in errors if e) or "dead letters not written"
            delivery.trouble(delivery.DEAD_LETTERS, f"{detail} (retrying for {budget.elapsed():.0f} s)")
            self._retries.inc()
            if last_resort is None and not budget.wait():
                _LOG.error(
                    "%d dead letters reached no dead-letter sink in %.0f s; retrying until one takes them (their "
                    "messages stay unacknowledged): %s", len(pending), budget.elapsed(), detail,
                )  # fmt: skip
                last_resort = RetryBudget(None)
            if last_resort is not None:
                last_resort.wait()
        if budget.retries:
            delivery.trouble(delivery.DEAD_LETTERS, None)

    def _publish(self, items: list[_Letter]) -> str | None:
        """One publish attempt per letter; marks the published ones, returns the first error."""
        from google.api_core.retry import Retry

        retry = Retry(initial=0.1, maximum=1.0, timeout=REQUEST_TIMEOUT_S)
        futures = []
        for item in items:
            letter = item.letter
            attributes = core.dead_letter_attributes(letter)
            futures.append(
                self._publisher.publish(self.topic, letter.data, retry=retry, timeout=REQUEST_TIMEOUT_S, **attributes)
            )
        error = None
        for item, future in zip(items, futures, strict=True):
            try:
                future.result(timeout=REQUEST_TIMEOUT_S * 2)
                item.topic = DONE
            except Exception as exc:
                error = error or f"{self.topic}: publish failed: {type(exc).__name__}: {exc}"[:900]
        return error

    def _insert(self, items: list[_Letter]) -> str | None:
        committed, rejected, _retry, error = self._inserter.attempt(self._table, [item.row for item in items])
        by_row = {id(item.row): item for item in items}
        for entry in committed:
            by_row[id(entry)].table = DONE
        for entry, detail in rejected:  # refused for good: the topic copy is the one that counts
            item = by_row[id(entry)]
            item.table = GAVE_UP
            self._rows_failed.inc()
            _LOG.error("dead-letter row for message %s not inserted: %s", item.letter.source_message_id, detail)
        self._rows_written.inc(len(committed))
        return error


class WriteDeadLetters(beam.PTransform):
    """Dead letters -> the dead-letter topic (when given) and the dead_letters table (when a dataset is).

    Counts every dead letter by reason code; returns them (counted). The arguments are WriteDeadLettersFn's, which
    says what happens on failures.
    """

    def __init__(self, topic: str | None, project: str | None = None, dataset: str | None = None, **options: Any):
        super().__init__()
        self.write = WriteDeadLettersFn(topic, project, dataset, **options)

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        counted = letters | "CountByReason" >> beam.Map(_count_dead_letter)
        _ = counted | "WriteDeadLetters" >> beam.ParDo(self.write)
        return counted
