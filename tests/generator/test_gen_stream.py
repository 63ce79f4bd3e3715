"""EventStream behaviour: duplicates, determinism, workers, time options, and config validation."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import UTC, datetime

import orjson
import pytest
from gen_support import NOW_MS, SMALL, event_ms, frozen_clock, stream

from generator.stream import DUPLICATE_WINDOW, EventStream, GeneratorConfig


def test_duplicates_resend_an_earlier_event_exactly():
    messages = stream(seed=1, duplicate_rate=0.1, malformed_rate=0.05).take(20_000)
    first_seen = {}
    duplicates = 0
    for position, m in enumerate(messages):
        if m.duplicate:
            duplicates += 1
            original_position, original = first_seen[m.event_id]
            assert (original.data, original.attributes, original.expected) == (m.data, m.attributes, m.expected)
            assert 0 < position - original_position < 2 * DUPLICATE_WINDOW  # "a little later"
            assert m.expected != "dead_letter"
        else:
            assert m.event_id not in first_seen
            first_seen[m.event_id] = (position, m)
    assert duplicates / len(messages) == pytest.approx(0.1, abs=0.01)


def test_same_seed_and_clock_give_identical_bytes():
    config = {"seed": 42, "malformed_rate": 0.1, "duplicate_rate": 0.05, "late_rate": 0.1, "out_of_order_rate": 0.1}
    a = [(m.data, m.attributes, m.kind) for m in stream(**config).take(5_000)]
    b = [(m.data, m.attributes, m.kind) for m in stream(**config).take(5_000)]
    assert a == b
    c = [(m.data, m.attributes, m.kind) for m in stream(**{**config, "seed": 43}).take(5_000)]
    assert a != c


def test_a_new_run_of_the_same_seed_sends_the_same_events_under_new_ids():
    config = {"seed": 42, "malformed_rate": 0.1, "duplicate_rate": 0.05}
    first = stream("run-1", **config).take(5_000)
    second = stream("run-2", **config).take(5_000)
    assert [(m.data, m.kind, m.duplicate) for m in first] == [(m.data, m.kind, m.duplicate) for m in second]
    assert not {m.event_id for m in first} & {m.event_id for m in second}
    assert [m.attributes["run_id"] for m in second[:3]] == ["run-2"] * 3


def test_a_replay_sends_the_earlier_runs_ids_with_the_same_events():
    config = {"seed": 42, "malformed_rate": 0.1, "duplicate_rate": 0.05}
    original = stream("run-1", **config).take(5_000)
    replay = stream("run-3", ids_of="run-1", **config).take(5_000)
    assert [(m.event_id, m.data) for m in replay] == [(m.event_id, m.data) for m in original]
    assert {m.attributes["run_id"] for m in replay} == {"run-3"}  # the replay is its own run
    # A replay of a replay draws the same ids: the namespace is the first run's.
    assert [m.event_id for m in stream("run-4", ids_of="run-1", **config).take(100)] == [
        m.event_id for m in original[:100]
    ]


def test_every_message_carries_the_streams_scenario_tag():
    tagged = EventStream(
        GeneratorConfig(**SMALL, seed=8, malformed_rate=0.2, duplicate_rate=0.2),
        "run-test",
        clock=frozen_clock,
        scenario="burst",
    ).take(2_000)
    assert {m.scenario for m in tagged} == {"burst"}
    assert {("dead_letter" if m.expected == "dead_letter" else "dup" if m.duplicate else "valid") for m in tagged} == {
        "dead_letter",
        "dup",
        "valid",
    }
    assert {m.scenario for m in stream(seed=8, malformed_rate=0.2, duplicate_rate=0.2).take(500)} == {""}
    # The tag is metadata for the manifest only: it changes no byte that is published.
    plain = stream(seed=8, malformed_rate=0.2, duplicate_rate=0.2).take(2_000)
    assert [(m.data, m.attributes) for m in tagged] == [(m.data, m.attributes) for m in plain]


def test_iteration_and_take_agree():
    iterated = stream(seed=9)
    it = iter(iterated)
    assert [next(it).data for _ in range(500)] == [m.data for m in stream(seed=9).take(500)]


def test_workers_draw_disjoint_deterministic_substreams():
    ids = [{m.event_id for m in stream(seed=3, worker=w, workers=3).take(5_000)} for w in range(3)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert ids[1] == {m.event_id for m in stream(seed=3, worker=1, workers=3).take(5_000)}
    with pytest.raises(ValueError, match=r"worker must be in 0\.\.2"):
        stream(worker=3, workers=3)


def test_now_mode_stamps_the_clock():
    for m in stream(seed=2).take(3_000):
        lag = NOW_MS - event_ms(m, orjson.loads(m.data))
        assert -5_000 < lag <= 0  # at now, or a few ms on where a session or order needs strictly later times


def test_real_clock_by_default():
    m = EventStream(GeneratorConfig(**SMALL), "r").take(1)[0]
    now = datetime.now(UTC).timestamp() * 1000
    assert abs(event_ms(m, orjson.loads(m.data)) - now) < 60_000


def test_history_range_is_respected_and_spread():
    start, end = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    messages = stream(seed=4, history=(start, end), late_rate=0.1, out_of_order_rate=0.1).take(10_000)
    times = [event_ms(m, orjson.loads(m.data)) for m in messages if m.expected != "dead_letter"]
    assert all(start_ms <= t < end_ms for t in times)
    hours = {(t - start_ms) // 3_600_000 for t in times}
    assert hours == set(range(24))


def test_late_and_out_of_order_shares():
    n = 30_000
    messages = stream(seed=5, late_rate=0.1, out_of_order_rate=0.05, max_lateness_s=300).take(n)
    lags = [NOW_MS - event_ms(m, orjson.loads(m.data)) for m in messages]
    late = sum(30_000 - 1_000 <= lag <= 300_000 for lag in lags)  # a tenth of max lateness .. max lateness
    disordered = sum(900 <= lag <= 5_000 for lag in lags)  # 1-5 s, less the ms an episode moves on
    on_time = sum(lag <= 0 for lag in lags)
    assert late / n == pytest.approx(0.1, abs=0.03)
    assert disordered / n == pytest.approx(0.05, abs=0.02)
    assert (late + disordered + on_time) / n > 0.995


def test_out_of_order_events_are_earlier_than_the_event_before_them():
    messages = stream(seed=6, out_of_order_rate=0.1, type_weights={"inventory": 1.0}).take(5_000)
    times = [event_ms(m, orjson.loads(m.data)) for m in messages]
    earlier = [b < a for a, b in itertools.pairwise(times)]
    assert sum(earlier) / len(earlier) == pytest.approx(0.1, abs=0.03)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"malformed_rate": 1.5}, "malformed_rate must be a share between 0 and 1"),
        ({"duplicate_rate": -0.1}, "duplicate_rate must be a share between 0 and 1"),
        ({"malformed_rate": 0.7, "duplicate_rate": 0.5}, "malformed_rate \\+ duplicate_rate must not exceed 1"),
        ({"late_rate": 0.6, "out_of_order_rate": 0.6}, "late_rate \\+ out_of_order_rate must not exceed 1"),
        ({"max_lateness_s": 0}, "max_lateness_s must be a positive number"),
        ({"ids_of": ""}, "ids_of must be a run id"),
        ({"type_weights": {"orders": 1}}, "type_weights: unknown name\\(s\\) orders; known: order, inventory"),
        ({"type_weights": {"order": 0}}, "type_weights: at least one weight must be positive"),
        ({"type_weights": {"order": -1}}, "weights must be numbers >= 0"),
        ({"malformed_weights": {"bad_uuid": 1}}, "malformed_weights: unknown name\\(s\\) bad_uuid; known: empty_body"),
        (
            {"history": (datetime(2025, 1, 2), datetime(2025, 1, 3))},
            "timezone-aware: use datetime\\(..., tzinfo=UTC\\)",
        ),
        (
            {"history": (datetime(2025, 1, 2, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))},
            "history start .* must be before end",
        ),
        ({"customers": 0}, "customers must be a whole number of at least 1"),
        ({"seed": "7"}, "seed must be an integer"),
    ],
)
def test_config_validation_names_the_fix(settings, message):
    config = GeneratorConfig(**settings)
    with pytest.raises(ValueError, match=message):
        config.validate()
    with pytest.raises(ValueError, match=message):
        EventStream(config, "r", clock=frozen_clock)


def test_default_config_is_valid_and_serialisable():
    config = GeneratorConfig(history=(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)))
    config.validate()
    data = orjson.loads(orjson.dumps(config.as_dict()))
    assert data["type_weights"] == {"order": 0.3, "inventory": 0.3, "user_activity": 0.4}
    assert data["history"] == ["2025-01-01T00:00:00+00:00", "2025-01-02T00:00:00+00:00"]


def test_same_seed_gives_the_same_bytes_in_every_process():
    # String hashing is randomised per process (PYTHONHASHSEED): nothing may depend on set order.
    script = (
        "import hashlib\n"
        "from generator.stream import EventStream, GeneratorConfig\n"
        "config = GeneratorConfig(seed=5, malformed_rate=0.2, duplicate_rate=0.05, late_rate=0.1)\n"
        "h = hashlib.sha256()\n"
        "for m in EventStream(config, 'r', clock=lambda: 1.7e9).take(5000):\n"
        "    h.update(m.data)\n"
        "print(h.hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in (1, 2)
    }
    assert len(digests) == 1


def test_the_generator_imports_no_beam():
    script = (
        "import sys\n"
        "import generator.stream, generator.malformed, generator.factories, generator.universe\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'apache_beam'))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
