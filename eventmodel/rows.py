"""BigQuery rows: an accepted event (or a dead letter) plus its Pub/Sub metadata, as a row of the ddl/ model.

The one place that knows the BigQuery side of the model: table names, the ingestion-metadata columns every
table carries, the dead-letter columns, and how each schema kind maps to a BigQuery type. The DDL tests check
ddl/*.sql against these names and against eventmodel.schema, so neither can drift.

Pure Python (orjson only): it runs on Dataflow workers. Rows are JSON-serialisable dicts in the form
BigQuery's insertAll and JSON load jobs take (Beam WriteToBigQuery's STREAMING_INSERTS and FILE_LOADS):
TIMESTAMP as RFC 3339 UTC text, NUMERIC as exact decimal text, BYTES as base64, JSON as JSON text.

    >>> import orjson
    >>> from eventmodel.validate import validate
    >>> some_id = "6f1c3c8e-7d0a-4b8e-9d51-3f0e2c1b5a77"
    >>> accepted = validate(orjson.dumps({"event_type": "inventory", "inventory_id": some_id, "product_id": some_id,
    ...     "warehouse_id": some_id, "quantity_change": -3, "reason": "sale", "timestamp": "2025-01-01T00:00:00Z"}))
    >>> row = event_row(accepted, message_id="123", publish_time="2025-01-01T00:00:01Z", attributes={})
    >>> row["event_id"]                       # no event_id attribute: the message id identifies the event
    '123'
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any

import orjson

from eventmodel.resources import ATTR_EVENT_ID, ATTR_EVENT_TYPE, ATTR_RUN_ID
from eventmodel.schema import (
    EVENT_TIME_FIELD,
    INVENTORY,
    MAX_PAYLOAD_BYTES,
    ORDER,
    SCHEMA_VERSION,
    SCHEMAS,
    USER_ACTIVITY,
    Field,
    Kind,
)
from eventmodel.validate import Accepted, parse_timestamp

# Table per event type, the dead-letter table, and the S3-history landing tables (ddl/20_history_landing.sql).
TABLES: dict[str, str] = {ORDER: "orders", INVENTORY: "inventory", USER_ACTIVITY: "user_activity"}
DEAD_LETTER_TABLE = "dead_letters"
HISTORY_TABLES: dict[str, str] = {event_type: f"history_{table}" for event_type, table in TABLES.items()}

# Ingestion metadata on every table, after the event's own columns.
EVENT_ID = "event_id"  # the event_id attribute, else the Pub/Sub message id
MESSAGE_ID = "message_id"  # Pub/Sub message id (NULL for rows backfilled from S3)
PUBLISH_TIME = "publish_time"  # Pub/Sub publish time (NULL for rows backfilled from S3)
INGEST_TIME = "ingest_time"  # when the row was handed to BigQuery: the insert request or load job that landed it
RUN_ID = "run_id"  # the publisher's run_id attribute (NULL when the producer set none)
SCHEMA_VERSION_COLUMN = "schema_version"  # eventmodel.SCHEMA_VERSION the event was validated against
METADATA_COLUMNS: tuple[str, ...] = (EVENT_ID, MESSAGE_ID, PUBLISH_TIME, INGEST_TIME, RUN_ID, SCHEMA_VERSION_COLUMN)
# Metadata a streamed row always has; history rows may lack message_id and publish_time, producers run_id.
REQUIRED_METADATA: frozenset[str] = frozenset({EVENT_ID, INGEST_TIME, SCHEMA_VERSION_COLUMN})

# Dead-letter columns before the metadata ones.
PAYLOAD = "payload"
REASON = "reason"
DETAIL = "detail"
STAGE = "stage"
EVENT_TYPE = "event_type"
ATTRIBUTES = "attributes"
DEAD_LETTER_COLUMNS: tuple[str, ...] = (PAYLOAD, REASON, DETAIL, STAGE, EVENT_TYPE, ATTRIBUTES, *METADATA_COLUMNS)

# Schema kind -> BigQuery column type. Numbers are money (price, total_amount): NUMERIC sums exactly.
BIGQUERY_TYPES: dict[Kind, str] = {
    "uuid": "STRING",
    "timestamp": "TIMESTAMP",
    "string": "STRING",
    "ip_address": "STRING",
    "integer": "INT64",
    "number": "NUMERIC",
    "enum": "STRING",
    "record": "STRUCT",
    "records": "ARRAY<STRUCT>",
}
METADATA_TYPES: dict[str, str] = {
    EVENT_ID: "STRING",
    MESSAGE_ID: "STRING",
    PUBLISH_TIME: "TIMESTAMP",
    INGEST_TIME: "TIMESTAMP",
    RUN_ID: "STRING",
    SCHEMA_VERSION_COLUMN: "STRING",
}
DEAD_LETTER_TYPES: dict[str, str] = {
    PAYLOAD: "BYTES",
    REASON: "STRING",
    DETAIL: "STRING",
    STAGE: "STRING",
    EVENT_TYPE: "STRING",
    ATTRIBUTES: "JSON",
    **METADATA_TYPES,
}
DEAD_LETTER_REQUIRED: frozenset[str] = frozenset({PAYLOAD, REASON, STAGE}) | REQUIRED_METADATA

# NUMERIC holds 38 digits, 9 of them decimal places; rounding here makes the stored value the one the row says.
_NUMERIC_SCALE = Decimal("1e-9")
_NUMERIC_CONTEXT = Context(prec=38)


def event_id_of(message_id: str | None, attributes: dict[str, str] | None) -> str:
    """The event's identity: a non-blank event_id attribute, else the Pub/Sub message id.

    Production producers set no attributes; the message id still identifies the event, and a Pub/Sub
    redelivery keeps it, so redeliveries deduplicate. (pipeline.core.event_id_of applies the same rule.)
    """
    if attributes:
        value = attributes.get(ATTR_EVENT_ID)
        if value and value.strip():
            return value
    if not message_id:
        raise ValueError("a row needs an event_id attribute or a Pub/Sub message_id; got neither")
    return message_id


def rfc3339(moment: datetime | str | None) -> str | None:
    """UTC RFC 3339 with microseconds and a Z. Naive datetimes are taken as UTC; text is parsed first."""
    if moment is None:
        return None
    if isinstance(moment, str):
        parsed = parse_timestamp(moment)
        if parsed is None:
            raise ValueError(f"not an RFC 3339 timestamp: {moment!r}")
        moment = parsed
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def numeric(value: int | float) -> str:
    """Exact decimal text for a NUMERIC column: the float's shortest repr, rounded to NUMERIC's 9 places."""
    try:
        exact = Decimal(repr(value)).quantize(_NUMERIC_SCALE, context=_NUMERIC_CONTEXT)
    except InvalidOperation:
        raise ValueError(f"{value!r} does not fit BigQuery NUMERIC (29 integer digits)") from None
    return format(exact.normalize(_NUMERIC_CONTEXT), "f")


def _convert(fields: tuple[Field, ...], record: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for f in fields:
        value = record.get(f.name)
        if value is None:
            row[f.name] = None
        elif f.kind == "timestamp":
            row[f.name] = rfc3339(value)
        elif f.kind == "number":
            row[f.name] = numeric(value)
        elif f.kind == "record":
            row[f.name] = _convert(f.fields, value)
        elif f.kind == "records":
            row[f.name] = [_convert(f.fields, item) for item in value]
        else:
            row[f.name] = value
    return row


def _metadata(
    message_id: str | None,
    publish_time: datetime | str | None,
    attributes: dict[str, str] | None,
    ingest_time: datetime | None,
) -> dict[str, Any]:
    return {
        EVENT_ID: event_id_of(message_id, attributes),
        MESSAGE_ID: message_id,
        PUBLISH_TIME: rfc3339(publish_time),
        INGEST_TIME: rfc3339(ingest_time or datetime.now(UTC)),
        RUN_ID: (attributes or {}).get(ATTR_RUN_ID) or None,
        SCHEMA_VERSION_COLUMN: SCHEMA_VERSION,
    }


def table_of(event_type: str) -> str:
    """The table an event type's rows go to."""
    return TABLES[event_type]


def event_row(
    accepted: Accepted,
    *,
    message_id: str,
    publish_time: datetime | str | None,
    attributes: dict[str, str] | None = None,
    ingest_time: datetime | None = None,
) -> dict[str, Any]:
    """The row of table_of(accepted.event_type) for a validated event and the Pub/Sub message that carried it.

    attributes may be None or lack event_id and run_id (production producers set none). The event-time field
    is written from accepted.event_time (already normalised to UTC by the validator). ingest_time defaults to
    now; pass it to make rows reproducible.
    """
    row = _convert(SCHEMAS[accepted.event_type], accepted.event)
    row[EVENT_TIME_FIELD[accepted.event_type]] = rfc3339(accepted.event_time)
    row.update(_metadata(message_id, publish_time, attributes, ingest_time))
    return row


def dead_letter_row(
    payload: bytes,
    *,
    reason: str,
    detail: str,
    stage: str,
    message_id: str,
    publish_time: datetime | str | None,
    attributes: dict[str, str] | None = None,
    ingest_time: datetime | None = None,
) -> dict[str, Any]:
    """The dead_letters row for a message the pipeline rejected (reason: a code of eventmodel.reasons).

    The payload is kept byte for byte up to MAX_PAYLOAD_BYTES; an oversize payload is cut there (a BigQuery
    streamed row is limited to 10 MB) and the detail says so; the dead-letter topic keeps it whole.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        detail = f"{detail} [payload cut to {MAX_PAYLOAD_BYTES} of {len(payload)} bytes in this table]"
        payload = payload[:MAX_PAYLOAD_BYTES]
    attributes = attributes or {}
    return {
        PAYLOAD: base64.b64encode(payload).decode("ascii"),
        REASON: reason,
        DETAIL: detail,
        STAGE: stage,
        EVENT_TYPE: attributes.get(ATTR_EVENT_TYPE) or None,
        ATTRIBUTES: orjson.dumps(attributes, option=orjson.OPT_SORT_KEYS).decode("utf-8"),
        **_metadata(message_id, publish_time, attributes, ingest_time),
    }
