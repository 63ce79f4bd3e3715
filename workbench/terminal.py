"""The terminal facade: every command prints through these few functions, so style lives in one place.

Progress and live views go to stderr so that `--to -` can stream data on stdout. Every message is passed
through workbench.redact first: a secret-looking value (a token, a key, a password) is printed as ****.
info and success take rich markup; warning and error print plain text as given (they quote SQL, paths and
library messages, and a bracket such as `[local]` must not be taken for a style).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from workbench.redact import redact

LOG_WIDTH = 140


def _log_width(stream: object) -> int | None:
    """Rich assumes 80 columns when output is not a terminal (a pipe, a CI log), and tables of counts then cut
    their numbers to "1,…". A log has no width: give it LOG_WIDTH unless COLUMNS says otherwise."""
    isatty = getattr(stream, "isatty", None)
    if os.environ.get("COLUMNS") or (isatty is not None and isatty()):
        return None
    return LOG_WIDTH


console = Console(stderr=True, highlight=False, width=_log_width(sys.stderr))
out = Console(highlight=False, width=_log_width(sys.stdout))


# Messages are soft-wrapped: never broken mid-sentence when stderr is a pipe or a log file (rich assumes 80
# columns there), so they stay greppable.


def info(message: str) -> None:
    console.print(redact(message), soft_wrap=True)


def success(message: str) -> None:
    console.print(f"[green]✔[/green] {redact(message)}", soft_wrap=True)


def warning(message: str) -> None:
    console.print(f"[yellow]![/yellow] {escape(redact(message))}", soft_wrap=True)


def error(message: str, fix: str | None = None) -> None:
    console.print(f"[red]✘ error:[/red] {escape(redact(message))}", soft_wrap=True)
    if fix:
        console.print(f"  [bold]fix:[/bold] {escape(redact(fix))}", soft_wrap=True)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    """Build a table with right-aligned numeric columns; the caller prints it (to `out` or `console`).

    The first column holds what people copy (run ids, event ids, type names): it is never wrapped or cut, so a
    narrow terminal wraps the other columns first.
    """
    rows = [list(r) for r in rows]
    t = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        numeric = bool(rows) and all(isinstance(r[i], int | float) for r in rows)
        if i == 0:
            widest = max([len(str(name)), *(len(str(r[0])) for r in rows)])
            t.add_column(name, justify="left", no_wrap=True, min_width=widest)
            continue
        t.add_column(name, justify="right" if numeric else "left")
    for r in rows:
        t.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in r))
    return t
