"""What the sinks report to whoever runs the pipeline in this process: commits, and trouble with a sink.

At-least-once delivery means a Pub/Sub message is acknowledged only after every sink it goes to has durably
taken it. On Dataflow the runner does that itself (a bundle's acks follow its commit) and nothing is installed
here: every call below is a no-op. The local run (workbench/pipeline_run, DirectRunner) installs a Listener
that keeps one count per message id and acks a message when its count reaches zero:

- the reader counts 1 for each message it pulls;
- a step that turns one element into several copies that each reach a sink of their own holds the extra ones
  (`hold`): an accepted event goes to the files and to BigQuery;
- every sink releases a message once it has committed it (`release`): a file renamed into place (or a GCS
  object whose upload completed), a BigQuery insert confirmed, a dead letter published or inserted;
- a step that drops a message on purpose releases it too (a duplicate the dedup step drops).
A message routed elsewhere (a row the table rejects becomes a dead letter) keeps its count: the element that
carries it on releases it at its own sink.

`trouble(sink, detail)` says a sink is failing and being retried (None when it works again), for the live view:
Beam's own counters reach the runner only when a bundle ends, which a bundle stuck in a retry loop does not.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

_LOG = logging.getLogger(__name__)
SLOW_S = 5.0  # a write without an answer for this long is reported (a client retrying an outage inside one call)

GCS = "gcs"
BIGQUERY = "bigquery"
DEAD_LETTERS = "dead letters"


class Listener(Protocol):
    def hold(self, message_id: str, copies: int) -> None: ...

    def release(self, message_ids: Iterable[str]) -> None: ...

    def trouble(self, sink: str, detail: str | None) -> None: ...


_listener: Listener | None = None


def install(listener: Listener | None) -> None:
    """Set (or, with None, remove) this process's listener. Only the local runner installs one."""
    global _listener
    _listener = listener


def hold(message_id: str, copies: int = 1) -> None:
    if _listener is not None and copies > 0 and message_id:
        _listener.hold(message_id, copies)


def release(message_ids: Iterable[str]) -> None:
    if _listener is not None:
        _listener.release(message_ids)


def trouble(sink: str, detail: str | None) -> None:
    if _listener is not None:
        _listener.trouble(sink, detail)


_watched: dict[int, list] = {}  # id -> [sink, what, started, reported]
_watch_lock = threading.Lock()
_watchdog: threading.Thread | None = None


def _watch_loop() -> None:
    while True:
        time.sleep(1.0)
        now = time.monotonic()
        with _watch_lock:
            late = [entry for entry in _watched.values() if not entry[3] and now - entry[2] >= SLOW_S]
            for entry in late:
                entry[3] = True
        for sink, what, _started, _ in late:
            _LOG.warning("%s: %s has had no answer for %.0f s (the client is retrying)", sink, what, SLOW_S)
            trouble(sink, f"{what}: no answer for {SLOW_S:.0f} s+ (retrying)")


@contextlib.contextmanager
def watch(sink: str, what: str) -> Iterator[None]:
    """Within this block, a write still unanswered after SLOW_S is logged and reported as trouble.

    Client libraries retry an unreachable service inside one call (google-cloud-storage for up to 120 s): without
    this, an outage would be invisible until the call gives up. One watchdog thread checks every second."""
    global _watchdog
    if _listener is None:  # nobody to tell (Dataflow): no bookkeeping
        yield
        return
    entry = [sink, what, time.monotonic(), False]
    with _watch_lock:
        if _watchdog is None:
            _watchdog = threading.Thread(target=_watch_loop, name="sink-watchdog", daemon=True)
            _watchdog.start()
        _watched[id(entry)] = entry
    try:
        yield
    finally:
        with _watch_lock:
            _watched.pop(id(entry), None)
        if entry[3]:
            trouble(sink, None)


def active() -> bool:
    """Whether anyone listens (lets a sink skip work that only the listener needs)."""
    return _listener is not None
