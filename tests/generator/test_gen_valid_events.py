"""Every valid event the stream produces passes the validator and is exactly the assessment's schema."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from gen_support import TIMESTAMP, UUID, schema_errors, stream

from eventmodel.resources import ATTR_EVENT_ID, ATTR_EVENT_TYPE, ATTR_RUN_ID, ATTR_SCHEMA_VERSION
from eventmodel.schema import EVENT_TIME_FIELD, EVENT_TYPES, SCHEMA_VERSION
from eventmodel.validate import Accepted, validate

SEEDS = range(20)


@pytest.mark.parametrize("seed", SEEDS)
def test_valid_events_pass_the_validator_and_match_the_schema(seed):
    messages = stream(seed=seed, duplicate_rate=0.02, late_rate=0.05, out_of_order_rate=0.05).take(2_000)
    types = Counter()
    for m in messages:
        result = validate(m.data)
        assert isinstance(result, Accepted), (result, m.data)
        assert result.event_type == m.expected == m.event_type
        event = orjson.loads(m.data)
        assert schema_errors(m.event_type, event) == []
        assert m.event_time == event[EVENT_TIME_FIELD[m.event_type]]
        assert TIMESTAMP.fullmatch(m.event_time)
        assert m.reason is None and m.kind is None
        types[m.event_type] += 1
    assert set(types) == set(EVENT_TYPES)


def test_attributes_carry_the_envelope_and_the_payload_does_not():
    for m in stream(seed=1).take(3_000):
        assert m.attributes == {
            ATTR_EVENT_ID: m.event_id,
            ATTR_RUN_ID: "run-test",
            ATTR_SCHEMA_VERSION: SCHEMA_VERSION,
            ATTR_EVENT_TYPE: m.event_type,
        }
        assert UUID.fullmatch(m.event_id)
        assert m.event_id.encode() not in m.data


def test_event_ids_are_unique():
    messages = stream(seed=2).take(20_000)
    assert len({m.event_id for m in messages}) == len(messages)


def test_type_mix_follows_the_weights():
    counts = Counter(m.event_type for m in stream(seed=4).take(20_000))
    assert counts["order"] / 20_000 == pytest.approx(0.3, abs=0.02)
    assert counts["inventory"] / 20_000 == pytest.approx(0.3, abs=0.02)
    assert counts["user_activity"] / 20_000 == pytest.approx(0.4, abs=0.02)
    only_orders = stream(seed=4, type_weights={"order": 1.0}).take(500)
    assert {m.event_type for m in only_orders} == {"order"}
