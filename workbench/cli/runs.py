"""`workbench runs`: the publish runs recorded under $WORKBENCH_HOME/runs, newest first.

The status is publisher.manifest.run_state's, the one reconcile gives: a run whose manifest still says running
but whose publisher is gone shows as dead. On a narrow terminal the counts stay whole; the destination and the
rate go first (the table's caption says so).
"""

from __future__ import annotations

import click


@click.command()
@click.option("--limit", type=int, default=20, show_default=True, help="Show at most this many runs.")
def runs(limit: int) -> None:
    """List publish runs with their status, target and counts."""
    from workbench.run_list import show_runs

    show_runs(limit)
