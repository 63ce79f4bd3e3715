"""Reconcile's errors: the run could not be reconciled (exit status 2), with what to do about it.

Each state a caller acts on has its own type, so that it decides by type and never by the message's words:

    try:
        manifest = resolve_run(run_id)
    except StillPublishing:        # its publisher is alive: wait and ask again (reconcile_waiting does)
        ...
    except NotYetReadable:         # a sink the pipeline creates as it writes is not there yet
        ...
"""

from __future__ import annotations

from endpoints.errors import FixableError


class ReconcileError(FixableError):
    """No verdict is possible: no such run, a sink unreachable, a manifest still running or interrupted."""


class StillPublishing(ReconcileError):
    """The run's manifest says running and its publisher is alive: a verdict must wait for the publish to end."""

    def __init__(self, message: str, fix: str | None = None, *, run_id: str) -> None:
        super().__init__(message, fix)
        self.run_id = run_id


class NotYetReadable(ReconcileError):
    """A sink the contract names does not exist (yet): the output root, the dataset, an event table or the
    dead-letter topic. A pipeline creates its tables and folders as it writes, so it may still appear."""
