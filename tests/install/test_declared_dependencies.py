"""Every third-party module a package imports comes from a distribution pyproject.toml declares for it, and
every declared core dependency is imported: the dependency list says what the code needs, no more, no less.

Core packages may use only `dependencies`; loadtest/ may also use the `loadtest` extra, and the BigQuery
emulator's launcher and offline fix (workbench/localstack/bigquery_main.py, duckdb_extensions.py) the `local`
extra. The imports are read from the
source (function-level imports included), so a lazy import cannot hide a missing declaration.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The Python packages pyproject.toml ships, read from its include list so that a new package is checked too
# (ddl/ is a package only to carry its SQL).
PACKAGES = tuple(
    pattern.removesuffix("*")
    for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    if pattern != "ddl*"
)
# Files that may import from an extra, and which.
EXTRA_USERS = {
    "loadtest/": "loadtest",
    "workbench/localstack/bigquery_main.py": "local",
    "workbench/localstack/duckdb_extensions.py": "local",  # imports it inside a try: absent without the extra
    "workbench/beam_redirect/bigquery.py": "local",  # exec's redirect: the local stack's emulators only
}
# pipeline/flex_template/setup.py is the Dataflow workers' own setup script: it imports setuptools to build.
NOT_RUNTIME = {"pipeline/flex_template/setup.py"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared(extra: str | None = None) -> set[str]:
    project = PYPROJECT["project"]
    found = {_name(r) for r in project["dependencies"]}
    if extra:
        found |= {_name(r) for r in project["optional-dependencies"][extra]}
    return found


def imports_of(path: Path) -> set[str]:
    """Third-party module names imported anywhere in the file (google.* to the level that names a library)."""
    first_party = set(PACKAGES) | {"ddl"}
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]  # `from google.cloud import bigquery`
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] in sys.stdlib_module_names or parts[0] in first_party or parts[0] == "__future__":
                continue
            # google.cloud.* and google.iam.* are namespaces shared by many distributions: the library is one down.
            depth = 3 if parts[:2] in (["google", "cloud"], ["google", "iam"]) else 2 if parts[0] == "google" else 1
            modules.add(".".join(parts[:depth]))
    return modules


@cache
def _top_level_owners() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


@cache
def distribution_of(module: str) -> str | None:
    """The installed distribution whose files hold `module` (google.* is shared by many: match the file)."""
    owners = _top_level_owners().get(module.split(".")[0], [])
    if len(owners) == 1:
        return _normal(owners[0])
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return None
    origin = Path(spec.origin).resolve()
    for owner in owners:
        dist = importlib.metadata.distribution(owner)
        if any(Path(dist.locate_file(file)).resolve() == origin for file in dist.files or ()):
            return _normal(owner)
    return None


def source_files() -> list[tuple[str, Path]]:
    files = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative not in NOT_RUNTIME:
                files.append((relative, path))
    return files


def allowed_for(relative: str) -> set[str]:
    extra = next((e for prefix, e in EXTRA_USERS.items() if relative.startswith(prefix)), None)
    return declared(extra)


def test_every_imported_distribution_is_declared_for_its_package():
    undeclared = []
    for relative, path in source_files():
        allowed = allowed_for(relative)
        for module in sorted(imports_of(path)):
            dist = distribution_of(module)
            assert dist is not None, f"{relative} imports {module}, which is not installed here (bootstrap?)"
            if dist not in allowed:
                undeclared.append(f"{relative}: {module} (from {dist})")
    assert not undeclared, "declare these in pyproject.toml (or the right extra):\n" + "\n".join(undeclared)


def test_every_core_dependency_is_imported_by_the_code():
    used = {distribution_of(m) for relative, path in source_files() for m in imports_of(path)}
    unused = declared() - used
    assert not unused, f"declared but never imported: {sorted(unused)}; drop them or say why in pyproject.toml"


@pytest.mark.parametrize("extra", ["local", "loadtest"])
def test_commands_name_every_module_of_an_extra_they_check(extra):
    from workbench.extras import EXTRAS

    for module in EXTRAS[extra]:
        assert distribution_of(module) in declared(extra), f"{module} is not brought by the {extra} extra"
