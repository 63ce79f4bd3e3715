"""Where the store reads the time, so that tests move it by hand instead of sleeping.

Store(clock=Clock(monotonic=fake.monotonic, wall=fake.wall))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """`monotonic` (seconds) times leases, which a change of the system clock must not end early or late; `wall`
    (epoch seconds) is what clients see and send: publish times, seek times, retention, delays and backoffs."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time


SYSTEM_CLOCK = Clock()
