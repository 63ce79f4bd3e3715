"""The optional installs (pyproject.toml's extras) and the one-line message a command gives when it needs one.

    pip install event-workbench               # core: publish, pipeline, reconcile, bq, the Pub/Sub emulator
    pip install 'event-workbench[local]'      # + the local stack's BigQuery, GCS and S3 emulators (`workbench up`)
    pip install 'event-workbench[loadtest]'   # + Locust (`workbench loadtest`)

A command that needs an extra calls `require(...)` before it starts anything, so a missing package is a
WorkbenchError naming the install, never a traceback from a child process.
"""

from __future__ import annotations

import importlib.util

from workbench.errors import WorkbenchError

# extra -> the top-level modules it brings that our code imports or runs
EXTRAS: dict[str, tuple[str, ...]] = {
    "local": ("bqemulator", "gcp_storage_emulator", "moto", "flask", "flask_cors"),
    "loadtest": ("locust", "gevent"),
}


def install_command(extra: str) -> str:
    return f"pip install 'event-workbench[{extra}]'"


def missing(*modules: str) -> list[str]:
    """The modules of `modules` that cannot be imported here (checked without importing them)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def require(extra: str, needed_by: str, *modules: str) -> None:
    """Raise a one-line WorkbenchError naming `pip install 'event-workbench[EXTRA]'` when a module is absent.

    `modules` defaults to everything the extra brings; `needed_by` says who needs it ("`workbench loadtest`").
    """
    absent = missing(*(modules or EXTRAS[extra]))
    if absent:
        raise WorkbenchError(
            f"{needed_by} needs the {extra} extra ({', '.join(absent)} not installed): {install_command(extra)}"
        )
