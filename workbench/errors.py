"""The launcher's error (the CLI, the local stack, the pipeline's launch): what went wrong and what to do instead."""

from __future__ import annotations

from endpoints.errors import FixableError


class WorkbenchError(FixableError):
    """A problem the user can fix. The CLI prints `message` and `fix` and exits with status 2.

    Library code raises it for bad input and unreachable services; it never carries a traceback to the user.
    """
