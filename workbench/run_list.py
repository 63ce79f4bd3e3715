"""What `workbench runs` shows: the publish runs recorded under $WORKBENCH_HOME/runs, newest first, as a table.

    show_runs(limit=20)

The status is publisher.manifest.run_state's, the one reconcile gives: a run whose manifest still says running
but whose publisher is gone shows as dead. On a narrow terminal the counts stay whole; the destination and the
rate go first (the table's caption says so).
"""

from __future__ import annotations

from typing import Any

from publisher.manifest import DEAD, list_runs, run_state, runs_root
from workbench import terminal

COLUMNS = ["run id", "started (UTC)", "status", "to", "published", "malformed", "failed", "msg/s"]
# Least needed first: what a narrow terminal leaves out before it splits the table.
# The start time goes first: a run id made by publish begins with it (20261207-091500-...).
DROPPABLE = ["started (UTC)", "to", "msg/s"]


def run_row(m: dict[str, Any]) -> list[object]:
    """One line of the table from a manifest."""
    target = m.get("target", {})
    where = {"file": target.get("path"), "s3": target.get("run_prefix") or target.get("uri")}.get(
        target.get("kind"), target.get("topic")
    )
    totals = m.get("totals", {})
    counts = m.get("counts", {})
    elapsed = m.get("elapsed_s") or 0
    return [
        m.get("run_id", "?"),
        (m.get("started_at") or "")[:19].replace("T", " "),
        run_state(m),
        where or "?",
        totals.get("published", 0),
        counts.get("expected:dead_letter", 0),
        totals.get("failed", 0),
        round(totals.get("sent", 0) / elapsed) if elapsed else 0,
    ]


def show_runs(limit: int) -> None:
    """The table of the newest `limit` runs, or where runs would be and how to start one."""
    manifests = list_runs()[:limit]
    if not manifests:
        terminal.info(f"no runs yet under {runs_root()}; start one with `workbench publish --count 1000`")
        return
    rows = [run_row(m) for m in manifests]
    terminal.out.print(terminal.table(f"runs in {runs_root()}", COLUMNS, rows, droppable=DROPPABLE))
    if any(r[2] == DEAD for r in rows):
        terminal.info(
            "dead: the manifest says running but its publisher is gone (killed, or the machine restarted); "
            "it will never finish"
        )
