"""The generator knobs of the `workbench check` scenarios: explicit late lags, malformed kinds in turn, bulk orders of
exact sizes up to the payload limit, and the oversize_event kind past it."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from gen_support import NOW_MS, SMALL, event_ms, frozen_clock, schema_errors, stream

from eventmodel.canonical import canonical_digest
from eventmodel.schema import MAX_PAYLOAD_BYTES
from eventmodel.validate import Accepted, Rejected, validate
from generator.bulk import BULK_MIN_BYTES, grow_order
from generator.malformed import CATALOGUE, OVERSIZE_EVENT_MAX_BYTES
from generator.stream import DEFAULT_LARGE_SIZES, EventStream, GeneratorConfig

# The `late` scenario's lags: 90 s, 7 min, 2 h, 5 h, 26 h, 3 days, 40 days.
LATE_LAGS_S = (90, 420, 7200, 18000, 93600, 259200, 3456000)
MINUTE, HOUR, DAY = 60, 3600, 86400


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# Clocks at awkward places: mid-month, a month's first second, a year's last second, the end of a 28-day month.
CLOCKS = ("2025-02-08T13:09:01.123+00:00", "2025-03-01T00:00:00.500+00:00", "2025-12-31T23:59:59.999+00:00",
          "2026-02-28T23:30:00+00:00")  # fmt: skip


@pytest.mark.parametrize("clock", CLOCKS)
def test_late_lags_occur_each_and_cross_minute_hour_day_and_month(clock):
    now = _at(clock)
    config = GeneratorConfig(**SMALL, seed=3, late_rate=1.0, late_lags_s=LATE_LAGS_S)
    messages = EventStream(config, "r", clock=lambda: now).take(3_000)
    now_dt = datetime.fromtimestamp(now, UTC)
    seen = Counter()
    for m in messages:
        event = orjson.loads(m.data)
        lag_ms = int(now * 1000) - event_ms(m, event)
        # One of the lags, plus up to 1 s of jitter, less the few ms an episode's later events move on.
        lag = next((s for s in LATE_LAGS_S if s * 1000 - 100 <= lag_ms <= s * 1000 + 1_000), None)
        assert lag is not None, f"lag {lag_ms} ms is none of {LATE_LAGS_S} s"
        seen[lag] += 1
        when = datetime.fromtimestamp(event_ms(m, event) / 1000, UTC)
        assert when.replace(second=0, microsecond=0) < now_dt.replace(second=0, microsecond=0)
        if lag >= 2 * HOUR:
            assert when.replace(minute=0, second=0, microsecond=0) < now_dt.replace(minute=0, second=0, microsecond=0)
        if lag >= DAY + 2 * HOUR:
            assert when.date() < now_dt.date()
        if lag >= 40 * DAY:
            assert (when.year, when.month) < (now_dt.year, now_dt.month)
    assert set(seen) == set(LATE_LAGS_S)
    assert min(seen.values()) > 3_000 / len(LATE_LAGS_S) / 2  # chosen evenly by the rng


def test_late_lags_leave_the_other_shares_alone():
    messages = stream(seed=4, late_rate=0.2, out_of_order_rate=0.1, late_lags_s=(7200,)).take(10_000)
    lags = Counter()
    for m in messages:
        lag_ms = NOW_MS - event_ms(m, orjson.loads(m.data))
        lags["late" if lag_ms > 7_199_000 else "disordered" if lag_ms > 900 else "on time"] += 1
    assert lags["late"] / 10_000 == pytest.approx(0.2, abs=0.03)
    assert lags["disordered"] / 10_000 == pytest.approx(0.1, abs=0.03)


@pytest.mark.parametrize(
    ("weights", "kinds"),
    [
        (None, sorted(CATALOGUE)),
        (
            {"legacy_id": 2, "empty_body": 1, "bom_prefix": 0, "nan_literal": 0.5},
            ["empty_body", "legacy_id", "nan_literal"],
        ),
    ],
)
def test_cycle_takes_every_kind_in_turn(weights, kinds):
    n = 3
    config = {"seed": 9, "malformed_rate": 1.0, "malformed_weights": weights, "malformed_order": "cycle"}
    messages = stream(**config).take(n * len(kinds))
    assert [m.kind for m in messages] == kinds * n
    assert Counter(m.kind for m in messages) == dict.fromkeys(kinds, n)
    assert all(validate(m.data).reason == m.reason for m in messages)


def test_cycle_among_valid_messages_still_holds_every_kind_equally():
    messages = stream(seed=10, malformed_rate=0.3, duplicate_rate=0.1, malformed_order="cycle").take(6_000)
    kinds = [m.kind for m in messages if m.kind]
    whole = len(kinds) // len(CATALOGUE) * len(CATALOGUE)
    assert Counter(kinds[:whole]) == dict.fromkeys(CATALOGUE, whole // len(CATALOGUE))


def test_random_order_is_the_default_and_draws_by_weight():
    kinds = [m.kind for m in stream(seed=9, malformed_rate=1.0).take(2 * len(CATALOGUE))]
    assert kinds != sorted(CATALOGUE) * 2


def test_bulk_orders_have_exactly_the_sizes_in_turn_and_are_valid_events():
    sizes = (BULK_MIN_BYTES, 123_457, MAX_PAYLOAD_BYTES - 1, MAX_PAYLOAD_BYTES)
    messages = stream(seed=11, type_weights={"order": 1.0}, large_rate=1.0, large_sizes=sizes).take(8)
    assert [len(m.data) for m in messages] == list(sizes) * 2
    for m in messages:
        result = validate(m.data)
        assert isinstance(result, Accepted), result
        event = orjson.loads(m.data)
        assert not schema_errors("order", event)
        # What the stream records of a valid event, as for any other.
        assert (m.expected, m.event_type, m.reason, m.kind, m.duplicate) == ("order", "order", None, None, False)
        assert m.canonical_digest == canonical_digest("order", event)
        assert m.event_time == event["order_date"]
        assert m.attributes["event_type"] == "order"
    assert len({orjson.loads(m.data)["order_id"] for m in messages}) == len(messages)


def test_bulk_orders_default_to_half_ninety_percent_one_under_and_the_limit():
    assert DEFAULT_LARGE_SIZES == (500_000, 900_000, 999_999, 1_000_000)
    for seed in range(3):
        for universe in (SMALL, {}):  # 60 products, and the default 500
            config = GeneratorConfig(**universe, seed=seed, type_weights={"order": 1.0}, large_rate=1.0)
            messages = EventStream(config, "r", clock=frozen_clock).take(4)
            assert [len(m.data) for m in messages] == list(DEFAULT_LARGE_SIZES)
            # Moderate money: the scenario tests size, not the sinks' NUMERIC range (generator/bulk.py).
            assert max(orjson.loads(m.data)["total_amount"] for m in messages) < 1_000_000


def test_large_rate_is_a_share_of_orders_and_bulk_orders_can_be_resent():
    messages = stream(seed=13, large_rate=0.1, large_sizes=(20_000,), duplicate_rate=0.3).take(3_000)
    orders = [m for m in messages if m.event_type == "order" and not m.duplicate]
    bulk = [m for m in orders if len(m.data) == 20_000]
    assert len(bulk) / len(orders) == pytest.approx(0.1, abs=0.04)
    assert all(len(m.data) < 20_000 for m in messages if m.event_type != "order")
    assert any(m.duplicate and len(m.data) == 20_000 for m in messages)


def test_bulk_orders_are_deterministic_per_seed():
    a = [m.data for m in stream(seed=14, type_weights={"order": 1.0}, large_rate=0.5, large_sizes=(30_000,)).take(40)]
    b = [m.data for m in stream(seed=14, type_weights={"order": 1.0}, large_rate=0.5, large_sizes=(30_000,)).take(40)]
    assert a == b


def test_grow_order_reaches_every_size_it_is_asked_for():
    base = stream(seed=15)._factories["order"].sample_event()
    lines = [(i["product_id"], i["product_name"], i["price"]) for i in base["items"]]
    rng = random.Random(15)
    for size in [BULK_MIN_BYTES, BULK_MIN_BYTES + 1, *rng.sample(range(BULK_MIN_BYTES, 300_000), 25)]:
        data = grow_order(dict(base), size, lines, rng)
        assert len(data) == size
        assert isinstance(validate(data), Accepted)
    with pytest.raises(ValueError, match=f"at least {BULK_MIN_BYTES} bytes"):
        grow_order(dict(base), BULK_MIN_BYTES - 1, lines, rng)


def test_oversize_event_is_one_order_just_past_the_limit_up_to_two_megabytes():
    kind = CATALOGUE["oversize_event"]
    assert (kind.reason, kind.event_types, kind.claims_type) == ("OVERSIZE_PAYLOAD", ("order",), True)
    factory = stream(seed=16)._factories["order"]
    sizes = []
    for i in range(24):
        data = kind.build(random.Random(i), factory.sample_event())
        sizes.append(len(data))
        assert MAX_PAYLOAD_BYTES < len(data) <= OVERSIZE_EVENT_MAX_BYTES
        assert validate(data) == Rejected("OVERSIZE_PAYLOAD", f"{len(data)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
        event = orjson.loads(data)  # an order that is only too large: every other rule holds
        assert not schema_errors("order", event)
    assert MAX_PAYLOAD_BYTES + 1 in sizes
    assert max(sizes) > 1_500_000
    assert sizes == [len(kind.build(random.Random(i), factory.sample_event())) for i in range(24)]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"late_lags_s": (90, 0)}, r"late_lags_s must be positive numbers of seconds, e\.g\. \(90, 7200, 93600\)"),
        ({"late_lags_s": ("90",)}, "late_lags_s must be positive numbers"),
        ({"late_lags_s": (True,)}, "late_lags_s must be positive numbers"),
        ({"malformed_order": "round-robin"}, "malformed_order must be one of random, cycle, got 'round-robin'"),
        ({"large_rate": 1.5}, "large_rate must be a share between 0 and 1"),
        ({"large_sizes": (500_000.0,)}, "large_sizes must be whole numbers of bytes"),
        (
            {"large_sizes": (MAX_PAYLOAD_BYTES + 1,)},
            "past the payload limit .* send it as the malformed kind oversize_event",
        ),
        ({"large_sizes": (BULK_MIN_BYTES - 1,)}, f"below {BULK_MIN_BYTES} bytes, the smallest bulk order"),
        ({"large_rate": 0.1, "type_weights": {"inventory": 1}}, "large_rate applies to order events"),
    ],
)
def test_scenario_knobs_validation_names_the_fix(settings, message):
    config = GeneratorConfig(**settings)
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_scenario_knobs_survive_the_manifest_round_trip():
    config = GeneratorConfig(late_lags_s=LATE_LAGS_S, malformed_order="cycle", large_rate=0.01, large_sizes=(500_000,))
    config.validate()
    data = orjson.loads(orjson.dumps(config.as_dict()))
    assert (data["late_lags_s"], data["malformed_order"], data["large_rate"], data["large_sizes"]) == (
        list(LATE_LAGS_S),
        "cycle",
        0.01,
        [500_000],
    )
    assert GeneratorConfig.from_dict(data) == config
    # A manifest written before the knobs existed reads back as today's behaviour.
    old = {k: v for k, v in data.items() if k not in ("late_lags_s", "malformed_order", "large_rate", "large_sizes")}
    restored = GeneratorConfig.from_dict(old)
    assert (restored.late_lags_s, restored.malformed_order, restored.large_rate, restored.large_sizes) == (
        (),
        "random",
        0.0,
        (),
    )
    assert GeneratorConfig(late_lags_s=[90], large_sizes=[20_000]) == GeneratorConfig(
        late_lags_s=(90,), large_sizes=(20_000,)
    )
