"""The one error type users are meant to read: what went wrong and what to do instead."""

from __future__ import annotations


class WorkbenchError(Exception):
    """A problem the user can fix. The CLI prints `message` and `fix` and exits with status 2.

    Library code raises it for bad input and unreachable services; it never carries a traceback to the user.
    """

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message}\n  fix: {self.fix}"
