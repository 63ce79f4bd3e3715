"""The validator: accepted events, one reason code per fault, and totality (no input raises)."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime

import orjson
import pytest

from eventmodel import reasons as R
from eventmodel.validate import Accepted, Rejected, parse_timestamp, validate

UUID = "8a1c2b3d-1111-4222-8333-944455556666"

SAMPLE_EVENTS = {
    "order": {
        "event_type": "order",
        "order_id": UUID,
        "customer_id": UUID,
        "order_date": "2025-02-08T13:09:01.123Z",
        "status": "pending",
        "items": [
            {"product_id": UUID, "product_name": "Widget", "quantity": 2, "price": 3.55},
            {"product_id": UUID, "product_name": "Gadget", "quantity": 3, "price": 10},
        ],
        "shipping_address": {"street": "1 Main St", "city": "Springfield", "country": "US"},
        "total_amount": 37.1,
    },
    "inventory": {
        "event_type": "inventory",
        "inventory_id": UUID,
        "product_id": UUID,
        "warehouse_id": UUID,
        "quantity_change": -4,
        "reason": "sale",
        "timestamp": "2025-02-08T13:09:01Z",
    },
    "user_activity": {
        "event_type": "user_activity",
        "user_id": UUID,
        "activity_type": "view_product",
        "ip_address": "2001:db8::1",
        "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
        "timestamp": "2025-02-08T14:09:01.5+01:00",
        "metadata": {"session_id": UUID, "platform": "mobile"},
    },
}


def encode(event) -> bytes:
    return orjson.dumps(event)


def mutated(event_type: str, mutate) -> bytes:
    event = copy.deepcopy(SAMPLE_EVENTS[event_type])
    mutate(event)
    return encode(event)


@pytest.mark.parametrize("event_type", sorted(SAMPLE_EVENTS))
def test_valid_events_are_accepted_with_their_utc_event_time(event_type):
    result = validate(encode(SAMPLE_EVENTS[event_type]))
    assert isinstance(result, Accepted), result
    assert result.event_type == event_type
    assert result.event == SAMPLE_EVENTS[event_type]
    assert result.event_time == datetime(
        2025, 2, 8, 13, 9, 1, {"order": 123000, "inventory": 0}.get(event_type, 500000), tzinfo=UTC
    )


def _set(path, value):
    def mutate(event):
        *parents, last = path
        for p in parents:
            event = event[p]
        event[last] = value

    return mutate


def _delete(path):
    def mutate(event):
        *parents, last = path
        for p in parents:
            event = event[p]
        del event[last]

    return mutate


CASES = [
    # (reason, payload)
    (R.EMPTY_PAYLOAD, b""),
    (R.EMPTY_PAYLOAD, b" \n\t"),
    (R.OVERSIZE_PAYLOAD, b'{"event_type": "order", "pad": "' + b"x" * 1_000_001 + b'"}'),
    (R.INVALID_UTF8, b'{"event_type": "order", "x": "\xff\xfe"}'),
    (R.INVALID_UTF8, b"\xc3\x28"),
    (R.TRUNCATED_JSON, encode(SAMPLE_EVENTS["order"])[:-7]),
    (R.TRUNCATED_JSON, b'{"event_type": "inventory", "reason": "sa'),
    (R.NOT_JSON, b"order,1234,pending"),
    (R.NOT_JSON, b"{'event_type': 'order'}"),
    (R.NOT_JSON, b'{"event_type": "order", "total_amount": NaN}'),
    (R.NOT_AN_OBJECT, b"[1, 2, 3]"),
    (R.NOT_AN_OBJECT, b'"order"'),
    (R.NOT_AN_OBJECT, b"null"),
    (R.MISSING_EVENT_TYPE, mutated("order", _delete(["event_type"]))),
    (R.MISSING_EVENT_TYPE, mutated("order", _set(["event_type"], None))),
    (R.MISSING_EVENT_TYPE, mutated("order", _set(["event_type"], 7))),
    (R.UNKNOWN_EVENT_TYPE, mutated("order", _set(["event_type"], "Order"))),
    (R.UNKNOWN_EVENT_TYPE, mutated("order", _set(["event_type"], "payment"))),
    (R.MISSING_FIELD, mutated("order", _delete(["customer_id"]))),
    (R.MISSING_FIELD, mutated("order", lambda e: e["items"][1].pop("price"))),
    (R.MISSING_FIELD, mutated("user_activity", _delete(["metadata", "session_id"]))),
    (R.NULL_FIELD, mutated("inventory", _set(["warehouse_id"], None))),
    (R.UNEXPECTED_FIELD, mutated("inventory", _set(["note"], "manual fix"))),
    (R.UNEXPECTED_FIELD, mutated("order", _set(["shipping_address", "zip"], "12345"))),
    (R.WRONG_TYPE, mutated("inventory", _set(["quantity_change"], "5"))),
    (R.WRONG_TYPE, mutated("inventory", _set(["quantity_change"], 5.0))),
    (R.WRONG_TYPE, mutated("order", _set(["total_amount"], "37.10"))),
    (R.WRONG_TYPE, mutated("order", _set(["total_amount"], True))),
    (R.WRONG_TYPE, mutated("order", _set(["items"], {"product_id": UUID}))),
    (R.WRONG_TYPE, mutated("order", _set(["shipping_address"], "1 Main St, Springfield"))),
    (
        R.WRONG_TYPE,
        mutated(
            "order",
            _set(
                ["order_date"],
                1738,
            ),
        ),
    ),
    (R.BLANK_STRING, mutated("order", _set(["shipping_address", "city"], "  "))),
    (R.BAD_ENUM, mutated("order", _set(["status"], "PENDING"))),
    (R.BAD_ENUM, mutated("user_activity", _set(["metadata", "platform"], "desktop"))),
    (R.BAD_UUID, mutated("order", _set(["order_id"], "12345"))),
    (R.BAD_UUID, mutated("order", lambda e: e["items"][0].update(product_id=UUID.replace("-", "")))),
    (R.BAD_TIMESTAMP, mutated("inventory", _set(["timestamp"], "2025-02-08 13:09:01"))),
    (R.BAD_TIMESTAMP, mutated("inventory", _set(["timestamp"], "2025-02-08T13:09:01"))),
    (R.BAD_TIMESTAMP, mutated("inventory", _set(["timestamp"], "2025-02-30T13:09:01Z"))),
    (R.BAD_TIMESTAMP, mutated("inventory", _set(["timestamp"], "yesterday"))),
    (R.BAD_IP_ADDRESS, mutated("user_activity", _set(["ip_address"], "300.1.2.3"))),
    (R.OUT_OF_RANGE, mutated("inventory", lambda e: e.update(quantity_change=-101))),
    (R.OUT_OF_RANGE, mutated("inventory", lambda e: e.update(quantity_change=150, reason="restock"))),
    (R.OUT_OF_RANGE, mutated("order", lambda e: e["items"][0].update(quantity=0))),
    (R.NEGATIVE_VALUE, mutated("order", lambda e: e["items"][0].update(price=-3.55))),
    (R.NEGATIVE_VALUE, mutated("order", lambda e: e["items"][0].update(quantity=-2))),
    (R.NEGATIVE_VALUE, mutated("order", _set(["total_amount"], -37.1))),
    (R.EMPTY_ITEMS, mutated("order", _set(["items"], []))),
    (R.TOTAL_MISMATCH, mutated("order", _set(["total_amount"], 37.0))),
    (R.SIGN_MISMATCH, mutated("inventory", _set(["quantity_change"], 4))),
    (R.SIGN_MISMATCH, mutated("inventory", lambda e: e.update(reason="restock", quantity_change=-3))),
    (R.SIGN_MISMATCH, mutated("inventory", _set(["quantity_change"], 0))),
    (R.BAD_TIMESTAMP, mutated("inventory", _set(["timestamp"], "0001-01-01T00:00:00+05:00"))),
    (R.BAD_TIMESTAMP, mutated("inventory", _set(["timestamp"], "9999-12-31T23:59:59-05:00"))),
    (R.BAD_TIMESTAMP, mutated("inventory", _set(["timestamp"], "2025-02-08T13:09:01+0000"))),
    (R.OUT_OF_RANGE, mutated("order", lambda e: e["items"][0].update(quantity=2**63))),
    (
        R.OUT_OF_RANGE,
        encode(SAMPLE_EVENTS["inventory"]).replace(b'"quantity_change":-4', b'"quantity_change":-1' + b"0" * 22),
    ),
]


@pytest.mark.parametrize(("reason", "payload"), CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(CASES)])
def test_each_fault_gets_its_reason_code_and_a_detail(reason, payload):
    result = validate(payload)
    assert isinstance(result, Rejected), result
    assert result.reason == reason, result.detail
    assert result.detail and len(result.detail) < 300


def test_every_payload_reason_is_exercised_by_a_case():
    assert {reason for reason, _ in CASES} == set(R.PAYLOAD_REASONS)


def test_detail_names_the_field_path():
    result = validate(mutated("order", lambda e: e["items"][1].update(price="ten")))
    assert result.reason == R.WRONG_TYPE
    assert "items[1].price" in result.detail


def test_total_allows_float_rounding_to_cents():
    def three_thirds(e):
        e["items"] = [{"product_id": UUID, "product_name": "A", "quantity": 3, "price": 0.1}]
        e["total_amount"] = 0.3

    assert isinstance(validate(mutated("order", three_thirds)), Accepted)


def test_no_input_raises():
    """Totality: random bytes, random JSON and mutated events all come back as a result, never an exception."""
    rng = random.Random(7)
    base = [encode(e) for e in SAMPLE_EVENTS.values()]
    for _ in range(3000):
        choice = rng.random()
        if choice < 0.3:
            payload = rng.randbytes(rng.randint(0, 64))
        elif choice < 0.7:
            payload = bytearray(rng.choice(base))
            for _ in range(rng.randint(1, 4)):
                payload[rng.randrange(len(payload))] = rng.randrange(256)
            payload = bytes(payload)
        else:
            payload = rng.choice(base)[: rng.randint(0, 200)]
        result = validate(payload)
        assert isinstance(result, Accepted | Rejected)
        if isinstance(result, Rejected):
            assert result.reason in R.REASONS


def test_deeply_nested_json_is_rejected_not_crashing():
    payload = b"[" * 100_000 + b"]" * 100_000
    assert isinstance(validate(payload), Rejected)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2025-02-08T13:09:01Z", True),
        ("2025-02-08T13:09:01.123456Z", True),
        ("2025-02-08T13:09:01-05:00", True),
        ("2025-02-08T13:09:01.123456789Z", True),
        ("2025-02-08t13:09:01.5z", True),
        ("2025-02-08T13:09:01.1234567891Z", False),
        ("2025-02-08", False),
        ("20250208T130901Z", False),
        ("2025-13-08T13:09:01Z", False),
    ],
)
def test_parse_timestamp(text, ok):
    assert (parse_timestamp(text) is not None) is ok
