"""The live view and the end-of-run summary of `workbench publish`."""

from __future__ import annotations

import contextlib
import time
from collections import deque

from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from publisher.run import Publisher, PublishResult
from publisher.s3 import S3Target, endpoint_url
from publisher.sinks import FileTarget
from workbench import terminal


def describe_target(target, run_id: str | None = None) -> str:
    if isinstance(target, FileTarget):
        return "standard output" if target.path == "-" else target.path
    if isinstance(target, S3Target):
        where = f"{target.uri.rstrip('/')}/{run_id}/" if run_id else target.uri
        split = ", split by type" if target.split_by_type else ""
        objects = f"{target.objects:,} object{'s' if target.objects != 1 else ''}"
        return f"{where} ({target.format}, {target.compression}, {objects}{split}; {endpoint_url() or 'AWS S3'})"
    where = f"emulator {target.emulator_host}" if target.emulator_host else "Google Cloud"
    return f"projects/{target.project}/topics/{target.topic} ({where})"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f} ms"


class LiveView:
    """Feeds a rich Live display from Publisher progress callbacks, four times a second."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self._recent: deque[tuple[float, int]] = deque(maxlen=8)  # (time, sent): rate over the last ~2 s
        self._live = Live(self._render(), console=terminal.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        # After SIGHUP the terminal may be gone; the run's outcome is in the manifest whatever the screen shows.
        with contextlib.suppress(OSError):
            self._live.__exit__(*exc)
            if not terminal.console.is_terminal:
                terminal.console.line()  # off a terminal (CI logs) rich leaves its last frame without a line end

    def update(self, publisher: Publisher) -> None:
        self._recent.append((time.monotonic(), publisher.totals().sent))
        self._live.update(self._render())

    def _render(self) -> Group:
        plan = self.publisher.plan
        totals = self.publisher.totals()
        elapsed = self.publisher.elapsed()
        if len(self._recent) >= 2 and self._recent[-1][0] > self._recent[0][0]:
            (t0, s0), (t1, s1) = self._recent[0], self._recent[-1]
            recent_rate = (s1 - s0) / (t1 - t0)
        else:
            recent_rate = 0.0
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column(justify="right")
        grid.add_column(style="bold")
        grid.add_column(justify="right")
        grid.add_row("run", plan.run_id, "to", describe_target(plan.target, plan.run_id))
        if plan.phases:  # a run of phases (`workbench check`): which one is publishing now, of how many
            names = [phase.name for phase in plan.phases]
            current = self.publisher.current_phase()
            where = f"{names.index(current) + 1} of {len(names)}" if current else f"{len(names)} phases"
            grid.add_row("phase", current or "-", "", where)
        grid.add_row("target rate", f"{totals.target_rate:,.0f}/s", "achieved", f"{recent_rate:,.0f}/s")
        active = totals.active_s
        grid.add_row("elapsed", f"{elapsed:,.1f} s", "average", f"{totals.sent / active if active else 0:,.0f}/s")
        grid.add_row("sent", f"{totals.sent:,}", "published", f"{totals.published:,}")
        grid.add_row("failed", f"{totals.failed:,}", "in flight", f"{totals.in_flight:,}")
        grid.add_row("latency p50", _ms(totals.latency.percentile(50)), "p99", _ms(totals.latency.percentile(99)))
        if self.publisher.aborting:
            grid.add_row("[red]stopping now[/red]", "in-flight messages stay unknown", "", "")
        elif self.publisher.stopping:
            grid.add_row("[yellow]stopping[/yellow]", "draining in-flight messages (again to stop at once)", "", "")
        parts: list = [grid]
        if plan.phases:
            done = totals.sent / (plan.total() or 1)
            parts.append(ProgressBar(total=1.0, completed=min(done, 1.0), width=60))
        elif plan.count or plan.duration:
            done = totals.sent / plan.count if plan.count else totals.active_s / plan.duration
            parts.append(ProgressBar(total=1.0, completed=min(done, 1.0), width=60))
        return Group(*parts)


def summary(result: PublishResult) -> list[Table]:
    totals = result.totals
    status_style = {"completed": "green", "interrupted": "yellow"}.get(result.status, "red")
    overview = terminal.table(
        f"run {result.run_id}: [{status_style}]{result.status}[/{status_style}]",
        ["sent", "published", "failed", "seconds", "msg/s", "p50", "p99"],
        [
            [
                totals.sent,
                totals.published,
                totals.failed,
                round(result.totals.active_s or result.elapsed, 1),
                round(result.achieved_rate, 1),
                _ms(totals.latency.percentile(50)),
                _ms(totals.latency.percentile(99)),
            ]
        ],
    )
    counts = result.counts
    destinations = ["order", "inventory", "user_activity", "dead_letter"]
    where = terminal.table(
        "published, by expected destination",
        [*destinations, "duplicates"],
        [[*(counts.get(f"expected:{d}", 0) for d in destinations), counts.get("duplicates", 0)]],
    )
    reasons = sorted(
        ((key.partition(":")[2], value) for key, value in counts.items() if key.startswith("reason:")),
        key=lambda item: (-item[1], item[0]),
    )
    tables = [overview, where]
    if reasons:
        tables.append(
            terminal.table(
                "malformed, by expected reason code",
                ["reason", "messages"],
                reasons,
            )
        )
    return tables
