"""The publisher's own error: what went wrong and what to do instead (the CLI prints both, exit status 2)."""

from __future__ import annotations

from endpoints.errors import FixableError


class PublishError(FixableError):
    """A problem the user can fix: no emulator listening, a missing topic, an unwritable --to file, no such run."""
