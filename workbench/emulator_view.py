"""The live terminal view of a running Pub/Sub emulator: topics, subscriptions, backlog, rates and injected faults.

`stats_table` is a pure function of two stats snapshots (so it is tested without a terminal);
`run_live` refreshes it with rich until the emulator is asked to stop.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from emulator.pubsub.server import EmulatorHandle


def _rate(now: dict[str, Any], before: dict[str, Any] | None, key: str, elapsed: float) -> str:
    if before is None or elapsed <= 0:
        return "-"
    return f"{max(0, now[key] - before.get(key, 0)) / elapsed:,.0f}/s"


def stats_table(stats: dict[str, Any], previous: dict[str, Any] | None, elapsed: float) -> Table:
    """Topics and subscriptions with totals and per-second rates since the previous snapshot."""
    table = Table(title_justify="left", expand=False)
    for column, justify in (
        ("resource", "left"),
        ("published", "right"),
        ("publish rate", "right"),
        ("backlog", "right"),
        ("delivered", "right"),
        ("delivery rate", "right"),
        ("acked", "right"),
        ("dead-lettered", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    before_topics = (previous or {}).get("topics", {})
    before_subs = (previous or {}).get("subscriptions", {})
    subs_by_topic: dict[str, list[str]] = {}
    for name, sub in sorted(stats["subscriptions"].items()):
        subs_by_topic.setdefault(sub["topic"], []).append(name)
    for name, topic in sorted(stats["topics"].items()):
        table.add_row(
            Text(name, style="bold"),
            f"{topic['published']:,}",
            _rate(topic, before_topics.get(name) if previous else None, "published", elapsed),
            "",
            "",
            "",
            "",
            "",
        )
        for sub_name in subs_by_topic.pop(name, []):
            _sub_row(table, sub_name, stats["subscriptions"][sub_name], before_subs.get(sub_name), previous, elapsed)
    for orphans in subs_by_topic.values():  # subscriptions whose topic was deleted
        for sub_name in orphans:
            _sub_row(table, sub_name, stats["subscriptions"][sub_name], before_subs.get(sub_name), previous, elapsed)
    return table


def _sub_row(
    table: Table,
    name: str,
    sub: dict[str, Any],
    before: dict[str, Any] | None,
    previous: dict[str, Any] | None,
    elapsed: float,
) -> None:
    table.add_row(
        f"  └ {name}",
        "",
        "",
        f"{sub['backlog']:,}",
        f"{sub['delivered']:,}",
        _rate(sub, before if previous else None, "delivered", elapsed),
        f"{sub['acked']:,}",
        f"{sub['dead_lettered']:,}",
    )


def faults_line(report: dict[str, Any]) -> str:
    counts = report["counts"]
    settings = {k: v for k, v in report["global"].items() if v}
    configured = ", ".join(f"{k}={v:g}" for k, v in settings.items()) or "none"
    overrides = len(report["overrides"])
    injected = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    return f"faults (seed {report['seed']}): global {configured}; {overrides} override(s); injected: {injected}"


def render(handle: EmulatorHandle, previous: dict[str, Any] | None, elapsed: float) -> tuple[Group, dict]:
    stats = handle.store.stats()
    header = Text(
        f"Pub/Sub emulator on {handle.target}  (PUBSUB_EMULATOR_HOST={handle.target})  "
        f"{'durable: ' + str(handle.journal.path) if handle.journal else 'in memory'}  "
        f"{'admin service on  ' if handle.admin else ''}Ctrl-C stops",
        style="dim",
    )
    body = Group(header, stats_table(stats, previous, elapsed), Text(faults_line(handle.store.faults.report())))
    return body, stats


def run_live(handle: EmulatorHandle, console: Console, refresh: float = 1.0) -> None:
    """Show the live view until handle.request_stop() (Ctrl-C and SIGTERM call it)."""
    previous: dict[str, Any] | None = None
    last = time.monotonic()
    view, previous = render(handle, None, 0.0)
    with Live(view, console=console, refresh_per_second=4, transient=False) as live:
        while not handle.wait(refresh):
            now = time.monotonic()
            view, previous = render(handle, previous, now - last)
            last = now
            live.update(view)
