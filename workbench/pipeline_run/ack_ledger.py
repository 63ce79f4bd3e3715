"""The local run's at-least-once bookkeeping: a message is acknowledged only once every sink has committed it.

Used by the DirectRunner's reader (workbench.pipeline_run.direct_runner); never on Dataflow, whose runner acks
after its own commit.
The reader calls `received` for each pull; the sinks, through pipeline.delivery, `hold` extra copies and `release`
what they committed. A message whose count reaches zero is acknowledged (batched, from one background thread);
until then its lease is extended, so Pub/Sub does not redeliver what is still being worked on. `room()` is the
reader's flow control: it pulls only while fewer than `max_messages` (and `max_bytes`) are outstanding, so the
backlog waits in Pub/Sub and the pipeline's memory stays flat.

If the process dies, nothing it had not acknowledged is lost: Pub/Sub redelivers it once its lease runs out
(at most the subscription's ack deadline later). What was written but not yet acknowledged is then written again; every
sink names its writes so that nothing is overwritten (see docs/pipeline.md, "Delivery guarantees").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from workbench.pipeline_run.source_health import SourceHealth

_LOG = logging.getLogger(__name__)

ACK_BATCH = 1000  # ack ids per acknowledge / modify_ack_deadline request (well inside Pub/Sub's 512 KB limit)
ACK_INTERVAL_S = 0.1  # how often committed messages are acknowledged
EXTEND_MARGIN_S = 5.0  # a pending message's lease is extended this long before it would run out (at most half)


@dataclass
class _Entry:
    count: int
    size: int
    ack_ids: list[str]
    lease_until: float


@dataclass
class LedgerStats:
    received: int = 0
    acked: int = 0  # ack ids sent (a redelivered message has several)
    outstanding: int = 0
    outstanding_bytes: int = 0
    extended: int = 0
    ack_errors: int = 0
    troubles: dict[str, str] = field(default_factory=dict)  # sink -> what is failing now


class AckLedger:
    """Counts per message id (pipeline.delivery's Listener) and acks/extends through `acknowledge`/`extend`."""

    def __init__(
        self,
        acknowledge: Callable[[list[str]], None],
        extend: Callable[[list[str], int], None],
        ack_deadline_seconds: float = 10.0,
        max_messages: int = 20_000,
        max_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
        source: SourceHealth | None = None,
    ) -> None:
        self._acknowledge = acknowledge
        self._extend = extend
        self.ack_deadline_seconds = ack_deadline_seconds
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._clock = clock
        # Every ack and extension tells whether Pub/Sub answers (the run ends after a long outage: run.py).
        self.source = source or SourceHealth(clock)
        self._entries: dict[str, _Entry] = {}
        self._bytes = 0
        self._to_ack: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = LedgerStats()

    # ------------------------------------------------------------------------------------- reader side

    def received(self, messages: Iterable[tuple[str, str, int]]) -> None:
        """(message id, ack id, size) of each pulled message: each now waits for its sinks."""
        lease_until = self._clock() + self.ack_deadline_seconds
        with self._lock:
            entries = self._entries
            for message_id, ack_id, size in messages:
                self.stats.received += 1
                entry = entries.get(message_id)
                if entry is None:
                    entries[message_id] = _Entry(1, size, [ack_id], lease_until)
                    self._bytes += size
                else:  # a redelivery of a message still being worked on: one more copy to finish
                    entry.count += 1
                    entry.ack_ids.append(ack_id)
                    entry.lease_until = min(entry.lease_until, lease_until)

    def room(self) -> bool:
        """Whether the reader may pull more (flow control)."""
        return len(self._entries) < self.max_messages and self._bytes < self.max_bytes

    def outstanding(self) -> int:
        return len(self._entries)

    # --------------------------------------------------------------------------------- sink side (delivery)

    def hold(self, message_id: str, copies: int) -> None:
        with self._lock:
            entry = self._entries.get(message_id)
            if entry is not None:
                entry.count += copies

    def release(self, message_ids: Iterable[str]) -> None:
        done = 0
        with self._lock:
            entries = self._entries
            for message_id in message_ids:
                entry = entries.get(message_id)
                if entry is None:  # not read by this process (tests' hand-built input) or already finished
                    continue
                entry.count -= 1
                if entry.count <= 0:
                    del entries[message_id]
                    self._bytes -= entry.size
                    self._to_ack.extend(entry.ack_ids)
                    done += 1
            waiting = len(self._to_ack)
        if done and waiting >= ACK_BATCH:
            self._wake.set()

    def trouble(self, sink: str, detail: str | None) -> None:
        with self._lock:
            if detail is None:
                self.stats.troubles.pop(sink, None)
            else:
                self.stats.troubles[sink] = detail

    # ------------------------------------------------------------------------------------------ acking

    def start(self) -> AckLedger:
        self._thread = threading.Thread(target=self._loop, name="ack-ledger", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> int:
        """Stop the thread after a last ack of everything committed; returns how many messages stay unacked."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = self._clock() + timeout
        while self._to_ack and self._clock() < deadline:
            if not self._flush_acks():
                time.sleep(0.2)
        return len(self._entries) + len(self._to_ack)

    def snapshot(self) -> LedgerStats:
        with self._lock:
            stats = LedgerStats(**{**self.stats.__dict__, "troubles": dict(self.stats.troubles)})
        stats.outstanding = len(self._entries)
        stats.outstanding_bytes = self._bytes
        return stats

    def _loop(self) -> None:
        extended_at = 0.0
        while not self._stop.is_set():
            self._wake.wait(ACK_INTERVAL_S)
            self._wake.clear()
            self._flush_acks()
            if self._clock() - extended_at >= 1.0:
                extended_at = self._clock()
                self._extend_leases()

    def _flush_acks(self) -> bool:
        with self._lock:
            batch, self._to_ack = self._to_ack, []
        for start in range(0, len(batch), ACK_BATCH):
            chunk = batch[start : start + ACK_BATCH]
            try:
                self._acknowledge(chunk)
            except Exception as exc:  # Pub/Sub unreachable: keep them and try again (the message may also come back)
                self.stats.ack_errors += 1
                detail = f"{type(exc).__name__}: {exc}"[:200]
                if self.source.failed(detail):  # once per outage: a retry every 0.1 s would flood the terminal
                    _LOG.warning("acknowledge failed (will retry): %s", exc)
                self.trouble("pubsub acks", detail)
                with self._lock:
                    self._to_ack[:0] = batch[start:]
                return False
            self.source.answered()
            with self._lock:
                self.stats.acked += len(chunk)
        if batch:
            self.trouble("pubsub acks", None)
        return True

    def _extend_leases(self) -> None:
        now = self._clock()
        # Extended by the subscription's own deadline: a crashed run's messages come back that soon, not later.
        extend_to = max(10, int(self.ack_deadline_seconds))
        soon = now + min(EXTEND_MARGIN_S, extend_to / 2)
        with self._lock:
            expiring = [e for e in self._entries.values() if e.lease_until <= soon]
            ack_ids = [a for e in expiring for a in e.ack_ids]
            for entry in expiring:
                entry.lease_until = now + extend_to
        for start in range(0, len(ack_ids), ACK_BATCH):
            chunk = ack_ids[start : start + ACK_BATCH]
            try:
                self._extend(chunk, extend_to)
            except Exception as exc:  # Pub/Sub redelivers what it could not extend: a duplicate, never a loss
                self.source.failed(f"{type(exc).__name__}: {exc}"[:200])
                continue
            self.source.answered()
            self.stats.extended += len(chunk)
