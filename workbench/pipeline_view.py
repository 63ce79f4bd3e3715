"""The live view and the end-of-run summary of `workbench run-pipeline` (rich, through workbench.terminal)."""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Iterator

from rich.console import Group
from rich.live import Live
from rich.table import Table

from workbench import terminal
from workbench.pipeline_run.progress import Progress


def _lag(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:,.1f} s"


class PipelineView:
    """A rich Live panel fed by workbench.pipeline_run progress callbacks (about twice a second)."""

    def __init__(self, source: str, sinks: str) -> None:
        self.source = source
        self.sinks = sinks
        self._recent: deque[tuple[float, int]] = deque(maxlen=10)  # (time, read): rate over the last ~5 s
        self._progress = Progress(elapsed=0.0)
        self._live = Live(self._render(), console=terminal.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> PipelineView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        with output_may_fail():
            self._live.__exit__(*exc)

    def update(self, progress: Progress) -> None:
        self._progress = progress
        self._recent.append((time.monotonic(), progress.read))
        with output_may_fail():
            self._live.update(self._render())

    def rate(self) -> float:
        if len(self._recent) < 2 or self._recent[-1][0] <= self._recent[0][0]:
            return 0.0
        (t0, r0), (t1, r1) = self._recent[0], self._recent[-1]
        return (r1 - r0) / (t1 - t0)

    def _render(self) -> Group:
        p = self._progress
        grid = Table.grid(padding=(0, 2))
        for style in ("bold", None, "bold", None):
            grid.add_column(style=style, justify="left" if style else "right")
        grid.add_row("from", self.source, "to", self.sinks)
        grid.add_row("elapsed", f"{p.elapsed:,.1f} s", "read rate", f"{self.rate():,.0f}/s")
        grid.add_row("read", f"{p.read:,}", "valid", f"{p.valid:,}")
        grid.add_row("dead-lettered", f"{p.dead_lettered:,}", "duplicates dropped", f"{p.duplicates:,}")
        grid.add_row("files: lines", f"{p.gcs_lines:,}", "files written", f"{p.gcs_files:,}")
        grid.add_row("BigQuery rows", f"{p.bigquery_rows:,}", "dead-letter rows", f"{p.dead_letter_rows:,}")
        grid.add_row("lag to files", _lag(p.gcs_lag_ms), "lag to BigQuery", _lag(p.bigquery_lag_ms))
        grid.add_row("acknowledged", f"{p.acked:,}", "in flight (unacked)", f"{p.unacked:,}")
        if p.retries:
            retries = ", ".join(f"{sink} {count:,}" for sink, count in sorted(p.retries.items()))
            grid.add_row("[yellow]sink retries[/yellow]", retries, "", "")
        for sink, detail in sorted(p.troubles.items()):
            grid.add_row(f"[red]{sink} failing[/red]", detail, "", "")
        if p.bigquery_failed:
            grid.add_row("[red]BigQuery failed[/red]", f"{p.bigquery_failed:,}", "", "")
        grid.add_row("idle for", f"{p.idle_for:,.1f} s", "", "")
        if p.stopping:
            grid.add_row("[yellow]stopping[/yellow]", p.stopping, "", "")
        return Group(grid)


@contextlib.contextmanager
def output_may_fail() -> Iterator[None]:
    """Printing that fails (a terminal closed after SIGHUP: every write gets EIO) must not end a drain, nor change
    the exit status: stdout and stderr are pointed at /dev/null from then on. Without that, each later message would
    fail again, and text still buffered when the interpreter flushes at exit makes it exit 1 whatever sys.exit said
    (seen on Python 3.11), when the status is all that a closed terminal's user (or a script) still gets."""
    try:
        yield
    except OSError:
        detach_from_terminal()


def detach_from_terminal() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def summary(progress: Progress) -> list[Table]:
    totals = terminal.table(
        "pipeline run",
        ("read", "valid", "duplicates", "dead-lettered", "file lines", "files", "BigQuery rows", "dead-letter rows"),
        [
            (
                progress.read,
                progress.valid,
                progress.duplicates,
                progress.dead_lettered,
                progress.gcs_lines,
                progress.gcs_files,
                progress.bigquery_rows,
                progress.dead_letter_rows,
            )
        ],
    )
    tables = [totals]
    if progress.retries:
        tables.append(
            terminal.table(
                "sink retries",
                ("sink", "retries"),
                sorted(progress.retries.items()),
            )
        )
    if progress.per_reason:
        tables.append(
            terminal.table("dead letters by reason", ("reason", "count"), sorted(progress.per_reason.items()))
        )
    return tables
