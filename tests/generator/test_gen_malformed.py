"""The malformed catalogue: every kind is rejected with exactly its code, and every payload code has a kind."""

from __future__ import annotations

import random

import orjson
import pytest
from gen_support import stream

from eventmodel.reasons import PAYLOAD_REASONS
from eventmodel.validate import Rejected, validate
from generator.malformed import CATALOGUE, KINDS, cut_off_write

SAMPLES_PER_KIND = 150


@pytest.fixture(scope="module")
def factories():
    return stream(seed=21)._factories


def test_every_payload_reason_has_a_kind_and_every_kind_one_payload_reason():
    assert {k.reason for k in KINDS} == set(PAYLOAD_REASONS)
    assert len(CATALOGUE) == len(KINDS)  # names are unique


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_kind_is_rejected_with_exactly_its_code(kind, factories):
    for i in range(SAMPLES_PER_KIND):
        rng = random.Random(f"{kind.name}:{i}")
        event_type = kind.event_types[i % len(kind.event_types)]
        data = kind.build(rng, factories[event_type].sample_event())
        assert type(data) is bytes
        result = validate(data)
        assert isinstance(result, Rejected) and result.reason == kind.reason, (kind.name, result, data[:300])


def test_sample_events_are_valid(factories):
    for factory in factories.values():
        for _ in range(300):
            assert validate(orjson.dumps(factory.sample_event())).__class__.__name__ == "Accepted"


def test_cut_off_write_is_truncated_at_every_position(factories):
    # Exhaustively: whatever byte the write stops at, the validator calls it truncated, never NOT_JSON.
    for factory in factories.values():
        event = factory.sample_event()
        data = orjson.dumps(event)
        positions = set()
        for i in range(600):
            cut = cut_off_write(random.Random(i), dict(event))
            positions.add(len(cut))
            assert validate(cut).reason == "TRUNCATED_JSON", cut
        for n in range(1, len(data) - 1):
            piece = data[:n]
            try:
                piece.decode()
            except UnicodeDecodeError:
                continue  # the kind never splits a character
            assert validate(piece).reason == "TRUNCATED_JSON", piece
        assert len(positions) > 50


def test_malformed_messages_keep_their_classification_out_of_the_message():
    messages = stream(seed=5, malformed_rate=1.0).take(6_000)
    allowed = {"event_id", "run_id", "schema_version", "event_type"}
    secrets = set(PAYLOAD_REASONS) | set(CATALOGUE) | {"dead_letter"}
    for m in messages:
        assert m.expected == "dead_letter" and m.kind in CATALOGUE and m.reason == CATALOGUE[m.kind].reason
        assert set(m.attributes) <= allowed
        assert not secrets & set(m.attributes.values())
        if m.kind != "oversize_batch":  # 1 MB of events: searching it is slow and it holds only events
            assert not any(s.encode() in m.data for s in (m.kind, m.reason))
        if CATALOGUE[m.kind].claims_type:
            assert m.attributes["event_type"] == m.event_type
        else:
            assert "event_type" not in m.attributes
        assert m.event_time is None and not m.duplicate
        assert validate(m.data).reason == m.reason


def test_malformed_share_and_kind_weights():
    n = 20_000
    messages = stream(seed=6, malformed_rate=0.1).take(n)
    bad = [m for m in messages if m.expected == "dead_letter"]
    assert len(bad) / n == pytest.approx(0.1, abs=0.01)
    weighted = stream(seed=6, malformed_rate=0.5, malformed_weights={"empty_body": 3, "legacy_id": 1}).take(8_000)
    kinds = [m.kind for m in weighted if m.kind]
    assert set(kinds) == {"empty_body", "legacy_id"}
    assert kinds.count("empty_body") / len(kinds) == pytest.approx(0.75, abs=0.03)


def test_equal_weights_by_default_reach_every_kind():
    kinds = {m.kind for m in stream(seed=7, malformed_rate=1.0).take(3_000)}
    assert kinds == set(CATALOGUE)


def test_kinds_respect_the_type_mix():
    # Kinds that can corrupt an order corrupt orders when only orders are wanted; the others keep their type.
    for m in stream(seed=8, malformed_rate=1.0, type_weights={"order": 1.0}).take(2_000):
        kind = CATALOGUE[m.kind]
        assert m.event_type == "order" if "order" in kind.event_types else m.event_type in kind.event_types


def test_docs_hold_the_catalogue_table():
    from pathlib import Path

    from generator.malformed import markdown_table

    doc = Path(__file__).resolve().parents[2] / "docs" / "generator.md"
    assert markdown_table() in doc.read_text(), "run: python -m generator.malformed, paste into docs/generator.md"
