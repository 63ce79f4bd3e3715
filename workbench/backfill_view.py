"""The live view and the end-of-run summary of `workbench backfill` (rich, through workbench.terminal)."""

from __future__ import annotations

from rich.live import Live
from rich.table import Table

from eventmodel import rows
from eventmodel.schema import EVENT_TYPES
from pipeline import metrics as M
from workbench import terminal


def _sum(counts: dict[str, int], prefix: str) -> int:
    return sum(v for k, v in counts.items() if k.startswith(prefix))


def figures(counts: dict[str, int]) -> dict[str, int]:
    """What a backfill did, by the names the view and the summary show, from its counters."""
    return {
        "objects read": counts.get(M.HISTORY_OBJECTS, 0),
        "bytes read": counts.get(M.HISTORY_BYTES, 0),
        "unreadable objects": counts.get(M.HISTORY_UNREADABLE, 0),
        "records read": counts.get(M.READ, 0),
        "accepted": sum(counts.get(M.valid(t), 0) for t in EVENT_TYPES),
        "dead-lettered": counts.get(M.DEAD_LETTERS, 0),
        "duplicates in the history": counts.get(M.HISTORY_DUPLICATES, 0),
        "outside --since/--until": counts.get(M.HISTORY_OUTSIDE_WINDOW, 0),
        "already in the files": counts.get(M.HISTORY_ALREADY_IN_GCS, 0),
        "already in BigQuery": counts.get(M.HISTORY_ALREADY_IN_BIGQUERY, 0),
        "dead letters already recorded": counts.get(M.HISTORY_DEAD_LETTERS_KNOWN, 0),
        "file lines written": _sum(counts, M.GCS_LINES + "_"),
        "files written": counts.get(M.GCS_FILES, 0),
        "BigQuery rows loaded": sum(counts.get(M.bigquery_rows(t), 0) for t in rows.TABLES.values()),
        "load jobs": counts.get(M.BIGQUERY_LOAD_JOBS, 0),
        # waits for a quota or rate limit, or an outage (pipeline.bigquery_load): a job is never split for them
        "load retries": counts.get(M.BIGQUERY_RETRIES, 0),
        "rows not loaded (dead letters)": counts.get(M.BIGQUERY_FAILED, 0),
    }


class BackfillView:
    """A rich Live grid fed by workbench.pipeline_run.backfill_launcher's progress callback (twice a second)."""

    def __init__(self, source: str, sinks: str) -> None:
        self.source, self.sinks = source, sinks
        self._live = Live(self._render({}, 0.0), console=terminal.console, refresh_per_second=4)

    def __enter__(self) -> BackfillView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(*exc)

    def update(self, counts: dict[str, int], elapsed: float) -> None:
        self._live.update(self._render(counts, elapsed))

    def _render(self, counts: dict[str, int], elapsed: float) -> Table:
        f = figures(counts)
        grid = Table.grid(padding=(0, 2))
        for style in ("bold", None, "bold", None):
            grid.add_column(style=style, justify="left" if style else "right")
        rate = f["records read"] / elapsed if elapsed > 0 else 0.0
        grid.add_row("from", self.source, "to", self.sinks)
        grid.add_row("elapsed", f"{elapsed:,.1f} s", "records/s", f"{rate:,.0f}")
        grid.add_row("objects read", f"{f['objects read']:,}", "bytes read", f"{f['bytes read']:,}")
        grid.add_row("records read", f"{f['records read']:,}", "accepted", f"{f['accepted']:,}")
        grid.add_row("dead-lettered", f"{f['dead-lettered']:,}", "duplicates", f"{f['duplicates in the history']:,}")
        grid.add_row("already in files", f"{f['already in the files']:,}", "already in BigQuery",
                     f"{f['already in BigQuery']:,}")  # fmt: skip
        grid.add_row("file lines", f"{f['file lines written']:,}", "BigQuery rows", f"{f['BigQuery rows loaded']:,}")
        if f["unreadable objects"]:
            grid.add_row("[red]unreadable objects[/red]", f"{f['unreadable objects']:,}", "", "")
        return grid


def summary(counts: dict[str, int]) -> list[Table]:
    f = figures(counts)
    always = ("objects read", "records read", "accepted", "dead-lettered", "file lines written", "BigQuery rows loaded")
    tables = [terminal.table("backfill", ("what", "count"), [(k, v) for k, v in f.items() if v or k in always])]
    reasons = sorted((k.removeprefix(M.DEAD_LETTERS + "_"), v) for k, v in counts.items()
                     if k.startswith(M.DEAD_LETTERS + "_") and v)  # fmt: skip
    if reasons:
        tables.append(terminal.table("dead letters by reason", ("reason", "count"), reasons))
    return tables
