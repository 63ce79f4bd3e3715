"""The shape every package's user-facing error shares: what went wrong, and what to do instead.

Each package raises its own subclass (WorkbenchError, EmulatorError, PublishError, ReconcileError, DdlError), so that
a library never imports the CLI; the CLI shows any of them as a two-line message and exits with status 2. The class
is defined in the bottom layer (endpoints/errors.py) and named here too, where the packages above have always
imported it: one class, two import paths.
"""

from __future__ import annotations

from endpoints.errors import FixableError as FixableError
