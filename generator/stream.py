"""The event stream: configuration in, an endless sequence of messages ready to publish out.

    >>> stream = EventStream(GeneratorConfig(seed=7, malformed_rate=0.05), run_id="run-1")
    >>> batch = stream.take(1000)
    >>> batch[0].data, batch[0].attributes  # doctest: +SKIP
    (b'{"event_type":"user_activity",...}', {'event_id': '...', 'run_id': 'run-1', 'schema_version': '1', ...})

Each message is one of:
- a valid event: `data` is exactly the event JSON of the assessment's schema (orjson), `expected` its type;
- a duplicate: an earlier valid message sent again, same bytes and same event_id (`duplicate=True`);
- a malformed message: bytes from the catalogue in generator/malformed.py, `expected` "dead_letter" and
  `reason` the code the validator must return. The classification lives only in this object (for the run
  manifest), never in `data` or `attributes`.

Worker i of n draws from its own random substream (same universe, disjoint event ids), so a multi-process
publisher stays deterministic for a given seed. The clock is injectable for deterministic tests.

Content and identity come from two substreams. The seed fixes the content (which events, in which order, which
malformed kinds); the event ids are drawn from a substream of the seed *and* the run's id namespace, which is the
run id itself unless the run replays another (GeneratorConfig.ids_of). So the same seed run twice makes the same
events under new ids, which a pipeline that deduplicates by event id (rightly) treats as new; only an explicit
replay (`workbench publish --replay RUN_ID`) sends the earlier run's ids again.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson

from eventmodel.canonical import canonical_digest
from eventmodel.resources import ATTR_EVENT_ID, ATTR_EVENT_TYPE, ATTR_RUN_ID, ATTR_SCHEMA_VERSION
from eventmodel.schema import (
    EVENT_TIME_FIELD,
    EVENT_TYPES,
    INVENTORY,
    MAX_PAYLOAD_BYTES,
    ORDER,
    SCHEMA_VERSION,
    USER_ACTIVITY,
)
from generator.bulk import BULK_MIN_BYTES, bulk_lines, grow_order
from generator.factories import InventoryFeed, OrderBook, SessionPool
from generator.ids import TimestampFormatter, uuid4_str
from generator.malformed import CATALOGUE, MalformedKind
from generator.timeline import Timeline
from generator.universe import build_universe

DEAD_LETTER = "dead_letter"  # OutgoingMessage.expected of a malformed message
DUPLICATE_WINDOW = 512  # a duplicate re-sends one of the last this-many valid messages: "a little later"
# Bulk order sizes when GeneratorConfig.large_sizes is empty: half the limit, 90 %, one byte under, the limit itself.
DEFAULT_LARGE_SIZES = (MAX_PAYLOAD_BYTES // 2, MAX_PAYLOAD_BYTES * 9 // 10, MAX_PAYLOAD_BYTES - 1, MAX_PAYLOAD_BYTES)
MALFORMED_ORDERS = ("random", "cycle")


def _default_type_weights() -> dict[str, float]:
    return {ORDER: 0.3, INVENTORY: 0.3, USER_ACTIVITY: 0.4}


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int = 0
    malformed_rate: float = 0.0  # share of messages that are malformed, 0..1
    malformed_weights: Mapping[str, float] | None = None  # per catalogue kind name; None = equal weights
    type_weights: Mapping[str, float] = field(default_factory=_default_type_weights)
    duplicate_rate: float = 0.0  # share of messages that re-send an earlier valid event exactly
    late_rate: float = 0.0  # share of events lagging now by 0.1-1 x max_lateness_s
    max_lateness_s: float = 600.0
    out_of_order_rate: float = 0.0  # share of events a few seconds earlier than those sent before them
    history: tuple[datetime, datetime] | None = None  # timestamps spread over [start, end) instead of now
    # Whose event ids to draw: None, the run's own (new ids every run); a run id, that run's ids again (a replay).
    ids_of: str | None = None
    # The entity universe (built once per seed) and the concurrency of the simulated shop.
    customers: int = 2_000
    products: int = 500
    warehouses: int = 12
    users: int = 3_000
    open_orders: int = 200
    open_sessions: int = 100
    # Knobs of the `workbench check` scenarios; the defaults leave the stream as it always was.
    # Late episodes lag by one of these (seconds, + up to 1 s of jitter) instead of 0.1-1 x max_lateness_s.
    late_lags_s: tuple[float, ...] = ()
    # "random": kinds drawn by weight; "cycle": taken in turn (sorted by name, weight > 0), each as often as the next.
    malformed_order: str = "random"
    # Share of valid order events sent as bulk orders of exactly the next of large_sizes bytes (in turn).
    large_rate: float = 0.0
    large_sizes: tuple[int, ...] = ()  # empty: DEFAULT_LARGE_SIZES

    def __post_init__(self) -> None:
        # A list (JSON, a caller's literal) is kept as a tuple: the config stays hashable and equal to its round trip.
        for name in ("late_lags_s", "large_sizes"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def validate(self) -> None:
        """Raise ValueError naming the fix for the first bad value."""
        if type(self.seed) is not int:
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        for name in ("malformed_rate", "duplicate_rate", "late_rate", "out_of_order_rate", "large_rate"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a share between 0 and 1 (e.g. 0.05 for 5%), got {value!r}")
        if self.malformed_rate + self.duplicate_rate > 1.0:
            raise ValueError(
                f"malformed_rate + duplicate_rate must not exceed 1, got {self.malformed_rate} + "
                f"{self.duplicate_rate}: lower one of them"
            )
        if self.late_rate + self.out_of_order_rate > 1.0:
            raise ValueError(
                f"late_rate + out_of_order_rate must not exceed 1, got {self.late_rate} + "
                f"{self.out_of_order_rate}: lower one of them"
            )
        if not isinstance(self.max_lateness_s, int | float) or not self.max_lateness_s > 0:
            raise ValueError(f"max_lateness_s must be a positive number of seconds, got {self.max_lateness_s!r}")
        _check_weights("type_weights", self.type_weights, EVENT_TYPES)
        if self.malformed_weights is not None:
            _check_weights("malformed_weights", self.malformed_weights, tuple(CATALOGUE))
        if self.history is not None:
            if len(self.history) != 2 or not all(isinstance(t, datetime) for t in self.history):
                raise ValueError("history must be a pair of datetimes (start, end)")
            start, end = self.history
            if start.tzinfo is None or end.tzinfo is None:
                raise ValueError("history datetimes must be timezone-aware: use datetime(..., tzinfo=UTC)")
            if not start < end:
                raise ValueError(f"history start {start.isoformat()} must be before end {end.isoformat()}")
        if self.ids_of is not None and (type(self.ids_of) is not str or not self.ids_of):
            raise ValueError(f"ids_of must be a run id, got {self.ids_of!r}")
        for name in ("customers", "products", "warehouses", "users", "open_orders", "open_sessions"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.products < max(OrderBook.LINE_COUNTS):
            raise ValueError(f"products must be at least {max(OrderBook.LINE_COUNTS)} (the largest order's lines)")
        self._validate_scenario_knobs()

    def _validate_scenario_knobs(self) -> None:
        lags = self.late_lags_s
        if not isinstance(lags, tuple) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in lags
        ):
            raise ValueError(f"late_lags_s must be positive numbers of seconds, e.g. (90, 7200, 93600), got {lags!r}")
        if self.malformed_order not in MALFORMED_ORDERS:
            raise ValueError(
                f"malformed_order must be one of {', '.join(MALFORMED_ORDERS)}, got {self.malformed_order!r}"
            )
        sizes = self.large_sizes
        if not isinstance(sizes, tuple) or not all(type(v) is int for v in sizes):
            raise ValueError(f"large_sizes must be whole numbers of bytes, e.g. (500000, 1000000), got {sizes!r}")
        for size in sizes:
            if size > MAX_PAYLOAD_BYTES:
                raise ValueError(
                    f"large_sizes: {size} is past the payload limit ({MAX_PAYLOAD_BYTES} bytes), so not a valid event: "
                    "send it as the malformed kind oversize_event instead"
                )
            if size < BULK_MIN_BYTES:
                raise ValueError(f"large_sizes: {size} is below {BULK_MIN_BYTES} bytes, the smallest bulk order")
        if self.large_rate > 0 and not self.type_weights.get(ORDER, 0) > 0:
            raise ValueError("large_rate applies to order events: give order a type weight above 0, or set it to 0")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, for run manifests."""
        data = asdict(self)
        data["type_weights"] = dict(self.type_weights)
        if self.malformed_weights is not None:
            data["malformed_weights"] = dict(self.malformed_weights)
        if self.history is not None:
            data["history"] = [t.isoformat() for t in self.history]
        data["late_lags_s"] = list(self.late_lags_s)
        data["large_sizes"] = list(self.large_sizes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GeneratorConfig:
        """The inverse of as_dict (a run manifest's "generator"); keys this version does not know are ignored."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("history") is not None:
            values["history"] = tuple(datetime.fromisoformat(t) for t in values["history"])
        for name in ("late_lags_s", "large_sizes"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)


def parse_malformed_weights(text: str | None) -> dict[str, float] | None:
    """KIND=WEIGHT[,KIND=WEIGHT...] as users write it (a bare KIND weighs 1); None for empty text; a ValueError
    names the fix for a pair that does not parse. `publish` and `loadtest` both read --malformed-kinds through
    this; the kinds and weights themselves are checked by GeneratorConfig.validate."""
    if not text:
        return None
    weights = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        try:
            weights[name.strip()] = float(weight) if sep else 1.0
        except ValueError:
            raise ValueError(f"{part!r}: write KIND=WEIGHT pairs, e.g. legacy_id=2,python_repr=1") from None
    return weights


def _check_weights(name: str, weights: Mapping[str, float], known: tuple[str, ...]) -> None:
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise ValueError(f"{name}: unknown name(s) {', '.join(unknown)}; known: {', '.join(known)}")
    bad = {k: v for k, v in weights.items() if not isinstance(v, int | float) or v < 0}
    if bad:
        raise ValueError(f"{name}: weights must be numbers >= 0, got {bad}")
    if not sum(weights.values()) > 0:
        raise ValueError(f"{name}: at least one weight must be positive")


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    data: bytes  # the payload, exactly the event JSON (orjson) or the malformed bytes
    attributes: dict[str, str]  # event_id, run_id, schema_version; event_type when the producer claims one
    event_id: str  # uuid; a duplicate carries the same event_id as its original
    expected: str  # where it must end: an event type name (valid) or "dead_letter"
    reason: str | None  # the reason code the validator must give (dead_letter only)
    kind: str | None  # malformed catalogue kind name (dead_letter only)
    event_type: str  # the true type of the underlying event
    event_time: str | None  # the event's own timestamp string (valid events), for GCS minute folders
    duplicate: bool  # True for a re-send of an earlier event_id
    canonical_digest: str | None = None  # eventmodel.canonical digest of the event (valid events only)
    scenario: str = ""  # the `workbench check` scenario that made it ("" outside one), for the run manifest


class _WeightedChoice:
    """rng-driven choice by weight with one random() and a bisect: random.choices costs ~5x more.

    The names are taken in sorted order, so the same weights choose the same way however the mapping is ordered
    (a manifest stores them with sorted keys, and a replay reads them back from there)."""

    __slots__ = ("_cum", "_items", "_total")

    def __init__(self, weights: Mapping[str, float]) -> None:
        self._items = tuple(sorted(k for k, w in weights.items() if w > 0))
        self._cum = []
        total = 0.0
        for k in self._items:
            total += weights[k]
            self._cum.append(total)
        self._total = total

    def __call__(self, rng: random.Random) -> str:
        return self._items[min(bisect.bisect_right(self._cum, rng.random() * self._total), len(self._items) - 1)]


class EventStream:
    def __init__(
        self,
        config: GeneratorConfig,
        run_id: str,
        worker: int = 0,
        workers: int = 1,
        clock: Callable[[], float] = time.time,
        scenario: str = "",
    ) -> None:
        config.validate()
        if not 0 <= worker < workers:
            raise ValueError(f"worker must be in 0..{workers - 1} for {workers} workers, got {worker}")
        self.config = config
        self.run_id = run_id
        self.scenario = scenario
        self.universe = build_universe(config.seed, config.customers, config.products, config.warehouses, config.users)
        # A substream per worker: the string seed is hashed with SHA-512, stable across processes and runs.
        rng = self._rng = random.Random(f"events:{config.seed}:worker:{worker}")
        self._ids = random.Random(f"event-ids:{config.seed}:{config.ids_of or run_id}:worker:{worker}")
        timeline = Timeline(
            rng,
            clock,
            config.history,
            config.late_rate,
            config.max_lateness_s,
            config.out_of_order_rate,
            config.late_lags_s,
        )
        fmt = TimestampFormatter()
        feed = InventoryFeed(self.universe, rng, timeline, fmt)
        self._factories = {
            ORDER: OrderBook(self.universe, rng, timeline, fmt, feed, config.open_orders),
            INVENTORY: feed,
            USER_ACTIVITY: SessionPool(self.universe, rng, timeline, fmt, config.open_sessions),
        }
        self._next_of = {t: f.next_event for t, f in self._factories.items()}
        self._pick_type = _WeightedChoice(config.type_weights)
        weights = config.malformed_weights
        self._pick_kind = _WeightedChoice(weights if weights is not None else dict.fromkeys(CATALOGUE, 1.0))
        # "cycle": the kinds _WeightedChoice would draw from (weight > 0, sorted by name), taken in turn.
        self._kind_cycle = self._pick_kind._items if config.malformed_order == "cycle" else ()
        self._kind_at = 0
        self._large = config.large_rate
        self._large_sizes = config.large_sizes or DEFAULT_LARGE_SIZES
        self._large_at = 0
        self._lines = bulk_lines([(p.product_id, p.name, p.price) for p in self.universe.products])
        self._malformed = config.malformed_rate
        self._resend = config.malformed_rate + config.duplicate_rate
        self._kind_types = {name: self._type_chooser(kind) for name, kind in CATALOGUE.items()}
        self._recent: list[OutgoingMessage] = []
        self._recent_at = 0

    def take(self, n: int) -> list[OutgoingMessage]:
        """The next n messages."""
        produce = self._produce
        return [produce() for _ in range(n)]

    def __iter__(self) -> Iterator[OutgoingMessage]:
        produce = self._produce
        while True:
            yield produce()

    def _produce(self) -> OutgoingMessage:
        r = self._rng.random()
        if r < self._resend:
            if r < self._malformed:
                return self._malformed_message()
            if self._recent:
                return self._duplicate()
        return self._valid()

    def _valid(self) -> OutgoingMessage:
        rng = self._rng
        event_type = self._pick_type(rng)
        # Drawn only when bulk orders are asked for, so that every other stream stays byte for byte what it was.
        if event_type == ORDER and self._large and rng.random() < self._large:
            event = self._factories[ORDER].bulk_base()
            data = grow_order(event, self._large_sizes[self._large_at % len(self._large_sizes)], self._lines, rng)
            self._large_at += 1
        else:
            event = self._next_of[event_type]()
            data = orjson.dumps(event)
        event_id = uuid4_str(self._ids)
        message = OutgoingMessage(
            data,
            {
                ATTR_EVENT_ID: event_id,
                ATTR_RUN_ID: self.run_id,
                ATTR_SCHEMA_VERSION: SCHEMA_VERSION,
                ATTR_EVENT_TYPE: event_type,
            },
            event_id,
            event_type,
            None,
            None,
            event_type,
            event[EVENT_TIME_FIELD[event_type]],
            False,
            canonical_digest(event_type, event),
            self.scenario,
        )
        recent = self._recent
        if len(recent) < DUPLICATE_WINDOW:
            recent.append(message)
        else:
            recent[self._recent_at] = message
            self._recent_at = (self._recent_at + 1) % DUPLICATE_WINDOW
        return message

    def _duplicate(self) -> OutgoingMessage:
        original = self._rng.choice(self._recent)
        return OutgoingMessage(
            original.data,
            dict(original.attributes),
            original.event_id,
            original.expected,
            None,
            None,
            original.event_type,
            original.event_time,
            True,
            original.canonical_digest,
            self.scenario,
        )

    def _malformed_message(self) -> OutgoingMessage:
        rng = self._rng
        if self._kind_cycle:
            name = self._kind_cycle[self._kind_at % len(self._kind_cycle)]
            self._kind_at += 1
        else:
            name = self._pick_kind(rng)
        kind: MalformedKind = CATALOGUE[name]
        event_type = self._kind_types[kind.name](rng)
        data = kind.build(rng, self._factories[event_type].sample_event())
        event_id = uuid4_str(self._ids)
        attributes = {ATTR_EVENT_ID: event_id, ATTR_RUN_ID: self.run_id, ATTR_SCHEMA_VERSION: SCHEMA_VERSION}
        if kind.claims_type:
            attributes[ATTR_EVENT_TYPE] = event_type
        return OutgoingMessage(
            data,
            attributes,
            event_id,
            DEAD_LETTER,
            kind.reason,
            kind.name,
            event_type,
            None,
            False,
            None,
            self.scenario,
        )

    def _type_chooser(self, kind: MalformedKind) -> _WeightedChoice:
        """Which type of event a kind corrupts: by type_weights among the types it applies to (all equal when
        type_weights leaves them all out)."""
        weights = self.config.type_weights
        chosen = {t: weights.get(t, 0) for t in kind.event_types if weights.get(t, 0) > 0}
        return _WeightedChoice(chosen or dict.fromkeys(kind.event_types, 1.0))
