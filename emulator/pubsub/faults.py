"""Fault injection: deterministic, seeded decisions about which deliveries, acks and publishes to disturb.

A `FaultConfig` holds the rates; one applies globally and others override it for a single topic or subscription
(publish failures are looked up by topic, the other faults by subscription). Each resource draws from its own
random stream seeded with `f"{seed}:{resource}"`, so a given seed yields the same sequence of decisions for a
subscription whatever other subscriptions do. Every injected fault is counted.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

FAULT_KINDS = ("duplicate", "delay", "publish_failure", "lost_ack")


@dataclass(frozen=True)
class FaultConfig:
    """Rates are probabilities in [0, 1]; delay and jitter are milliseconds added before a message is deliverable."""

    duplicate_rate: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    publish_failure_rate: float = 0.0
    lost_ack_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("duplicate_rate", "publish_failure_rate", "lost_ack_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name in ("delay_ms", "jitter_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: FaultConfig | None = None) -> FaultConfig:
        """Build from a partial dict (unknown keys refused); missing keys keep `base`'s values."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"unknown fault setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        return replace(base or cls(), **{k: float(v) for k, v in values.items()})


def parse_override(text: str) -> tuple[str, dict[str, float]]:
    """Parse a command-line override `RESOURCE,key=value[,key=value...]` (resource ids contain no commas).

    >>> parse_override("projects/p/subscriptions/s,lost_ack_rate=0.1,delay_ms=50")
    ('projects/p/subscriptions/s', {'lost_ack_rate': 0.1, 'delay_ms': 50.0})
    """
    resource, *pairs = text.split(",")
    if not resource.startswith("projects/") or not pairs:
        raise ValueError(
            f"fault override {text!r}: expected RESOURCE,key=value[,key=value...] "
            "with RESOURCE a full topic or subscription name"
        )
    values: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"fault override {text!r}: {pair!r} is not key=value")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"fault override {text!r}: {value!r} is not a number") from None
    FaultConfig.from_dict(values)  # refuse unknown keys and bad ranges now, not at the first message
    return resource, values


class FaultInjector:
    """Thread-safe holder of the fault settings, the seeded random streams and the counters."""

    def __init__(self, seed: int = 0, global_config: FaultConfig | None = None) -> None:
        self.seed = seed
        self._lock = threading.Lock()
        self._global = global_config or FaultConfig()
        self._overrides: dict[str, FaultConfig] = {}
        self._rngs: dict[str, random.Random] = {}
        self.counts: Counter[tuple[str, str]] = Counter()

    # --- configuration -------------------------------------------------------------------------------------
    def configure(self, values: dict[str, Any], resource: str | None = None) -> FaultConfig:
        """Change the global settings (resource None) or one resource's override; returns the new config."""
        with self._lock:
            if resource is None:
                self._global = FaultConfig.from_dict(values, self._global)
                return self._global
            config = FaultConfig.from_dict(values, self._overrides.get(resource, self._global))
            self._overrides[resource] = config
            return config

    def clear(self, resource: str | None = None) -> None:
        """Remove one override, or (resource None) every override and the global settings."""
        with self._lock:
            if resource is None:
                self._global = FaultConfig()
                self._overrides.clear()
            else:
                self._overrides.pop(resource, None)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self.seed = seed
            self._rngs.clear()

    def config_for(self, resource: str) -> FaultConfig:
        return self._overrides.get(resource, self._global)

    @property
    def any_active(self) -> bool:
        """Cheap check for the hot path: is any fault configured anywhere?"""
        return self._global.active or any(c.active for c in self._overrides.values())

    # --- decisions -----------------------------------------------------------------------------------------
    def _rng(self, resource: str) -> random.Random:
        rng = self._rngs.get(resource)
        if rng is None:
            rng = self._rngs[resource] = random.Random(f"{self.seed}:{resource}")
        return rng

    def _roll(self, kind: str, resource: str, rate: float) -> bool:
        if rate <= 0.0:
            return False
        with self._lock:
            hit = self._rng(resource).random() < rate
            if hit:
                self.counts[(kind, resource)] += 1
        return hit

    def fail_publish(self, topic: str) -> bool:
        return self._roll("publish_failure", topic, self.config_for(topic).publish_failure_rate)

    def duplicate(self, subscription: str) -> bool:
        return self._roll("duplicate", subscription, self.config_for(subscription).duplicate_rate)

    def lose_ack(self, subscription: str) -> bool:
        return self._roll("lost_ack", subscription, self.config_for(subscription).lost_ack_rate)

    def delay_seconds(self, subscription: str) -> float:
        """Extra time before a newly published message becomes deliverable on this subscription (0 if none)."""
        config = self.config_for(subscription)
        if not config.delay_ms and not config.jitter_ms:
            return 0.0
        with self._lock:
            jitter = self._rng(subscription).uniform(0.0, config.jitter_ms) if config.jitter_ms else 0.0
            self.counts[("delay", subscription)] += 1
        return (config.delay_ms + jitter) / 1000.0

    # --- reporting -----------------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """Settings and counters as plain data (what the admin call returns)."""
        with self._lock:
            totals = Counter()
            by_resource: dict[str, dict[str, int]] = {}
            for (kind, resource), n in self.counts.items():
                totals[kind] += n
                by_resource.setdefault(resource, {})[kind] = n
            return {
                "seed": self.seed,
                "global": asdict(self._global),
                "overrides": {name: asdict(c) for name, c in self._overrides.items()},
                "counts": {kind: totals.get(kind, 0) for kind in FAULT_KINDS},
                "counts_by_resource": by_resource,
            }
