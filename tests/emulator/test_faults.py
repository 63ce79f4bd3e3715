"""Fault decisions (pure): deterministic per seed and resource, overrides, validation, counters."""

from __future__ import annotations

import pytest

from emulator.pubsub.faults import FaultConfig, FaultInjector, parse_override

SUB = "projects/p/subscriptions/s"


def decisions(seed: int, n: int = 200) -> list[bool]:
    injector = FaultInjector(seed, FaultConfig(duplicate_rate=0.3))
    return [injector.duplicate(SUB) for _ in range(n)]


def test_same_seed_same_decisions():
    assert decisions(7) == decisions(7)


def test_different_seed_different_decisions():
    assert decisions(7) != decisions(8)


def test_rate_is_respected_over_many_samples():
    hits = sum(decisions(1, 5000))
    assert 1300 < hits < 1700  # 30 % of 5000 = 1500


def test_resources_draw_independent_streams():
    """One subscription's decisions do not depend on how often another one was asked."""
    alone = FaultInjector(3, FaultConfig(duplicate_rate=0.5))
    busy = FaultInjector(3, FaultConfig(duplicate_rate=0.5))
    for _ in range(100):
        busy.duplicate("projects/p/subscriptions/other")
    assert [alone.duplicate(SUB) for _ in range(50)] == [busy.duplicate(SUB) for _ in range(50)]


def test_zero_rate_never_fires_and_one_always_does():
    injector = FaultInjector(0, FaultConfig(lost_ack_rate=1.0))
    assert all(injector.lose_ack(SUB) for _ in range(100))
    assert not any(injector.duplicate(SUB) for _ in range(100))
    assert not injector.fail_publish("projects/p/topics/t")


def test_override_applies_to_one_resource_only():
    injector = FaultInjector(0)
    injector.configure({"publish_failure_rate": 1.0}, "projects/p/topics/flaky")
    assert injector.fail_publish("projects/p/topics/flaky")
    assert not injector.fail_publish("projects/p/topics/solid")
    injector.clear("projects/p/topics/flaky")
    assert not injector.fail_publish("projects/p/topics/flaky")


def test_delay_is_base_plus_bounded_jitter():
    injector = FaultInjector(5, FaultConfig(delay_ms=100, jitter_ms=50))
    delays = [injector.delay_seconds(SUB) for _ in range(200)]
    assert all(0.1 <= d <= 0.15 for d in delays)
    assert len(set(delays)) > 100


def test_every_fault_is_counted():
    injector = FaultInjector(0, FaultConfig(lost_ack_rate=1.0, delay_ms=10))
    for _ in range(3):
        injector.lose_ack(SUB)
    injector.delay_seconds(SUB)
    report = injector.report()
    assert report["counts"] == {"duplicate": 0, "delay": 1, "publish_failure": 0, "lost_ack": 3}
    assert report["counts_by_resource"][SUB] == {"lost_ack": 3, "delay": 1}


@pytest.mark.parametrize("bad", [{"duplicate_rate": 1.5}, {"lost_ack_rate": -0.1}, {"delay_ms": -1}, {"nonsense": 1}])
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValueError):
        FaultConfig.from_dict(bad)


def test_parse_override():
    assert parse_override("projects/p/topics/t,publish_failure_rate=0.5") == (
        "projects/p/topics/t",
        {"publish_failure_rate": 0.5},
    )
    assert parse_override("projects/p/subscriptions/s,delay_ms=10,jitter_ms=5")[1] == {
        "delay_ms": 10.0,
        "jitter_ms": 5.0,
    }


@pytest.mark.parametrize(
    "bad",
    [
        "lost_ack_rate=0.1",
        "projects/p/subscriptions/s",
        "projects/p/subscriptions/s,lost_ack_rate",
        "projects/p/subscriptions/s,x=1",
        "projects/p/subscriptions/s,lost_ack_rate=high",
        "projects/p/subscriptions/s,lost_ack_rate=2",
    ],
)
def test_parse_override_refuses(bad):
    with pytest.raises(ValueError):
        parse_override(bad)
