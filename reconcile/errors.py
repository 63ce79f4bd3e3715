"""Reconcile's own error: the run could not be reconciled (exit status 2), with what to do about it."""

from __future__ import annotations


class ReconcileError(Exception):
    """No verdict is possible: no such run, a sink unreachable, a manifest still running or interrupted."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
