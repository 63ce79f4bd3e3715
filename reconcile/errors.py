"""Reconcile's own error: the run could not be reconciled (exit status 2), with what to do about it."""

from __future__ import annotations

from eventmodel.errors import FixableError


class ReconcileError(FixableError):
    """No verdict is possible: no such run, a sink unreachable, a manifest still running or interrupted."""
