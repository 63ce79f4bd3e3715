"""What `workbench check` shows: the publish's live view, a live table of what is still missing per scenario
while the sinks settle, and the scorecard (one row per scenario and property, each failure with its evidence)."""

from __future__ import annotations

import contextlib
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from battery.model import CheckData
from workbench import terminal
from workbench.check_run import CheckView

STATUS_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}


class TerminalCheckView(CheckView):
    def step(self, text: str) -> None:
        terminal.info(text)

    def publishing(self) -> Any:
        from workbench.publish_view import LiveView

        return _Publishing(LiveView)

    def waiting(self) -> Any:
        return _Waiting()

    def scorecard(self, card: Any, data: CheckData) -> None:
        with contextlib.suppress(OSError):  # a terminal gone after SIGHUP: the reports are still written
            terminal.console.print(scorecard_table(card, data))
            for row in card.rows:
                if row.status == "fail":
                    terminal.console.print(evidence(row))
            for note in data.notes:
                terminal.info(note)
            verdict = "every property holds" if card.exit_code == 0 else "some properties do NOT hold"
            terminal.console.print(Text(f"run {data.run_id}: {verdict}",
                                        style="bold green" if card.exit_code == 0 else "bold red"))  # fmt: skip


class _Publishing:
    """The publish's own live view, built once the Publisher exists (run_with_signals calls update(publisher))."""

    def __init__(self, view_class: Any) -> None:
        self._class, self._view = view_class, None

    def __enter__(self) -> _Publishing:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._view is not None:
            self._view.__exit__(*exc)

    def update(self, publisher: Any) -> None:
        if self._view is None:
            self._view = self._class(publisher).__enter__()
        self._view.update(publisher)


class _Waiting:
    def __init__(self) -> None:
        self._live = Live(Text("reconciling..."), console=terminal.console, refresh_per_second=4, transient=True)

    def __enter__(self) -> _Waiting:
        with contextlib.suppress(OSError):
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._live.__exit__(*exc)

    def unreadable(self, message: str, remaining: float) -> None:
        with contextlib.suppress(OSError):
            self._live.update(Text(f"the sinks cannot be read yet ({message}); {remaining:.0f} s left", style="dim"))

    def poll(self, missing: dict[str, int], report: Any, remaining: float, note: str) -> None:
        table = Table(title="waiting for the sinks", title_justify="left", expand=False)
        table.add_column("scenario")
        table.add_column("still missing", justify="right")
        for scenario, n in missing.items():
            table.add_row(scenario, f"{n:,}", style="green" if n == 0 else None)
        wrong = ", ".join(f"{k}: {v:,}" for k, v in report.problem_counts.most_common()) or "nothing"
        with contextlib.suppress(OSError):
            self._live.update(Group(table, Text(f"still wrong: {wrong}; {remaining:.0f} s left. {note}", style="dim")))


def scorecard_table(card: Any, data: CheckData) -> Table:
    """Scenarios down, properties across: narrow terminals fold the summary column, never the verdicts."""
    table = Table(title=f"scorecard of run {data.run_id} ({data.contract})", title_justify="left")
    table.add_column("scenario", no_wrap=True)
    table.add_column("property", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("evidence", overflow="fold")
    previous = None
    for row in card.rows:
        table.add_row("" if row.scenario == previous else row.scenario, row.title,
                      Text(row.status.upper(), style=STATUS_STYLE.get(row.status, "")), row.summary)  # fmt: skip
        previous = row.scenario
    return table


def evidence(row: Any) -> Table:
    table = Table(title=f"{row.scenario} / {row.title}: {row.summary}", title_justify="left", show_edge=False)
    table.add_column("event id", no_wrap=True)
    table.add_column("finding")
    table.add_column("last seen", overflow="fold")
    for sample in row.samples:
        table.add_row(
            sample.event_id, sample.finding, sample.last_seen + (f" ({sample.detail})" if sample.detail else "")
        )
    return table
