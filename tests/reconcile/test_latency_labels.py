"""What each sink's latency measures is said where the latency is shown (issue #20, item 12).

The BigQuery latency is publish -> the insertAll request that landed the row (pipeline.bigquery stamps
ingest_time there; test_bigquery_throttling checks the stamp against the requests a proxy saw). GCS's is the
object's update time, the dead_letters table's the insert request that landed the letter. The HTML report names each.
"""

from __future__ import annotations

import html
import re

from reconcile.html import render_html
from reconcile.report import LATENCY_MEASURES, Report, latency_measures

ROWS = [
    {"sink": "bigquery", "n": 125, "p50": 40, "p95": 120, "p99": 300, "max": 900},
    {"sink": "dead_letter_table", "n": 7, "p50": 30, "p95": 60, "p99": 70, "max": 80},
    {"sink": "gcs", "n": 100, "p50": 1500, "p95": 4000, "p99": 9000, "max": 61_000},
]


def _report() -> dict:
    return {
        "run_id": "r-1", "verdict": "matched", "exit_code": 0, "headline": "run r-1: all accounted for",
        "elapsed_s": 1.0, "engine": "duckdb", "notes": [], "allow_foreign": False,
        "run": {"status": "completed", "totals": {"sent": 232}}, "checked": {"gcs": True, "bigquery": True},
        "by_type": [], "by_kind": [], "problems": [], "problem_counts": {}, "raw_duplicates": [], "unexpected": [],
        "foreign": [], "latency": ROWS, "histogram": [], "sizes": {},
    }  # fmt: skip


def test_every_event_and_dead_letter_sink_says_what_its_latency_measures():
    assert set(LATENCY_MEASURES) == {"gcs", "bigquery", "dead_letter_table"}
    assert "insert request" in latency_measures("bigquery")
    assert "update time" in latency_measures("gcs")
    assert "insert request" in latency_measures("dead_letter_table")
    assert "own landed time" in latency_measures("some_new_sink")


def test_the_html_latency_table_names_what_each_row_measures():
    page = render_html(_report())
    section = page[page.index("Latency, publish to landed") :]
    for row in ROWS:
        cells = re.search(rf"<tr><td>{row['sink']}</td>(.*?)</tr>", section)
        assert cells, row["sink"]
        assert latency_measures(row["sink"]) in html.unescape(cells.group(1)), (row["sink"], cells.group(1))
    assert "<th>measures</th>" in section


def test_the_json_report_carries_what_each_latency_measures():
    report = Report(run_id="r-1", run={}, checked={}, by_type=[], by_kind=[], problems=[], raw_duplicates=[],
                    unexpected=[], foreign=[], latency=ROWS, histogram=[], sizes={})  # fmt: skip
    assert report.to_dict()["latency_measures"] == {r["sink"]: LATENCY_MEASURES[r["sink"]] for r in ROWS}


def _terminal_text(width: int) -> str:
    from rich.console import Console

    from workbench.reconcile_view import latency_table

    report = Report(run_id="r-1", run={}, checked={}, by_type=[], by_kind=[], problems=[], raw_duplicates=[],
                    unexpected=[], foreign=[], latency=ROWS, histogram=[], sizes={})  # fmt: skip
    console = Console(width=width, record=True, force_terminal=False)
    console.print(latency_table(report))
    return console.export_text()


def test_the_terminal_latency_table_names_what_each_row_measures_and_drops_it_when_narrow():
    wide = _terminal_text(200)
    assert "measures" in wide
    assert "insert request" in wide and "update time" in wide
    narrow = _terminal_text(60)
    assert "p99" in narrow and "insert request" not in narrow
