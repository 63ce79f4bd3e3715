"""The commands are thin (issue #23): each click command's body gathers its options and makes one call into
library code, and library code never reaches up into the CLI's package (a command is not a library function)."""

from __future__ import annotations

import ast
from pathlib import Path

WORKBENCH = Path(__file__).resolve().parents[2] / "workbench"
# Lines after the docstring: a local import, a blank line, and the one call (with an exit status, at most).
LONGEST_BODY = 4


def _is_command(node: ast.FunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if getattr(target, "attr", getattr(target, "id", "")) in ("command", "group"):
            return True
    return False


def command_bodies() -> dict[str, int]:
    """{module:function: lines of its body after the docstring} of every click command in workbench/cli."""
    found = {}
    for path in sorted((WORKBENCH / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and _is_command(node):
                body = node.body[1:] if ast.get_docstring(node) is not None else node.body
                found[f"{path.name}:{node.name}"] = node.end_lineno - body[0].lineno + 1 if body else 0
    return found


def test_every_command_body_is_one_call_into_the_library():
    bodies = command_bodies()
    assert len(bodies) >= 20, bodies  # every command was found
    long = {name: lines for name, lines in bodies.items() if lines > LONGEST_BODY}
    assert not long, f"move their logic into the command's library module: {long}"


def test_library_modules_never_import_the_cli():
    importers = []
    for path in WORKBENCH.rglob("*.py"):
        if "cli" in path.relative_to(WORKBENCH).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            importers += [f"{path.relative_to(WORKBENCH)}:{node.lineno} {n}" for n in names
                          if n == "workbench.cli" or n.startswith("workbench.cli.")]  # fmt: skip
    assert not importers, importers
