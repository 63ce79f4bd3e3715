"""Rate profiles: how many messages should have been sent t seconds into a run.

Pacing works on the integral, not on per-message sleeps: a worker sends whatever `due(t) - sent` says, so
timer jitter, GC pauses and slow batches are caught up at once and the achieved rate converges on the
target over any window longer than a few ticks. Everything here is pure and unit-tested.

Profiles (the --profile spec; the peak or plateau is always --rate):
    constant                 --rate throughout
    ramp:DURATION[:FROM]     linear from FROM (default 0) to --rate over DURATION, then --rate
    step:N:EVERY             N equal steps up to --rate, each lasting EVERY, then --rate
    spike:PEAK:AT:FOR        --rate, with PEAK msg/s from AT for FOR
Durations: 90, 90s, 5m, 1h, 1m30s.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

PROFILE_HELP = "constant | ramp:DURATION[:FROM] | step:N:EVERY | spike:PEAK:AT:FOR  (e.g. ramp:30s, spike:5000:20s:5s)"


class RateProfile(Protocol):
    def rate(self, t: float) -> float:
        """Target messages per second at t seconds."""
        ...

    def due(self, t: float) -> float:
        """Messages that should have been sent by t seconds: the integral of rate over [0, t]."""
        ...


@dataclass(frozen=True)
class Constant:
    per_second: float

    def rate(self, t: float) -> float:
        return self.per_second

    def due(self, t: float) -> float:
        return self.per_second * max(t, 0.0)


@dataclass(frozen=True)
class Ramp:
    start: float
    end: float
    over: float

    def rate(self, t: float) -> float:
        if t >= self.over:
            return self.end
        return self.start + (self.end - self.start) * max(t, 0.0) / self.over

    def due(self, t: float) -> float:
        t = max(t, 0.0)
        ramp_t = min(t, self.over)
        ramped = (self.start + self.rate(ramp_t)) / 2 * ramp_t  # trapezoid under the ramp
        return ramped + self.end * max(t - self.over, 0.0)


@dataclass(frozen=True)
class Step:
    peak: float
    steps: int
    every: float

    def rate(self, t: float) -> float:
        level = min(math.floor(max(t, 0.0) / self.every) + 1, self.steps)
        return self.peak * level / self.steps

    def due(self, t: float) -> float:
        t = max(t, 0.0)
        full = min(math.floor(t / self.every), self.steps)
        # Levels 1..full have run for `every` seconds each; the current level runs for the remainder.
        done = self.peak / self.steps * self.every * full * (full + 1) / 2
        return done + self.rate(t) * (t - full * self.every)


@dataclass(frozen=True)
class Spike:
    base: float
    peak: float
    at: float
    duration: float

    def rate(self, t: float) -> float:
        return self.peak if self.at <= t < self.at + self.duration else self.base

    def due(self, t: float) -> float:
        t = max(t, 0.0)
        in_spike = min(max(t - self.at, 0.0), self.duration)
        return self.base * (t - in_spike) + self.peak * in_spike


def scaled(profile: RateProfile, factor: float) -> RateProfile:
    """The same shape at `factor` times the rate: each of N workers runs scaled(profile, 1/N)."""
    return _Scaled(profile, factor)


@dataclass(frozen=True)
class _Scaled:
    inner: RateProfile
    factor: float

    def rate(self, t: float) -> float:
        return self.inner.rate(t) * self.factor

    def due(self, t: float) -> float:
        return self.inner.due(t) * self.factor


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(text: str) -> float:
    """'90', '90s', '5m', '1h', '1m30s' -> seconds. ValueError with the accepted forms otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration; write seconds like 90 or 90s, or 5m, 1h, 1m30s")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _positive(value: str, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not number > 0 or math.isinf(number):
        raise ValueError(f"{what} must be greater than 0, got {value!r}")
    return number


def parse_profile(spec: str, rate: float) -> RateProfile:
    """Build a profile from its --profile spec and the --rate. ValueError says what to write instead."""
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"--rate must be greater than 0 messages per second, got {rate:g}")
    name, *args = spec.strip().split(":")
    try:
        if name == "constant" and not args:
            return Constant(rate)
        if name == "ramp" and len(args) in (1, 2):
            start = float(args[1]) if len(args) == 2 else 0.0
            if start < 0:
                raise ValueError("the ramp's FROM rate must be >= 0")
            return Ramp(start, rate, parse_duration(args[0]))
        if name == "step" and len(args) == 2:
            steps = int(_positive(args[0], "the number of steps"))
            return Step(rate, steps, parse_duration(args[1]))
        if name == "spike" and len(args) == 3:
            return Spike(rate, _positive(args[0], "the spike's PEAK"), parse_duration(args[1]), parse_duration(args[2]))
    except ValueError as exc:
        raise ValueError(f"bad --profile {spec!r}: {exc}. Write one of: {PROFILE_HELP}") from None
    known = ("constant", "ramp", "step", "spike")
    if name not in known:
        raise ValueError(f"unknown --profile {name!r}. Write one of: {PROFILE_HELP}")
    raise ValueError(f"--profile {spec!r} has the wrong number of parts. Write one of: {PROFILE_HELP}")
