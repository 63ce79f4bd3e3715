"""The terminal scorecard of `workbench check` (workbench.check_view): every row's verdict, and each failure's
evidence with the events it names, on a narrow terminal too."""

from __future__ import annotations

from battery_samples import full_battery
from rich.console import Console

from battery.scorecard import score
from workbench.check_view import evidence, scorecard_table


def _render(renderable, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_a_failure_shows_its_events_and_where_each_was_last_seen_even_at_60_columns():
    run, ids = full_battery()
    run.drop(ids["steady"][3], "bigquery").find("missing_in_bigquery", ids["steady"][3])
    card = score(run.data())
    table = _render(scorecard_table(card, run.data()), 60)
    assert "FAIL" in table and "PASS" in table and "burst" in table
    row = card.get("steady", "complete")
    shown = _render(evidence(row), 60)
    assert ids["steady"][3] in shown
    assert row.samples[0].last_seen.split(":")[0] in shown  # where it was last seen (the GCS file)
