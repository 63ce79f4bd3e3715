"""The shape every package's user-facing error shares: what went wrong, and what to do instead.

Each package raises its own subclass (WorkbenchError, EmulatorError, PublishError, ReconcileError), so that a
library never imports the CLI; the CLI shows any of them as a two-line message and exits with status 2.
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
