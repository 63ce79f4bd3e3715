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

from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.table import Table
from rich.text import Text

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


# Narrow terminals: a number is never cut. A text column may wrap down to its longest word, or TEXT_MIN when
# that is longer (a path folds); a header word folds only beyond HEADER_MIN. A table that still does not fit leaves
# out its all-zero columns, then the caller's droppable columns, then goes on below in a second table that repeats
# the first column.
TEXT_MIN = 12
HEADER_MIN = 9


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    droppable: Sequence[str] = (),
) -> FitTable:
    """A table with right-aligned numeric columns, laid out for the width it is printed at; the caller prints it
    (to `out` or `console`).

    The first column holds what people copy (run ids, event ids, type names) and numbers are what people read:
    neither is ever wrapped or cut. Other text wraps. Under a narrow width, columns whose values are all 0 or
    empty go first, then `droppable` (named by header, least needed first); a caption says what was left out.
    """
    return FitTable(title, list(columns), [list(r) for r in rows], list(droppable))


def _cell(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _longest_word(text: str) -> int:
    return max((len(w) for w in text.split()), default=0)


def _blank(value: object) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return not value
    return value is None or value == ""


class FitTable:
    """A rich renderable: the table, built when it is printed, for that console's width (see table())."""

    def __init__(self, title: str | None, columns: list[str], rows: list[list[object]], droppable: list[str]) -> None:
        self.title = title
        self.columns = columns
        self.rows = rows
        self.droppable = droppable
        self.numeric = [bool(rows) and all(isinstance(r[i], int | float) for r in rows) for i in range(len(columns))]
        self.cells = [[_cell(v) for v in r] for r in rows]

    def needs(self, i: int) -> int:
        """The narrowest column i may be: whole values for the first column and numbers; for text, its longest
        word up to TEXT_MIN."""
        widest = max((len(r[i]) for r in self.cells), default=0)
        header_word = min(_longest_word(self.columns[i]), HEADER_MIN)
        if i == 0 or self.numeric[i]:
            return max(widest, header_word, 1)
        word = max((_longest_word(r[i]) for r in self.cells), default=0)
        return max(min(word, TEXT_MIN), header_word, 1)

    def width_of(self, shown: list[int]) -> int:
        # Rich's default box: one rule before each column and after the last, one space of padding each side.
        return sum(self.needs(i) + 3 for i in shown) + 1

    def layout(self, width: int) -> tuple[list[list[int]], list[str]]:
        """Which columns each printed table shows (column 0 in every one), and what was left out and why."""
        shown = list(range(len(self.columns)))
        notes: list[str] = []
        if self.width_of(shown) > width:
            zero = [i for i in shown[1:] if self.rows and all(_blank(r[i]) for r in self.rows)]
            if zero and len(shown) - len(zero) >= 2:  # a table of its first column alone would say nothing
                shown = [i for i in shown if i not in zero]
                notes.append("all 0 or empty: " + ", ".join(self.columns[i] for i in zero))
        dropped = []
        for name in self.droppable:
            if self.width_of(shown) <= width:
                break
            if name in self.columns and (i := self.columns.index(name)) in shown and len(shown) > 2:
                shown.remove(i)
                dropped.append(name)
        if dropped:
            notes.append("left out for width: " + ", ".join(dropped) + " (a wider terminal shows them)")
        parts: list[list[int]] = [[0]]
        for i in shown[1:]:
            if len(parts[-1]) > 1 and self.width_of([*parts[-1], i]) > width:
                parts.append([0])
            parts[-1].append(i)
        return parts, notes

    def natural(self, i: int) -> int:
        """Column i's width with every header and value on one line."""
        return max([len(self.columns[i]), *(len(r[i]) for r in self.cells)])

    def number_widths(self, shown: list[int], width: int) -> dict[int, int]:
        """The widest each number column may be, when the table does not fit with every header on one line.

        Rich shrinks only the columns that may wrap, and a number's column may not: held to what its numbers
        need, its header wraps instead of pushing the table past the edge. The room left is handed out first so
        that no header word is folded, then so that headers stay on one line, left to right.
        """
        if sum(self.natural(i) + 3 for i in shown) + 1 <= width:
            return {}
        numbers = [i for i in shown[1:] if self.numeric[i]]
        widths = {i: self.needs(i) for i in numbers}
        spare = width - self.width_of(shown)
        words = {i: max([widths[i], *(len(w) for w in self.columns[i].split())]) for i in numbers}
        for goal in (words, {i: self.natural(i) for i in numbers}):
            for i in numbers:
                grow = min(max(goal[i] - widths[i], 0), max(spare, 0))
                widths[i] += grow
                spare -= grow
        return widths

    def build(self, shown: list[int], title: str | None, caption: str | None, width: int) -> Table:
        t = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
        most = self.number_widths(shown, width)
        for i in shown:
            name = self.columns[i]
            if i == 0:
                t.add_column(name, justify="left", no_wrap=True, min_width=self.needs(0))
            elif self.numeric[i]:
                # The header may wrap between words (and fold a long word); the numbers never do.
                header = Text(name, justify="right", no_wrap=False, overflow="fold")
                t.add_column(header, justify="right", no_wrap=True, min_width=self.needs(i), max_width=most.get(i))
            else:
                t.add_column(name, justify="left", overflow="fold", min_width=self.needs(i))
        for r in self.cells:
            t.add_row(*(r[i] for i in shown))
        return t

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        parts, notes = self.layout(options.max_width)
        caption = "; ".join(notes) or None
        for k, shown in enumerate(parts):
            title = self.title if k == 0 else "(continued)"
            yield self.build(shown, title, caption if k == len(parts) - 1 else None, options.max_width)
