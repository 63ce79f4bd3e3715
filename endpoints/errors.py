"""The shape every package's user-facing error shares: what went wrong, and what to do instead.

Defined here, in the bottom layer, so that every package can raise its own subclass (WorkbenchError, EmulatorError,
PublishError, ReconcileError, DdlError, ...) without importing a layer above it. The CLI shows any of
them as a two-line message and exits with status 2.
"""

from __future__ import annotations


class FixableError(Exception):
    """A problem the user can fix: `message` says what went wrong, `fix` what to do instead (or None)."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message}\n  fix: {self.fix}"


class EndpointError(FixableError):
    """A client that cannot be made for its service (no credentials for the cloud one, most often)."""
