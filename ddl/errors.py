"""The data model's own user-facing error, as every library has one: shown by the CLI with its fix, exit status 2."""

from __future__ import annotations

from endpoints.errors import FixableError


class DdlError(FixableError):
    """The DDL cannot be rendered or applied: a bad placeholder or id, a missing file, a failed statement, an
    unreachable target."""
