"""The standard battery's scenarios: what `workbench check` throws at a pipeline, each named, seeded and tagged.

A check publishes the scenarios chosen, in the order of SCENARIOS, as the phases of ONE run
(publisher.run.Phase): every message carries its scenario in the manifest, so one reconcile judges the run and
the scorecard splits the verdict by scenario. The burst comes last, so that the backlog it leaves cannot slow the
scenarios judged on their latency.

    >>> [s.name for s in select(["late", "steady"])]
    ['steady', 'late']
    >>> phases(BatterySettings(rate=100, duration_s=10), ["burst"])[0].rate
    1000
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from endpoints.errors import FixableError
from eventmodel.schema import MAX_PAYLOAD_BYTES, ORDER
from generator.malformed import CATALOGUE
from generator.stream import GeneratorConfig
from publisher.run import Phase

# Event times 90 s, 7 min, 2 h, 5 h, 26 h, 3 days and 40 days old: each crosses a minute, an hour, a day and (40 days
# back is always in an earlier month) a month boundary, whatever the clock, so folders and partitions are exercised.
LATE_LAGS_S = (90.0, 420.0, 7_200.0, 18_000.0, 93_600.0, 259_200.0, 3_456_000.0)
BURST_FACTOR = 10  # the burst's rate, as a multiple of the steady rate
OVERSIZE_RATE = 20.0  # messages/s: each near-limit payload is about 1 MB


@dataclass(frozen=True)
class BatterySettings:
    rate: float = 500.0  # the steady rate (messages/s); the burst is BURST_FACTOR times it
    duration_s: float = 60.0  # how long the steady scenario publishes
    burst_s: float = 10.0  # how long the burst lasts
    seed: int = 0  # scenario i is seeded seed * 100 + i: the same seed, the same battery
    repeats: int = 3  # how many times the malformed scenario sends each kind of the catalogue

    def check(self) -> None:
        if not self.rate > 0:
            raise FixableError(f"--rate must be more than 0 messages/s, got {self.rate:g}", "e.g. --rate 500")
        if not self.duration_s > 0:
            raise FixableError(f"--duration must be longer than 0 s, got {self.duration_s:g}", "e.g. --duration 60s")
        if not self.burst_s > 0:
            raise FixableError(f"--burst-for must be longer than 0 s, got {self.burst_s:g}", "e.g. --burst-for 10s")
        if self.repeats < 1:
            raise FixableError(f"--repeats must be at least 1, got {self.repeats}", "e.g. --repeats 3")


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str  # one line, for --help, the scorecard and the reports
    phase: Callable[[BatterySettings, int], Phase]  # (settings, seed) -> what to publish


def _count(s: BatterySettings, seconds: float, least: int) -> int:
    """A scenario's size: `seconds` at the steady rate, at least `least` messages (a slow check still meets each
    case): 2,000 at 500/s for 4 s."""
    return max(least, round(s.rate * seconds))


def _steady(s: BatterySettings, seed: int) -> Phase:
    return Phase("steady", s.rate, None, s.duration_s, GeneratorConfig(seed=seed))


def _malformed(s: BatterySettings, seed: int) -> Phase:
    # Half valid, half malformed, the kinds taken in turn: every kind exactly `repeats` times.
    kinds = len(CATALOGUE) * s.repeats
    config = GeneratorConfig(seed=seed, malformed_rate=0.5, malformed_order="cycle")
    return Phase("malformed", s.rate, 2 * kinds, None, config)


def _duplicates(s: BatterySettings, seed: int) -> Phase:
    # Re-sends of events published a little earlier: the same event_id and bytes, a new Pub/Sub message.
    return Phase("duplicates", s.rate, _count(s, 4.0, 100), None, GeneratorConfig(seed=seed, duplicate_rate=0.2))


def _late(s: BatterySettings, seed: int) -> Phase:
    config = GeneratorConfig(seed=seed, late_rate=1.0, late_lags_s=LATE_LAGS_S)
    return Phase("late", s.rate, _count(s, 1.4, 10 * len(LATE_LAGS_S)), None, config)


def _out_of_order(s: BatterySettings, seed: int) -> Phase:
    # Episodes lagging by 1-5 s: each such event is earlier than events of its type published just before it.
    config = GeneratorConfig(seed=seed, out_of_order_rate=0.5)
    return Phase("out-of-order", s.rate, _count(s, 4.0, 100), None, config)


def _oversize(s: BatterySettings, seed: int) -> Phase:
    # Bulk orders of exactly the limit minus one byte and the limit (accepted), and messages over it (rejected
    # OVERSIZE_PAYLOAD): a single event just past the limit and a producer's whole buffer in one message. Few: an
    # order at the limit has some 14,000 line items, which a design with a row per item writes one by one.
    config = GeneratorConfig(seed=seed, large_rate=1.0, large_sizes=(MAX_PAYLOAD_BYTES - 1, MAX_PAYLOAD_BYTES),
                             type_weights={ORDER: 1.0}, malformed_rate=0.5, malformed_order="cycle",
                             malformed_weights={"oversize_event": 1.0, "oversize_batch": 1.0})  # fmt: skip
    return Phase("oversize", min(s.rate, OVERSIZE_RATE), 4, None, config)


def _burst(s: BatterySettings, seed: int) -> Phase:
    return Phase("burst", s.rate * BURST_FACTOR, None, s.burst_s, GeneratorConfig(seed=seed))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("steady", "the steady rate with realistic order lifecycles, sessions and stock movements", _steady),
    Scenario("malformed", "every kind of the malformed catalogue, several times each, among valid events", _malformed),
    Scenario("duplicates", "republished events: the same event_id and bytes in a new message", _duplicates),
    Scenario("late", "event times minutes, hours and days old, across minute, hour, day and month boundaries", _late),
    Scenario("out-of-order", "events a few seconds older than those of their type sent just before", _out_of_order),
    Scenario("oversize", "payloads at and just below the size limit, and over it", _oversize),
    Scenario("burst", f"{BURST_FACTOR}x the steady rate, after every other scenario", _burst),
)
NAMES = tuple(s.name for s in SCENARIOS)


def select(names: Iterable[str] = ()) -> list[Scenario]:
    """The scenarios named (all when none), in battery order; FixableError names the unknown one and the choices."""
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in NAMES]
    if unknown:
        close = [n for n in NAMES if n.replace("-", "") == unknown[0].replace("-", "").replace("_", "")]
        hint = f"--scenario {close[0]}" if close else f"one of {', '.join(NAMES)}"
        raise FixableError(f"unknown scenario {unknown[0]!r}", f"write {hint} (repeat --scenario to pick several)")
    return [s for s in SCENARIOS if not wanted or s.name in wanted]


def phases(settings: BatterySettings, names: Iterable[str] = ()) -> list[Phase]:
    """The publish phases of the scenarios named (all when none): scenario i of SCENARIOS seeded seed * 100 + i."""
    settings.check()
    chosen = {s.name for s in select(names)}
    return [s.phase(settings, settings.seed * 100 + i) for i, s in enumerate(SCENARIOS) if s.name in chosen]
