"""Rate-control math: each profile's integral matches its rate, and bad specs say what to write."""

from __future__ import annotations

import itertools

import pytest

from publisher.rate import Constant, Ramp, Spike, Step, parse_duration, parse_profile, scaled


def numeric_integral(profile, t, steps=20_000):
    dt = t / steps
    return sum(profile.rate((i + 0.5) * dt) for i in range(steps)) * dt


PROFILES = [
    Constant(500),
    Ramp(0, 1000, 30),
    Ramp(200, 1000, 10),
    Step(1000, 4, 5),
    Spike(100, 5000, 10, 3),
    scaled(Spike(100, 5000, 10, 3), 0.5),
]


@pytest.mark.parametrize("profile", PROFILES, ids=repr)
@pytest.mark.parametrize("t", [0.5, 5, 10.4, 12.9, 30, 61])
def test_due_is_the_integral_of_rate(profile, t):
    assert profile.due(t) == pytest.approx(numeric_integral(profile, t), rel=2e-3, abs=2)


@pytest.mark.parametrize("profile", PROFILES, ids=repr)
def test_due_never_decreases_and_starts_at_zero(profile):
    values = [profile.due(i / 10) for i in range(0, 700)]
    assert values[0] == 0
    assert all(b >= a for a, b in itertools.pairwise(values))


def test_specs_build_the_profiles():
    assert parse_profile("constant", 500) == Constant(500)
    assert parse_profile("ramp:30s", 1000) == Ramp(0, 1000, 30)
    assert parse_profile("ramp:1m:200", 1000) == Ramp(200, 1000, 60)
    assert parse_profile("step:4:5s", 1000) == Step(1000, 4, 5)
    assert parse_profile("spike:5000:10s:3s", 100) == Spike(100, 5000, 10, 3)


def test_step_levels():
    step = Step(1000, 4, 5)
    assert [step.rate(t) for t in (0, 4.9, 5, 14.9, 15, 100)] == [250, 250, 500, 750, 1000, 1000]


def test_scaling_splits_the_rate_between_workers():
    whole = parse_profile("ramp:10s", 900)
    parts = [scaled(whole, 1 / 3) for _ in range(3)]
    assert sum(p.due(7) for p in parts) == pytest.approx(whole.due(7))


@pytest.mark.parametrize(
    ("spec", "rate", "says"),
    [
        ("constant", 0, "--rate must be greater than 0"),
        ("constant", -5, "--rate must be greater than 0"),
        ("zigzag", 10, "unknown --profile 'zigzag'. Write one of: constant | ramp"),
        ("ramp", 10, "wrong number of parts"),
        ("ramp:soon", 10, "'soon' is not a duration; write seconds like 90"),
        ("step:0:5s", 10, "number of steps must be greater than 0"),
        ("spike:-1:1s:1s", 10, "PEAK must be greater than 0"),
        ("ramp:10s:-5", 10, "FROM rate must be >= 0"),
    ],
)
def test_bad_specs_name_the_fix(spec, rate, says):
    with pytest.raises(ValueError, match=None) as raised:
        parse_profile(spec, rate)
    assert says in str(raised.value)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h", 3600), ("1m30s", 90), ("0.5s", 0.5)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "5 minutes", "-3s", "1d"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
