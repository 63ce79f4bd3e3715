"""Whether the local run's Pub/Sub still answers: an outage is ridden out for a grace period, then the run ends.

The reader's pulls and the ack ledger's acks and lease extensions report every call here. Any answer ends an
outage; a failure starts one (or continues it). The stream's launcher (stream_launcher.py) stops the run once an
outage has lasted `--source-retry-seconds`: a restart of the emulator (durable mode) is waited out, an emulator
gone for good ends the run in bounded time instead of retrying forever.

    health = SourceHealth()
    health.failed("ServiceUnavailable: 503 Connection refused")
    if gone(health.down_for(), limit=60): ...
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DEFAULT_SOURCE_RETRY_S = 60.0  # a `workbench down` + `up`, or an emulator's restart, takes well under this


class SourceHealth:
    """The current outage of the source: when it began (None while Pub/Sub answers) and its latest error."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.failing_since: float | None = None
        self.last_error: str | None = None

    def failed(self, detail: str) -> bool:
        """A call failed; True when this failure starts an outage (worth one log line, not one per retry)."""
        with self._lock:
            self.last_error = detail
            if self.failing_since is None:
                self.failing_since = self._clock()
                return True
            return False

    def answered(self) -> None:
        with self._lock:
            self.failing_since = None
            self.last_error = None

    def down_for(self) -> float:
        """Seconds since the current outage began; 0 while Pub/Sub answers."""
        since = self.failing_since
        return 0.0 if since is None else self._clock() - since


def gone(down_for: float, limit: float | None) -> bool:
    """Whether an outage of `down_for` seconds means the source is gone for good (`limit` None: never)."""
    return limit is not None and down_for > 0 and down_for >= limit
