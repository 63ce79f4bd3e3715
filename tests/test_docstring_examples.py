"""The examples in the pure packages' docstrings run: a `>>>` that stops being true fails here.

A plain test rather than pytest's --doctest-modules, which also collects every tests/**/conftest.py as a module and,
in the suite's import mode, refused two of them with one basename ("import file mismatch") depending on the order
the folders were given. loadtest/ and most of workbench/ are left out: importing Locust gevent-patches the process,
and the workbench's examples start services.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PURE = ("endpoints", "eventmodel", "generator", "publisher", "emulator", "ddl", "reconcile", "battery",
        "pipeline/core.py", "loadtest/shape_curves.py", "workbench/redact.py")  # fmt: skip


def modules_with_examples() -> list[str]:
    paths = [p for place in PURE for p in ([ROOT / place] if place.endswith(".py") else (ROOT / place).rglob("*.py"))]
    return sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in paths
        if ">>>" in p.read_text()
    )


MODULES = modules_with_examples()


def test_the_examples_are_found():
    assert {"eventmodel.canonical", "battery.scenarios", "reconcile", "endpoints.bigquery_strict"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, capsys):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, capsys.readouterr().out
