"""eventmodel.rows: an accepted event plus Pub/Sub metadata in, a BigQuery row out."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from events import T0, activity, inventory, order, uid

from eventmodel import rows as R
from eventmodel.schema import MAX_PAYLOAD_BYTES, SCHEMA_VERSION, SCHEMAS
from eventmodel.validate import validate

PUBLISHED = datetime(2025, 2, 8, 13, 9, 5, 250000, tzinfo=UTC)
INGESTED = datetime(2025, 2, 8, 13, 9, 6, tzinfo=UTC)


def test_order_row_has_every_column_in_bigquery_form():
    row = R.event_row(
        order(uid("o1"), "pending", T0),
        message_id="m-1",
        publish_time=PUBLISHED,
        attributes={"event_id": "e-1", "run_id": "run-7", "event_type": "order"},
        ingest_time=INGESTED,
    )
    assert list(row) == [f.name for f in SCHEMAS["order"]] + list(R.METADATA_COLUMNS)
    assert row["order_date"] == "2025-02-08T13:09:00.000000Z"
    assert row["total_amount"] == "190.08"  # NUMERIC as exact decimal text
    assert row["items"][1] == {"product_id": uid("p2"), "product_name": "Desk", "quantity": 1, "price": "150.1"}
    assert row["shipping_address"]["country"] == "DE"
    assert (row["event_id"], row["message_id"], row["run_id"]) == ("e-1", "m-1", "run-7")
    assert row["publish_time"] == "2025-02-08T13:09:05.250000Z"
    assert row["ingest_time"] == "2025-02-08T13:09:06.000000Z"
    assert row["schema_version"] == SCHEMA_VERSION
    orjson.dumps(row)  # JSON-serialisable as insertAll and load jobs need


def test_without_attributes_the_message_id_is_the_event_id():
    row = R.event_row(activity("s", "login", T0), message_id="m-9", publish_time=PUBLISHED, attributes=None)
    assert row["event_id"] == "m-9" and row["run_id"] is None
    blank = R.event_row(activity("s", "login", T0), message_id="m-9", publish_time=None, attributes={"event_id": " "})
    assert blank["event_id"] == "m-9" and blank["publish_time"] is None


def test_a_row_needs_some_id():
    with pytest.raises(ValueError, match="message_id"):
        R.event_row(activity("s", "login", T0), message_id="", publish_time=None, attributes={})


def test_event_time_with_an_offset_is_stored_in_utc():
    event = orjson.loads(orjson.dumps(inventory("p", "w", 5, "restock", T0, "m").event))
    event["timestamp"] = "2025-02-08T15:09:00+02:00"
    row = R.event_row(validate(orjson.dumps(event)), message_id="m", publish_time="2025-02-08T13:09:05Z")
    assert row["timestamp"] == "2025-02-08T13:09:00.000000Z"
    assert row["publish_time"] == "2025-02-08T13:09:05.000000Z"
    assert row["ingest_time"].endswith("Z")


def test_naive_and_offset_datetimes_become_utc_text():
    assert R.rfc3339(datetime(2025, 1, 1, 12)) == "2025-01-01T12:00:00.000000Z"
    assert R.rfc3339(datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5)))) == "2025-01-01T17:00:00.000000Z"
    with pytest.raises(ValueError):
        R.rfc3339("yesterday")


@pytest.mark.parametrize(
    ("value", "text"),
    [(19.99, "19.99"), (100, "100"), (0.1 + 0.2, "0.3"), (1e-5, "0.00001"), (2.5e20, "250000000000000000000")],
)
def test_numeric_text_is_exact(value, text):
    assert R.numeric(value) == text


def test_numeric_out_of_range_is_a_value_error():
    with pytest.raises(ValueError, match="NUMERIC"):
        R.numeric(1e40)


def test_table_of_every_type():
    assert {t: R.table_of(t) for t in SCHEMAS} == R.TABLES


def test_dead_letter_row_keeps_the_bytes_and_attributes():
    payload = b'{"event_type": "order", \xff'
    row = R.dead_letter_row(
        payload,
        reason="INVALID_UTF8",
        detail="invalid UTF-8 at byte 24",
        stage="validate",
        message_id="m-3",
        publish_time=PUBLISHED,
        attributes={"event_type": "order", "run_id": "r", "event_id": "e-3"},
        ingest_time=INGESTED,
    )
    assert list(row) == list(R.DEAD_LETTER_COLUMNS)
    assert base64.b64decode(row["payload"]) == payload
    assert orjson.loads(row["attributes"]) == {"event_type": "order", "run_id": "r", "event_id": "e-3"}
    assert (row["event_type"], row["event_id"], row["message_id"]) == ("order", "e-3", "m-3")


def test_dead_letter_row_cuts_an_oversize_payload_and_says_so():
    payload = b"x" * (MAX_PAYLOAD_BYTES + 10)
    row = R.dead_letter_row(
        payload, reason="OVERSIZE_PAYLOAD", detail="too big", stage="validate", message_id="m", publish_time=None
    )
    assert len(base64.b64decode(row["payload"])) == MAX_PAYLOAD_BYTES
    assert "cut to" in row["detail"] and row["attributes"] == "{}" and row["event_type"] is None
