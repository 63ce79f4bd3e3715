"""Event times for episodes: an order's life, a user session, a single stock movement.

Times are integer epoch milliseconds. An episode keeps its own last time, so every later event of the same
order or session is at least 1 ms after the one before, whatever the mode:
- "now" (default): an event happens at the clock's now (the injectable clock makes tests deterministic);
- history: an episode starts at a uniformly drawn instant of [start, end) and moves on by realistic gaps
  (seconds within a session, hours between order statuses), squeezed so that it never reaches `end`.

Lateness and disorder are decided per episode, when it starts, so they never break an episode's order:
- a late episode lags the clock by between a tenth of max_lateness and max_lateness (a device that was
  offline, an outbox that drained late); its events are late relative to everything around them;
  With explicit late lags (GeneratorConfig.late_lags_s), a late episode lags instead by one of them, chosen by
  the seeded rng, plus up to 1 s of jitter: lags chosen to cross minute, hour, day and month boundaries;
- an out-of-order episode lags by 1-5 s: each of its events is a few seconds earlier than the events of
  the same type published just before it.
In history mode the lag is applied the same way and clamped at `start`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

OUT_OF_ORDER_LAG_MS = (1_000, 5_000)
LATE_MIN_SHARE = 0.1  # a late event lags by at least this share of max_lateness: less is just jitter
LATE_JITTER_MS = 1_000  # added to an explicit late lag, so that events of one lag do not all share one instant


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class Timeline:
    __slots__ = ("_clock", "_end", "_late", "_late_lag", "_late_lags", "_ooo", "_rng", "_start")

    def __init__(
        self,
        rng: random.Random,
        clock: Callable[[], float],
        history: tuple[datetime, datetime] | None = None,
        late_rate: float = 0.0,
        max_lateness_s: float = 600.0,
        out_of_order_rate: float = 0.0,
        late_lags_s: tuple[float, ...] = (),
    ) -> None:
        self._rng = rng
        self._clock = clock
        self._start, self._end = (to_ms(history[0]), to_ms(history[1])) if history else (None, None)
        self._late = late_rate
        self._ooo = late_rate + out_of_order_rate
        max_lag = int(max_lateness_s * 1000)
        self._late_lag = (max(1, int(max_lag * LATE_MIN_SHARE)), max(1, max_lag))
        self._late_lags = tuple(int(lag * 1000) for lag in late_lags_s)

    def lag(self) -> int:
        """The lag of a new episode in ms: 0 for most, late or out-of-order for the configured shares."""
        r = self._rng.random()
        if r >= self._ooo:
            return 0
        if r < self._late and self._late_lags:
            return self._rng.choice(self._late_lags) + self._rng.randint(0, LATE_JITTER_MS)
        low, high = self._late_lag if r < self._late else OUT_OF_ORDER_LAG_MS
        return self._rng.randint(low, high)

    def first(self, lag: int) -> int:
        """The time of an episode's first event."""
        if self._start is None:
            return int(self._clock() * 1000) - lag
        return max(self._start, self._rng.randrange(self._start, self._end) - lag)

    def after(self, last: int, lag: int, gap_ms: int) -> int:
        """The time of an episode's next event: strictly after `last` (history: unless squeezed at the end)."""
        if self._start is None:
            now = int(self._clock() * 1000) - lag
            return now if now > last else last + 1
        room = self._end - 1 - last
        return last + max(0, min(gap_ms, (room + 1) // 2))
