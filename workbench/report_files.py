"""Report files a command writes after its work (--json, --html, --junit): checked before the work starts, so that
an exit status after the work always means its verdict and never a file that could not be written."""

from __future__ import annotations

import tempfile
from pathlib import Path

from workbench.errors import WorkbenchError


def check_output(option: str, path: Path) -> None:
    if path.is_dir():
        raise WorkbenchError(
            f"{option} {path} is a folder, not a file",
            f"name a file in it, e.g. {option} {path / ('report' + _suffix(option))}",
        )
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a part of the folder's path is a regular file
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise WorkbenchError(
            f"{option} {path}: cannot create the folder {folder}: {blocker} is a file",
            f"write the report elsewhere, e.g. {option} {Path.cwd() / path.name}",
        ) from None
    except OSError as exc:
        raise WorkbenchError(
            f"{option} {path}: cannot create the folder {folder}: {exc.strerror or exc}",
            f"write the report to a folder you can write to, e.g. {option} {Path.cwd() / path.name}",
        ) from None
    try:
        if path.exists():
            with path.open("ab"):  # opened to append, nothing written: the report replaces it later
                pass
        else:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", delete=True):
                pass
    except OSError as exc:
        raise WorkbenchError(
            f"{option} {path} cannot be written: {exc.strerror or exc}",
            f"write the report to a folder you can write to, e.g. {option} {Path.cwd() / path.name}",
        ) from None


def _suffix(option: str) -> str:
    return {"--json": ".json", "--html": ".html", "--junit": ".xml"}.get(option, "")
