"""The pipeline's pure core: ids, paths, names, file lines and dead-letter records, without Beam."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from eventmodel import reasons as R
from eventmodel.resources import (
    ATTR_DLQ_DETAIL,
    ATTR_DLQ_REASON,
    ATTR_DLQ_SOURCE_MESSAGE_ID,
    ATTR_DLQ_STAGE,
    ATTR_EVENT_ID,
)
from eventmodel.validate import validate
from pipeline import core

INVENTORY = (
    b'{"event_type":"inventory","inventory_id":"8a2f6c1e-3b4d-4e5f-9a6b-7c8d9e0f1a2b",'
    b'"product_id":"1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9","warehouse_id":"0f1e2d3c-4b5a-4697-8877-665544332211",'
    b'"quantity_change":-3,"reason":"sale","timestamp":"2025-02-08T13:09:59.999Z"}'
)


def valid_event(data: bytes = INVENTORY, attributes: dict | None = None, message_id: str = "42") -> core.ValidEvent:
    accepted = validate(data)
    attributes = {"run_id": "r1"} if attributes is None else attributes
    return core.ValidEvent(
        accepted.event_type,
        accepted.event,
        accepted.event_time,
        core.event_id_of(attributes, message_id),
        message_id,
        datetime(2025, 2, 8, 13, 10, 0, 500, tzinfo=UTC),
        attributes,
        data,
    )


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({ATTR_EVENT_ID: "e-1"}, "e-1"),
        ({}, "msg-9"),
        (None, "msg-9"),
        ({ATTR_EVENT_ID: "   "}, "msg-9"),  # a blank attribute is no id
        ({ATTR_EVENT_ID: ""}, "msg-9"),
    ],
)
def test_event_id_is_the_attribute_else_the_message_id(attributes, expected):
    assert core.event_id_of(attributes, "msg-9") == expected


def test_the_assessment_example_path():
    minute = core.minute_key(datetime(2025, 2, 8, 13, 9, 41, tzinfo=UTC))
    assert minute == "202502081309"
    assert core.file_path("output", "order", minute, 1) == "output/order/2025/02/08/13/09/order_2025020813090001.json"


def test_minute_is_taken_in_utc_whatever_the_offset():
    moment = datetime(2025, 2, 8, 23, 59, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert core.minute_key(moment) == "202502090459"
    assert core.minute_folder("gs://bucket/prefix/", "inventory", "202502090459") == (
        "gs://bucket/prefix/inventory/2025/02/09/04/59"
    )


def test_sequence_is_four_digits_and_grows_past_them_instead_of_wrapping():
    assert core.file_name("user_activity", "202502081309", 0) == "user_activity_2025020813090000.json"
    assert core.file_name("user_activity", "202502081309", 9999) == "user_activity_2025020813099999.json"
    assert core.file_name("user_activity", "202502081309", 10000) == "user_activity_20250208130910000.json"
    with pytest.raises(ValueError):
        core.file_name("order", "202502081309", -1)


@pytest.mark.parametrize("sequence", [0, 7, 9999, 10000])
def test_sequence_of_reads_back_what_file_name_wrote(sequence):
    name = core.file_name("order", "202502081309", sequence)
    assert core.sequence_of(f"gs://b/x/{name}", "order", "202502081309") == sequence


@pytest.mark.parametrize(
    "name",
    [
        "order_2025020813090001.json.tmp",
        ".order_2025020813090001.json.abc.tmp",
        "order_202502081309001.json",  # three digits: not ours
        "order_2025020813100001.json",  # another minute
        "inventory_2025020813090001.json",  # another type
        "order_202502081309abcd.json",
    ],
)
def test_sequence_of_ignores_other_names(name):
    assert core.sequence_of(name, "order", "202502081309") is None


def test_file_line_holds_the_event_and_what_reconcile_needs():
    event = valid_event()
    line = core.file_line(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = orjson.loads(line)
    assert list(record) == ["event_id", "message_id", "publish_time", "attributes", "event"]
    assert record["event"] == orjson.loads(INVENTORY)
    assert record["event_id"] == "42" and record["message_id"] == "42"
    assert record["publish_time"] == "2025-02-08T13:10:00.000500Z"
    assert record["attributes"] == {"run_id": "r1"}


def test_dead_letter_attributes_keep_the_originals_and_add_the_reason():
    letter = core.DeadLetter(
        b"\xff", {"run_id": "r", "event_id": "e"}, R.INVALID_UTF8, "bad", "validate", "m1", "e", None
    )
    attributes = core.dead_letter_attributes(letter)
    assert attributes == {
        "run_id": "r",
        "event_id": "e",
        ATTR_DLQ_REASON: R.INVALID_UTF8,
        ATTR_DLQ_DETAIL: "bad",
        ATTR_DLQ_SOURCE_MESSAGE_ID: "m1",
        ATTR_DLQ_STAGE: "validate",
    }
    assert letter.attributes == {"run_id": "r", "event_id": "e"}, "the source attributes are not modified"


def test_a_long_detail_is_cut_to_the_pubsub_attribute_limit_on_a_character_boundary():
    letter = core.DeadLetter(b"x", {}, R.NOT_JSON, "é" * 2000, "validate", "m", "m", None)
    detail = core.dead_letter_attributes(letter)[ATTR_DLQ_DETAIL]
    assert len(detail.encode("utf-8")) <= core.MAX_ATTRIBUTE_VALUE_BYTES
    assert detail.endswith("...")


def test_dead_letter_from_an_event_keeps_its_original_bytes():
    event = valid_event(attributes={ATTR_EVENT_ID: "ev"})
    letter = core.dead_letter_from_event(event, R.PROCESSING_ERROR, "boom", core.STAGE_BUILD_ROW)
    assert letter.data == INVENTORY
    assert (letter.event_id, letter.source_message_id, letter.stage) == ("ev", "42", core.STAGE_BUILD_ROW)


def test_dead_letter_from_a_line_recovers_the_compact_body_and_the_metadata():
    event = valid_event(attributes={ATTR_EVENT_ID: "ev", "run_id": "r"})
    letter = core.dead_letter_from_line(core.file_line(event), R.GCS_WRITE_FAILED, "disk full", core.STAGE_GCS)
    assert letter.data == INVENTORY  # the generator (and orjson) write compact JSON: byte for byte
    assert letter.attributes == {ATTR_EVENT_ID: "ev", "run_id": "r"}
    assert (letter.event_id, letter.source_message_id, letter.reason) == ("ev", "42", R.GCS_WRITE_FAILED)
    assert letter.publish_time == event.publish_time
