"""Import the workbench's own modules into a user's process without taking names from the user.

The workbench's top-level packages have plain names (`pipeline`, `eventmodel`, `generator` ...). A user's project
may well have a `pipeline.py` of its own, first on sys.path (the script's folder): importing ours the ordinary way
would then import the user's module in our place (or ours in theirs). Here ours are looked up from the folder they
were installed into, and afterwards removed from sys.modules again (the objects live on in the modules that
imported them), with any module of the user's of the same name put back.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import workbench

ROOT = str(Path(workbench.__file__).resolve().parents[1])  # the folder holding workbench/, pipeline/, eventmodel/ ...
# Every top-level package of the workbench's distribution except `workbench` itself (pyproject.toml's find.include).
SHARED_NAMES = ("eventmodel", "generator", "publisher", "pipeline", "reconcile", "loadtest", "emulator", "ddl")


def _top(name: str) -> str:
    return name.partition(".")[0]


def _ours(name: str, module: ModuleType) -> bool:
    where = getattr(module, "__file__", None) or ""
    return where.startswith(f"{ROOT}/{_top(name)}/")


@contextlib.contextmanager
def ours_first() -> Iterator[None]:
    theirs = {
        n: sys.modules.pop(n) for n, m in list(sys.modules.items()) if _top(n) in SHARED_NAMES and not _ours(n, m)
    }
    before = set(sys.modules)
    sys.path.insert(0, ROOT)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(ROOT)
        for name in set(sys.modules) - before:
            if _top(name) in SHARED_NAMES:
                del sys.modules[name]
        sys.modules.update(theirs)


def import_ours(name: str) -> ModuleType:
    """`importlib.import_module(name)` with the workbench's packages first and the user's names left as they were."""
    with ours_first():
        return importlib.import_module(name)
