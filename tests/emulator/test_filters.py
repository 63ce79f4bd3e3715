"""The filter parser and evaluator (pure): the documented syntax subset, precedence, and refusals."""

from __future__ import annotations

import pytest

from emulator.pubsub.errors import PubSubError
from emulator.pubsub.filters import compile_filter

CASES = [
    ('attributes.kind = "a"', {"kind": "a"}, True),
    ('attributes.kind = "a"', {"kind": "b"}, False),
    ('attributes.kind = "a"', {}, False),
    ('attributes.kind != "a"', {"kind": "b"}, True),
    ('attributes.kind != "a"', {}, True),
    ('attributes.kind != "a"', {"kind": "a"}, False),
    ("attributes:kind", {"kind": ""}, True),
    ("attributes:kind", {"other": "x"}, False),
    ("NOT attributes:kind", {}, True),
    ('hasPrefix(attributes.region, "eu-")', {"region": "eu-west1"}, True),
    ('hasPrefix(attributes.region, "eu-")', {"region": "us-east1"}, False),
    ('hasPrefix(attributes.region, "eu-")', {}, False),
    ('attributes.a = "1" AND attributes.b = "2"', {"a": "1", "b": "2"}, True),
    ('attributes.a = "1" AND attributes.b = "2"', {"a": "1"}, False),
    ('attributes.a = "1" OR attributes.b = "2"', {"b": "2"}, True),
    # AND binds tighter than OR.
    ('attributes.a = "1" OR attributes.b = "2" AND attributes.c = "3"', {"a": "1"}, True),
    ('(attributes.a = "1" OR attributes.b = "2") AND attributes.c = "3"', {"a": "1"}, False),
    ('NOT (attributes.a = "1" OR attributes:b)', {"c": "x"}, True),
    ('NOT (attributes.a = "1" OR attributes:b)', {"b": "x"}, False),
    ('attributes.quote = "say \\"hi\\""', {"quote": 'say "hi"'}, True),
    ('attributes."dotted.key" = "v"', {"dotted.key": "v"}, True),
    ("   ", {"anything": "x"}, True),
]


@pytest.mark.parametrize(("text", "attributes", "expected"), CASES)
def test_filter_evaluates(text, attributes, expected):
    predicate = compile_filter(text)
    assert (predicate is None or predicate(attributes)) is expected


@pytest.mark.parametrize(
    "bad",
    [
        'attributes.kind == "a"',
        "attributes.kind = a",
        'attributes.kind = "a" AND',
        "(attributes:kind",
        'data = "x"',
        "hasPrefix(attributes.kind)",
        'attributes.kind = "a" attributes.b = "c"',
        "attributes:" + "k" * 300,
        'attributes.kind < "a"',
    ],
)
def test_filter_refuses_invalid_syntax(bad):
    with pytest.raises(PubSubError) as raised:
        compile_filter(bad)
    assert raised.value.code.name == "INVALID_ARGUMENT"
