"""The reading rule and the identity of historical records (eventmodel.history), pure."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import orjson
import pytest

from eventmodel import history as H
from publisher import objects as layout


def read(key: str, body: bytes, chunk: int = 7) -> list[tuple[int, int, bytes]]:
    """Records of a body handed over in small chunks (a record must not depend on where chunks break)."""
    return [tuple(r) for r in H.records(key, (body[i : i + chunk] for i in range(0, len(body), chunk)))]


def test_json_lines_every_line_a_record_blank_ones_included():
    body = b'{"a":1}\n\n{"b":2}\nnot json\n'
    assert read("x/part-00000.jsonl", body) == [
        (1, 0, b'{"a":1}'),
        (2, 1, b""),
        (3, 2, b'{"b":2}'),
        (4, 3, b"not json"),
    ]


def test_a_last_line_without_newline_is_a_record_and_an_empty_object_holds_none():
    assert read("x.ndjson", b'{"a":1}\n{"b":') == [(1, 0, b'{"a":1}'), (2, 1, b'{"b":')]
    assert read("x.jsonl", b"") == []
    assert read("x.jsonl", b"\n") == [(1, 0, b"")]


@pytest.mark.parametrize("chunk", [1, 3, 64, 1 << 20])
def test_the_publishers_array_layout_reads_back_byte_for_byte(chunk):
    payloads = [b'{"a":1}', b'{"b":[1,2]}', b'"text, with a comma"', b"[]", b'{"c":"]"}']
    body = b"".join(layout.frame(layout.ARRAY, i, p) for i, p in enumerate(payloads))
    body += layout.closing(layout.ARRAY, len(payloads))
    got = read("r/part-00001.json", body, chunk)
    assert [r[2] for r in got] == payloads
    assert [r[0] for r in got] == [layout.line_of(layout.ARRAY, i) for i in range(len(payloads))]
    assert [r[1] for r in got] == list(range(len(payloads)))


def test_a_pretty_printed_array_keeps_each_elements_text():
    body = b'[\n  {\n    "a": 1\n  },\n  {"b": 2}\n]\n'
    assert read("p.json", body) == [(2, 0, b'{\n    "a": 1\n  }'), (5, 1, b'{"b": 2}')]


def test_a_compact_array_is_re_encoded_compactly():
    assert read("c.json", b'[{"a":1},{"b":"x"}]') == [(1, 0, b'{"a":1}'), (1, 1, b'{"b":"x"}')]


def test_any_other_json_body_is_one_record_whole():
    assert read("one.json", b'{"a":1}') == [(1, 0, b'{"a":1}')]
    assert read("two.json", b'{"a":1}\n{"b":2}\n') == [(1, 0, b'{"a":1}\n{"b":2}\n')]
    assert read("junk.json", b"\x00\xffnot json at all") == [(1, 0, b"\x00\xffnot json at all")]
    for blank in (b"\n", b"\r\n", b"\t \n", b" "):  # whitespace bodies keep every byte
        assert read("blank.json", blank) == [(1, 0, blank)]
    assert read("nothing.json", b"") == [(1, 0, b"")]  # an object per event, of an empty event


def test_a_laid_out_array_that_breaks_off_ends_with_the_rest_as_one_record():
    body = b'[\n{"a":1},\n{"b":\n'
    assert read("cut.json", body) == [(2, 0, b'{"a":1}'), (3, 1, b'{"b":')]


def test_gzip_is_found_by_its_magic_bytes_whatever_the_name():
    body = b'{"a":1}\n{"b":2}\n'
    packed = gzip.compress(body[:8]) + gzip.compress(body[8:])  # two members, as concatenated uploads make
    assert read("x.jsonl", packed) == read("x.jsonl.gz", body) == [(1, 0, b'{"a":1}'), (2, 1, b'{"b":2}')]
    assert read("named.jsonl.gz", body) == [(1, 0, b'{"a":1}'), (2, 1, b'{"b":2}')]  # not gzip after all


def test_a_cut_off_gzip_stream_is_an_error_not_a_short_object():
    packed = gzip.compress(b'{"a":1}\n' * 1000)
    with pytest.raises(EOFError):
        read("x.jsonl.gz", packed[: len(packed) // 2])


def test_the_natural_key_is_the_same_for_the_event_and_its_bigquery_row():
    event = {"event_type": "user_activity", "user_id": "u", "activity_type": "login",
             "timestamp": "2025-01-02T03:04:05.5+00:00",
             "metadata": {"session_id": "s", "platform": "web"}}  # fmt: skip
    row = {"user_id": "u", "activity_type": "login", "metadata": {"session_id": "s", "platform": "web"},
           "timestamp": datetime(2025, 1, 2, 3, 4, 5, 500000, tzinfo=UTC), "event_id": "other"}  # fmt: skip
    assert H.history_event_id("user_activity", event) == H.history_event_id("user_activity", row)
    assert H.natural_key("user_activity", event) == ("u", "s", "login", "2025-01-02T03:04:05.500000Z")
    moved = dict(event, timestamp="2025-01-02T03:04:06Z")
    assert H.history_event_id("user_activity", moved) != H.history_event_id("user_activity", event)


def test_each_type_keys_on_its_documented_fields():
    order = {"order_id": "o", "status": "shipped", "order_date": "2025-01-01T00:00:00Z", "total_amount": 1}
    other_total = dict(order, total_amount=2)
    assert H.history_event_id("order", order) == H.history_event_id("order", other_total)
    assert H.history_event_id("order", order) != H.history_event_id("order", dict(order, status="delivered"))
    assert H.history_event_id("inventory", {"inventory_id": "i", "reason": "sale"}) == H.history_event_id(
        "inventory", {"inventory_id": "i", "reason": "restock"}
    )
    assert len(H.history_event_id("inventory", {"inventory_id": "i"})) == 64
    assert orjson.loads(orjson.dumps(H.NATURAL_KEYS)) == {
        "order": ["order_id", "status", "order_date"],
        "inventory": ["inventory_id"],
        "user_activity": ["user_id", "metadata.session_id", "activity_type", "timestamp"],
    }


def test_record_ids_and_run_folders():
    assert H.record_id("s3://b/k.jsonl", 3) == "s3://b/k.jsonl#3"
    assert H.run_id_of_key("exports/20261201-101500-3f9a/order/part-00001.jsonl") == "20261201-101500-3f9a"
    assert H.run_id_of_key("exports/2025/part-00001.jsonl") is None
    assert H.run_id_of_key("20261201-101500-3f9a") is None  # a key's own name is not its folder
