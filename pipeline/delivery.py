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

from collections.abc import Iterable
from typing import Protocol

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


def active() -> bool:
    """Whether anyone listens (lets a sink skip work that only the listener needs)."""
    return _listener is not None
