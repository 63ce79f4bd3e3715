"""The publisher's own error: what went wrong and what to do instead (the CLI prints both, exit status 2)."""

from __future__ import annotations


class PublishError(Exception):
    """A problem the user can fix: no emulator listening, a missing topic, an unwritable --to file, no such run."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
