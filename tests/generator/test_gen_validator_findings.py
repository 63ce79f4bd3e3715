"""Producer mistakes the validator (eventmodel/validate.py, not ours to edit) classifies wrongly today.

Reported to the event-model owner; marked xfail so the suite stays green and the day they are fixed shows
up as XPASS. They are deliberately not in the malformed catalogue: the catalogue only holds kinds whose
code the validator gets right.
"""

from __future__ import annotations

import orjson
import pytest
from gen_support import stream

from eventmodel.validate import validate


@pytest.fixture(scope="module")
def factories():
    return stream(seed=31)._factories


@pytest.mark.xfail(reason="parse_timestamp lets OverflowError escape: PROCESSING_ERROR instead of BAD_TIMESTAMP")
@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_timestamp_at_the_edge_of_the_calendar_is_a_bad_timestamp(factories, text):
    event = factories["inventory"].sample_event()
    event["timestamp"] = text
    assert validate(orjson.dumps(event)).reason == "BAD_TIMESTAMP"


@pytest.mark.xfail(reason="integers have no INT64 bound: 2**63 passes the validator and fails the BigQuery insert")
def test_quantity_beyond_int64_is_out_of_range(factories):
    event = factories["order"].sample_event()
    item = event["items"][0]
    item["quantity"] = 2**63
    event["items"] = [item]
    event["total_amount"] = round(item["quantity"] * item["price"], 2)
    assert validate(orjson.dumps(event)).reason == "OUT_OF_RANGE"
