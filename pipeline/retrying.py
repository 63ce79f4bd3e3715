"""How long a sink keeps trying: exponential backoff inside a time budget (a sink outage, not a bad row).

    budget = RetryBudget(seconds=300)
    while True:
        try:
            write()
            break
        except TransientError:
            if not budget.wait():     # slept 0.5 s, 1 s, 2 s ... 10 s; False once 300 s have passed
                dead_letter()
                break

`seconds=None` never runs out: for the last resort (a dead letter that no dead-letter sink took yet), where giving
up would mean dropping the message.

A throttled service (a quota or rate limit, pipeline.bigquery_errors.THROTTLED) is waited for longer: wait(initial=1,
cap=32) sleeps 1 s, 2 s, 4 s ... 32 s, the back-off BigQuery's SLA asks for, within the same budget.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

INITIAL_S = 0.5
CAP_S = 10.0


class RetryBudget:
    def __init__(
        self,
        seconds: float | None,
        initial: float = INITIAL_S,
        cap: float = CAP_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.seconds = seconds
        self.initial = initial
        self.cap = cap
        self._clock = clock
        self._sleep = sleep
        self.started = clock()
        self.retries = 0

    def elapsed(self) -> float:
        return self._clock() - self.started

    def spent(self) -> bool:
        return self.seconds is not None and self.elapsed() >= self.seconds

    def wait(self, initial: float | None = None, cap: float | None = None) -> bool:
        """Sleep before the next attempt and return True, or return False at once when the budget is spent.

        The sleep is exponential with jitter (so that many keys retrying together spread out), never past the
        end of the budget. `initial` and `cap` replace the budget's own for this wait (a longer back-off for a
        throttled service); the exponent is the number of waits so far, whatever their kind."""
        if self.spent():
            return False
        initial = self.initial if initial is None else initial
        cap = self.cap if cap is None else cap
        delay = min(cap, initial * 2**self.retries) * random.uniform(0.75, 1.0)
        if self.seconds is not None:
            delay = min(delay, max(0.0, self.seconds - self.elapsed()))
        self.retries += 1
        self._sleep(delay)
        return True
