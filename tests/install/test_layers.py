"""The packages stack in layers, and no package imports one above it (function-level imports included, so a lazy
import cannot hide a cycle). README's Layout lists the same layers, bottom first."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("endpoints", "eventmodel", "generator publisher pipeline emulator", "reconcile ddl loadtest", "battery",
          "workbench")  # fmt: skip
LEVEL = {package: level for level, names in enumerate(LAYERS) for package in names.split()}


def test_every_shipped_package_has_a_layer():
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {pattern.removesuffix("*") for pattern in include} == set(LEVEL)


def imported(path: Path) -> set[tuple[int, str]]:
    """(line, top-level package) of every import of a project package in `path`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {(node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in LEVEL}
    return found


@pytest.mark.parametrize("package", sorted(LEVEL))
def test_a_package_imports_only_its_own_layer_and_those_below(package):
    assert (ROOT / package / "__init__.py").is_file()
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {other}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, other in sorted(imported(path))
        if LEVEL[other] > LEVEL[package]
    ]
    assert not upward, "\n".join(upward)
