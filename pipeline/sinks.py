"""The BigQuery and dead-letter sinks: WriteEventRows and WriteDeadLetters.

Rows come from the event model's row builder (eventmodel.rows), never built here. Streaming inserts go through
the DoFn Beam's WriteToBigQuery uses for them (BigQueryWriteFn), fed directly so that the insert id of every
row is its event_id: WriteToBigQuery would invent random insert ids, and then a redelivered or re-published
event, or a pipeline restarted without its dedup state, could not be recognised by BigQuery's best-effort
insertId dedup. With deterministic ids a retry needs no commit step (WriteToBigQuery's reshuffle) either.
STORAGE_WRITE_API (Dataflow) uses WriteToBigQuery itself: its streams are exactly-once without insert ids.

Rows BigQuery rejects, and rows still failing after `max_retries`, come back as BIGQUERY_INSERT_FAILED dead
letters with the original message bytes and attributes (RETRY_ON_TRANSIENT_ERROR: bad rows are not retried
forever).
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
from apache_beam.io.gcp.bigquery import BigQueryDisposition, BigQueryWriteFn, WriteToBigQuery
from apache_beam.io.gcp.bigquery_tools import RetryStrategy
from apache_beam.io.gcp.pubsub import PubsubMessage, WriteToPubSub
from apache_beam.utils.timestamp import Timestamp

from eventmodel import reasons as R
from eventmodel import rows
from eventmodel.validate import Accepted
from pipeline import core
from pipeline import metrics as M
from pipeline.core import DeadLetter, ValidEvent
from pipeline.transforms import DEAD_LETTER

_LOG = logging.getLogger(__name__)

STREAMING_INSERTS = "STREAMING_INSERTS"
STORAGE_WRITE_API = "STORAGE_WRITE_API"
METHODS = (STREAMING_INSERTS, STORAGE_WRITE_API)

DEFAULT_MAX_RETRIES = 5
BATCH_SIZE = 500  # rows per insertAll request (BigQuery recommends up to 500)


def table_spec(project: str, dataset: str, table: str) -> str:
    return f"{project}:{dataset}.{table}"


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
    """ValidEvent -> (table spec, (row, insert id = event_id, source)), or a PROCESSING_ERROR dead letter."""

    def __init__(self, project: str, dataset: str) -> None:
        self.project = project
        self.dataset = dataset

    def setup(self) -> None:
        self._tables = {t: table_spec(self.project, self.dataset, rows.table_of(t)) for t in rows.TABLES}

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


class InsertRowsFn(BigQueryWriteFn):
    """Beam's streaming-insert DoFn, with each failed row turned back into a dead letter of its message.

    Input elements are (table spec, (row, insert id, source)); BigQueryWriteFn reads r[0] and r[1] only. Its
    failed rows come out of _flush_batch as the very row objects it buffered, which map back to their source.
    Counts rows written per table and the worst publish-to-insert lag of each batch.
    """

    def __init__(self, *args: Any, dead_letter_reason: str = R.BIGQUERY_INSERT_FAILED, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dead_letter_reason = dead_letter_reason

    def setup(self) -> None:
        super().setup()
        self._written: dict[str, Any] = {}
        self._failed = M.counter(M.BIGQUERY_FAILED)
        self._lag = M.gauge(M.BIGQUERY_LAG_MS)

    def _check_row_size(self, row_and_insert_id):
        # Beam measures each row with objsize.get_deep_size, which walks every loaded module's globals per row
        # (~1 ms a row, the largest cost of the whole pipeline when measured). The JSON that goes on the wire is
        # what the insert limit is about, and orjson measures it in microseconds.
        row, insert_id = row_and_insert_id[0], row_and_insert_id[1]
        size = len(orjson.dumps(row, default=str)) + len(insert_id or "")
        if size >= self._max_insert_payload_size:
            return size, (
                f"Received row with size {size / 1_000_000}MB that exceeds the maximum insert payload size set "
                f"({self._max_insert_payload_size / 1_000_000}MB)."
            )
        return size, None

    def _flush_batch(self, destination):
        # Eager, like Beam's: process() appends the next row to the buffer right after calling this, so a lazy
        # generator would flush that row too and unbalance Beam's buffered-row count.
        return list(self._flush_and_route(destination))

    def _flush_and_route(self, destination: str) -> Iterator[Any]:
        buffered = list(self._rows_buffer[destination])
        sources = {id(entry[0]): entry[2] for entry, _window in buffered}
        oldest = min((s.publish_time for s in sources.values() if s.publish_time), default=None)
        total = len(buffered)
        failed = []  # (windowed value, source, detail)
        try:
            outputs = list(super()._flush_batch(destination))
        except Exception as exc:
            # The insert raised instead of returning row errors (service unreachable after the client's retries):
            # the whole batch is a sink failure. Beam left it buffered; take it out so it is not sent again.
            self._forget_buffer(destination)
            detail = f"{destination}: insert failed: {type(exc).__name__}: {exc}"[:900]
            failed = [(window, entry[2], detail) for entry, window in buffered]
        else:
            for output in outputs:
                if output.tag != BigQueryWriteFn.FAILED_ROWS_WITH_ERRORS:
                    continue  # FAILED_ROWS repeats the same rows without the errors
                windowed = output.value
                _table, row, errors = windowed.value
                failed.append((windowed, sources[id(row)], f"{destination}: {_describe_errors(errors)}"))
        for windowed, source, detail in failed:
            yield pvalue.TaggedOutput(
                DEAD_LETTER,
                windowed.with_value(
                    DeadLetter(
                        source.data,
                        source.attributes,
                        self.dead_letter_reason,
                        detail,
                        core.STAGE_BIGQUERY,
                        source.message_id,
                        source.event_id,
                        source.publish_time,
                    )
                ),
            )
        table = destination.rsplit(".", 1)[-1]
        counter = self._written.get(table)
        if counter is None:
            counter = self._written[table] = M.counter(M.bigquery_rows(table))
        counter.inc(total - len(failed))
        if failed:
            self._failed.inc(len(failed))
        if oldest is not None and total > len(failed):
            self._lag.set(int((time.time() - oldest.timestamp()) * 1000))

    def _forget_buffer(self, destination: str) -> None:
        rows_ = self._rows_buffer.pop(destination, [])
        self._total_buffered_rows -= len(rows_)
        self._destination_buffer_byte_size.pop(destination, None)


def _describe_errors(errors: Any) -> str:
    try:
        return "; ".join(f"{e.get('reason')}: {e.get('message')}" for e in errors)[:900]
    except Exception:
        return str(errors)[:900]


def _insert_rows_fn(test_client: Any, max_retries: int, reason: str = R.BIGQUERY_INSERT_FAILED) -> InsertRowsFn:
    return InsertRowsFn(
        batch_size=BATCH_SIZE,
        create_disposition=BigQueryDisposition.CREATE_NEVER,
        write_disposition=BigQueryDisposition.WRITE_APPEND,
        test_client=test_client,
        retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
        max_retries=max_retries,
        dead_letter_reason=reason,
    )


class WriteEventRows(beam.PTransform):
    """Valid events -> rows in the event tables of `dataset`. Returns dead letters (row or insert failures)."""

    def __init__(
        self,
        project: str,
        dataset: str,
        method: str = STREAMING_INSERTS,
        test_client: Any = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.project = project
        self.dataset = dataset
        self.method = method
        self.test_client = test_client
        self.max_retries = max_retries

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        built = events | "BuildRows" >> beam.ParDo(BuildEventRowFn(self.project, self.dataset)).with_outputs(
            DEAD_LETTER, main="rows"
        )
        if self.method == STREAMING_INSERTS:
            inserted = built.rows | "InsertRows" >> beam.ParDo(
                _insert_rows_fn(self.test_client, self.max_retries)
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
            schema = fetch_table_schema(self.project, self.dataset, table, self.schema_client)
            result = (
                keyed_rows
                | f"Only{table}" >> beam.Filter(lambda kv, spec=spec: kv[0] == spec)
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


class BuildDeadLetterRowFn(beam.DoFn):
    def __init__(self, project: str, dataset: str) -> None:
        self.project = project
        self.dataset = dataset

    def setup(self) -> None:
        self._table = table_spec(self.project, self.dataset, rows.DEAD_LETTER_TABLE)
        self._failed = M.counter(M.DEAD_LETTER_ROWS_FAILED)

    def process(self, letter: DeadLetter) -> Iterator[Any]:
        try:
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
        except Exception as exc:  # nowhere left to send it: count it and say so (the topic copy still exists)
            self._failed.inc()
            _LOG.error("dead-letter row for message %s failed: %s", letter.source_message_id, exc)
            return
        insert_id = f"{letter.event_id or letter.source_message_id}:{letter.stage}:{letter.reason}"
        yield self._table, (row, insert_id, _Source(_as_event(letter)))


def _as_event(letter: DeadLetter) -> ValidEvent:
    return ValidEvent(
        "", {}, None, letter.event_id, letter.source_message_id, letter.publish_time, letter.attributes, letter.data
    )


class _CountFailedDeadLetterRows(beam.DoFn):
    def setup(self) -> None:
        self._failed = M.counter(M.DEAD_LETTER_ROWS_FAILED)

    def process(self, letter: DeadLetter) -> None:
        self._failed.inc()
        _LOG.error("dead-letter row for message %s not inserted: %s", letter.source_message_id, letter.detail)


class WriteDeadLetters(beam.PTransform):
    """Dead letters -> the dead-letter topic (always, when given) and the dead_letters table (when a dataset is).

    Counts every dead letter by reason code. A dead-letter row that cannot be inserted is counted and logged:
    the topic copy is the durable one.
    """

    def __init__(
        self,
        topic: str | None,
        project: str | None = None,
        dataset: str | None = None,
        test_client: Any = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        super().__init__()
        self.topic = topic
        self.project = project
        self.dataset = dataset
        self.test_client = test_client
        self.max_retries = max_retries

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        counted = letters | "CountByReason" >> beam.Map(_count_dead_letter)
        if self.topic:
            _ = (
                counted
                | "ToMessages" >> beam.Map(to_pubsub_message)
                | "PublishDeadLetters" >> WriteToPubSub(self.topic, with_attributes=True)
            )
        if self.dataset:
            inserted = (
                counted
                | "BuildDeadLetterRows" >> beam.ParDo(BuildDeadLetterRowFn(self.project, self.dataset))
                | "InsertDeadLetterRows"
                >> beam.ParDo(_insert_rows_fn(self.test_client, self.max_retries)).with_outputs(
                    DEAD_LETTER, main="unused"
                )
            )
            _ = inserted[DEAD_LETTER] | "CountFailedRows" >> beam.ParDo(_CountFailedDeadLetterRows())
        return counted
