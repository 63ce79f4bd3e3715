"""`workbench runs`: the publish runs recorded under $WORKBENCH_HOME/runs, newest first."""

from __future__ import annotations

import click

from publisher.manifest import list_runs, runs_root
from workbench import terminal


@click.command()
@click.option("--limit", type=int, default=20, show_default=True, help="Show at most this many runs.")
def runs(limit: int) -> None:
    """List publish runs with their status, target and counts."""
    manifests = list_runs()[:limit]
    if not manifests:
        terminal.info(f"no runs yet under {runs_root()}; start one with `workbench publish --count 1000`")
        return
    rows = []
    for m in manifests:
        target = m.get("target", {})
        where = {"file": target.get("path"), "s3": target.get("run_prefix") or target.get("uri")}.get(
            target.get("kind"), target.get("topic")
        )
        totals = m.get("totals", {})
        counts = m.get("counts", {})
        elapsed = m.get("elapsed_s") or 0
        rows.append(
            [
                m.get("run_id", "?"),
                m.get("started_at", "")[:19].replace("T", " "),
                m.get("status", "?"),
                where or "?",
                totals.get("published", 0),
                counts.get("expected:dead_letter", 0),
                totals.get("failed", 0),
                round(totals.get("sent", 0) / elapsed, 1) if elapsed else 0.0,
            ]
        )
    terminal.out.print(
        terminal.table(
            f"runs in {runs_root()}",
            ["run id", "started (UTC)", "status", "to", "published", "malformed", "failed", "msg/s"],
            rows,
        )
    )
