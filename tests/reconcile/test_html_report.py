"""reconcile.html: the self-contained HTML page of a reconcile, from hand-built Report.to_dict() dicts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from reconcile.html import BAR_MAX, LIST_LIMIT, RED, render_html, write_html

HOSTILE = "<script>alert('x')</script>"
VOID = {"meta", "br", "hr", "img", "input", "link"}


def _base(**overrides: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "run_id": "r-20240501-abc",
        "verdict": "matched",
        "exit_code": 0,
        "headline": "run r-20240501-abc: all 130 events accounted for (gcs, bigquery)",
        "elapsed_s": 1.25,
        "engine": "duckdb",
        "notes": [],
        "allow_foreign": False,
        "run": {
            "status": "completed",
            "started_at": "2024-05-01T10:00:00Z",
            "finished_at": datetime(2024, 5, 1, 10, 5, 0, 123456, tzinfo=UTC),
            "target": {"kind": "pubsub", "project": "demo", "topic": "events"},
            "totals": {"sent": 130, "published": 130, "failed": 0, "in_flight": 0},
            "plan": {"rate": 50, "count": 130, "workers": 1},
        },
        "checked": {"gcs": True, "bigquery": True, "dead_letter_table": False, "dead_letter_topic": False},
        "by_type": [
            _type_row("order_placed", 100, 100, 100),
            _type_row("page_viewed", 25, 25, 25),
        ],
        "by_kind": [],
        "problems": [],
        "problem_counts": {},
        "raw_duplicates": [],
        "unexpected": [],
        "foreign": [],
        "latency": [
            {"sink": "bigquery", "n": 125, "p50": 40, "p95": 120, "p99": 300, "max": 900},
            {"sink": "gcs", "n": 100, "p50": 1500, "p95": 4000, "p99": 9000, "max": 61_000},
        ],
        "histogram": [
            {"sink": "bigquery", "upper_ms": 50, "n": 100},
            {"sink": "bigquery", "upper_ms": 200, "n": 25},
            {"sink": "gcs", "upper_ms": 2000, "n": 75},
            {"sink": "gcs", "upper_ms": 999999999, "n": 25},
        ],
        "sizes": {"files": 12, "gcs": 125, "bigquery": 125, "dead_letter_table": 0, "dead_letter_topic": 0},
    }
    report.update(overrides)
    return report


def _type_row(event_type: str, expected: int, in_gcs: int | None, in_bigquery: int | None, **bad: Any) -> dict:
    row = {"event_type": event_type, "expected": expected, "in_gcs": in_gcs, "in_bigquery": in_bigquery}
    row |= {k: None for k in ("missing", "gcs_duplicated", "bigquery_raw_duplicated", "misplaced", "altered")}
    row |= {"dead_lettered": None, "ok": expected} | bad
    return row


def _problem(problem: str, event_id: str, **extra: Any) -> dict[str, Any]:
    row = {"problem": problem, "event_id": event_id, "expected": "gcs,bigquery", "event_type": "order_placed"}
    row |= {"kind": None, "reason": None, "message_id": "m-1", "gcs_copies": None, "bigquery_copies": 1}
    row |= {"dlt_copies": None, "dlq_copies": None, "dead_letter_reasons": None}
    return row | {"gcs_location": None, "bigquery_location": "events.order_placed"} | extra


def _mismatch() -> dict[str, Any]:
    problems = [
        _problem("accepted", "e-accepted-1", expected="dead_letter", kind="truncated_json", reason="PARSE_ERROR"),
        _problem("missing", "e-missing-1", bigquery_copies=None),
        _problem("misplaced", HOSTILE, gcs_copies=1, gcs_location="gcs/page_viewed/202405011000/x.jsonl"),
        _problem("duplicated", "e-dup-1", gcs_copies=2),
    ]
    return _base(
        verdict="mismatch",
        exit_code=1,
        headline="run r-20240501-abc: MISMATCH: 1 malformed event accepted into an event sink; 1 missing",
        notes=[f"note with {HOSTILE}"],
        by_type=[
            _type_row("order_placed", 80, 79, None, missing=1, misplaced=1, ok=77, gcs_duplicated=1),
            _type_row("page_viewed", 40, 40, 40),
            _type_row("cart_updated", 0, None, None, ok=None),
        ],
        by_kind=[
            {
                "kind": "truncated_json",
                "reason": "PARSE_ERROR",
                "sent": 10,
                "accepted": 1,
                "expected_reason": 8,
                "other_reason": None,
                "other_codes": None,
                "missing": 1,
                "bytes_altered": None,
                "ok": 8,
            },
            {
                "kind": "bad_enum",
                "reason": "SCHEMA",
                "sent": 5,
                "accepted": None,
                "expected_reason": 5,
                "other_reason": None,
                "other_codes": None,
                "missing": None,
                "bytes_altered": None,
                "ok": 5,
            },
        ],
        problems=problems,
        problem_counts={"accepted": 1, "missing": 1, "misplaced": 1, "duplicated": 1},
        unexpected=[
            {
                "sink": "gcs",
                "event_id": "e-unexpected-1",
                "message_id": "m-9",
                "event_type": "order_placed",
                "location": "gcs/x.jsonl",
            }
        ],
        foreign=[
            {
                "sink": "bigquery",
                "event_id": "e-foreign-1",
                "message_id": "m-7",
                "event_type": HOSTILE,
                "location": "events.order_placed",
                "run_id": None,
            }
        ],
    )


class _Elements(HTMLParser):
    """Every element with its attributes and the class of the <svg> it sits in; checks tags open and close."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None], str]] = []
        self.stack: list[str] = []
        self.chart = ""
        self.unbalanced: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg":
            self.chart = dict(attrs).get("class") or ""
        self.elements.append((tag, dict(attrs), self.chart))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), self.chart))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.unbalanced.append(tag)
        if tag == "svg":
            self.chart = ""


def _parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    parser.close()
    return parser


def _bars(page: str, chart: str) -> list[dict[str, str | None]]:
    return [a for tag, a, c in _parse(page).elements if tag == "rect" and chart in c.split()]


@pytest.mark.parametrize("report", [_base(), _mismatch()], ids=["matched", "mismatch"])
def test_one_self_contained_document(report: dict[str, Any]) -> None:
    page = render_html(report)
    parsed = _parse(page)
    tags = [tag for tag, _, _ in parsed.elements]
    assert page.startswith("<!DOCTYPE html>")
    assert tags.count("html") == tags.count("head") == tags.count("body") == 1
    assert parsed.unbalanced == [] and parsed.stack == []
    lowered = page.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "<script" not in lowered and "<link" not in lowered and " src=" not in lowered
    assert tags.count("svg") >= 2  # the per-type chart and the latency histogram at least


def test_matched_banner_and_run_facts() -> None:
    page = render_html(_base())
    assert '<div class="banner matched"><b>MATCHED</b>' in page
    assert "MISMATCH" not in page
    assert "all 130 events accounted for" in page
    # Both timestamp forms: a manifest string and a datetime.
    assert "2024-05-01 10:00:00Z → 2024-05-01 10:05:00+00:00" in page
    assert "topic: events" in page and "published: 130" in page
    for event_type in ("order_placed", "page_viewed"):
        assert event_type in page
    assert "no malformed events" in page


def test_mismatch_names_verdict_types_kinds_and_problems() -> None:
    page = render_html(_mismatch())
    assert '<div class="banner mismatch"><b>MISMATCH</b>' in page
    for name in ("order_placed", "page_viewed", "cart_updated", "truncated_json", "bad_enum"):
        assert name in page
    for event_id in ("e-accepted-1", "e-missing-1", "e-dup-1", "e-unexpected-1", "e-foreign-1"):
        assert event_id in page
    assert "malformed event accepted into an event sink" in page  # the problem summary uses the labels
    assert "Problems (4)" in page and "Unexpected (this run&#x27;s id, never sent) (1)" in page
    assert "None" not in page  # a None count is shown as 0, a None text as nothing


def test_hostile_strings_are_escaped() -> None:
    page = render_html(_mismatch())
    assert HOSTILE not in page and "<script" not in page
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    assert page.count(escaped) == 3  # the misplaced event id, the foreign event type, the note


def test_by_type_bar_widths_are_proportional_to_counts() -> None:
    bars = _bars(render_html(_mismatch()), "by-type")
    counts = [int(b["data-n"] or 0) for b in bars]
    widths = [float(b["width"] or 0) for b in bars]
    assert max(counts) == 80
    for n, width in zip(counts, widths, strict=True):
        assert width == pytest.approx(n / 80 * BAR_MAX, abs=0.1)
    # order_placed's problems are drawn as red bars; a clean type has only expected / in GCS / in BigQuery.
    red = [b["data-series"] for b in bars if b["fill"] == RED]
    assert red == ["missing", "misplaced", "gcs duplicated"]
    assert len(bars) == 3 + 3 + 3 + 3
    # None counts (cart_updated, order_placed's BigQuery) are zero-width bars.
    assert [w for n, w in zip(counts, widths, strict=True) if n == 0] == [0.0] * 4


def test_by_kind_bars_put_accepted_first_and_red() -> None:
    bars = _bars(render_html(_mismatch()), "by-kind")
    assert [b["data-series"] for b in bars[:4]] == ["accepted", "missing", "other reason", "expected reason"]
    assert bars[0]["fill"] == RED and bars[4]["fill"] == RED
    assert all(b["fill"] != RED for b in bars if b["data-series"] != "accepted")
    # One stacked bar per kind, every row on the scale of the largest row total.
    widths = {(i // 4, b["data-series"]): float(b["width"] or 0) for i, b in enumerate(bars)}
    totals = [sum(int(b["data-n"] or 0) for b in bars[i : i + 4]) for i in range(0, len(bars), 4)]
    most = max(totals)
    assert widths[(0, "expected reason")] == pytest.approx(8 / most * BAR_MAX, abs=0.1)
    assert widths[(0, "accepted")] == pytest.approx(1 / most * BAR_MAX, abs=0.1)
    assert widths[(1, "expected reason")] == pytest.approx(5 / most * BAR_MAX, abs=0.1)
    assert widths[(1, "accepted")] == 0.0  # None
    # Segments sit side by side: each starts where the one before it ends.
    for i in range(0, len(bars), 4):
        row = bars[i : i + 4]
        for before, after in itertools.pairwise(row):
            assert float(after["x"]) == pytest.approx(float(before["x"]) + float(before["width"] or 0), abs=0.01)


def test_histogram_draws_one_series_per_sink_with_a_legend() -> None:
    page = render_html(_base())
    elements = _parse(page).elements
    series = {a["data-sink"]: a["points"] or "" for tag, a, c in elements if tag == "polyline" and "histogram" in c}
    assert set(series) == {"bigquery", "gcs"}
    assert "bigquery (125 rows)" in page and "gcs (100 rows)" in page
    # bigquery: 100 of 125 at <=50 ms is the tallest point of the chart (the smallest y); gcs peaks at <=2 s.
    heights = {sink: [float(p.split(",")[1]) for p in points.split()] for sink, points in series.items()}
    assert min(heights["bigquery"]) == min(min(h) for h in heights.values())
    assert heights["bigquery"].index(min(heights["bigquery"])) == 2  # buckets 10, 20, 50 ms
    assert heights["gcs"].index(min(heights["gcs"])) == 7  # ... 100, 200, 500, 1000, 2000 ms
    # Heights are shares of each sink's rows against the tallest share (0.8), on a 152 px scale above y=160.
    assert min(heights["bigquery"]) == pytest.approx(160 - 152)
    assert min(heights["gcs"]) == pytest.approx(160 - 0.75 / 0.8 * 152)
    assert heights["gcs"][-1] == pytest.approx(160 - 0.25 / 0.8 * 152)  # 25 of 100 beyond the last bucket
    assert "&gt;10 min" in page  # the bucket beyond the last
    assert "1.5 s" in page and "1.02 min" in page  # the latency table in readable units


def test_long_lists_stop_at_the_limit_and_say_how_many_more() -> None:
    problems = [_problem("missing", f"e-{i:04d}") for i in range(LIST_LIMIT + 7)]
    page = render_html(_mismatch() | {"problems": problems, "problem_counts": {"missing": len(problems)}})
    assert f"e-{LIST_LIMIT - 1:04d}" in page and f"e-{LIST_LIMIT:04d}" not in page
    assert "… and 7 more" in page
    assert f"Problems ({LIST_LIMIT + 7:,})" in page


def test_write_html_writes_the_page(tmp_path: Path) -> None:
    report = _mismatch()
    path = write_html(report, tmp_path / "reports" / "reconcile.html")
    assert path == tmp_path / "reports" / "reconcile.html"
    assert path.read_text(encoding="utf-8") == render_html(report)


def _banner(page: str) -> str:
    return page[page.index('<div class="banner') : page.index("</div>", page.index('<div class="banner'))]


def test_the_mismatch_banner_says_mismatch_once() -> None:
    page = render_html(_mismatch())
    banner = _banner(page)
    assert banner.count("MISMATCH") == 1, banner
    assert "1 malformed event accepted into an event sink; 1 missing" in banner


def test_a_plan_value_that_is_none_is_left_out() -> None:
    """A run planned by duration has no count: `count: None` said nothing."""
    report = _mismatch()
    report["run"] = report["run"] | {"plan": {"rate": 500, "count": None, "duration_s": 60}}
    page = render_html(report)
    assert "rate: 500, duration_s: 60" in page
    assert "None" not in page and "count:" not in page


def test_latency_rows_without_a_histogram_do_not_say_no_latencies() -> None:
    """The histogram covers the event sinks; a run with only dead letters landed has latencies, no histogram."""
    latency = [{"sink": "dead_letter_table", "n": 15, "p50": 40, "p95": 90, "p99": 120, "max": 130}]
    page = render_html(_mismatch() | {"latency": latency, "histogram": []})
    assert "dead_letter_table" in page and "no latencies measured" not in page
    assert "no histogram: none of this run's events landed in GCS or BigQuery" in page
    bare = render_html(_mismatch() | {"latency": [], "histogram": []})
    section = bare[bare.index("Latency, publish to landed") :]
    assert "no latencies measured" in section and "<th>p50</th>" not in section


def test_the_pipelines_own_counts_explain_the_mismatch() -> None:
    why = "9,470 of the 9,470 events in no sink have ids the pipeline had already let through as another message"
    counts = {"run_id": "r-20240501-abc", "not_in_any_sink": 9470, "repeats": 9470,
              "sources": ["/home/u/.workbench/pipeline/dedup-p-s.tsv"], "explanation": why}  # fmt: skip
    page = render_html(_mismatch() | {"pipeline_counts": counts})
    assert "why: 9,470 of the 9,470 events in no sink" in _banner(page)
    assert "What the pipeline counted" in page and "dedup-p-s.tsv" in page and "9,470" in page
    # Nothing said when the pipeline's records say nothing.
    quiet = counts | {"sources": [], "explanation": None, "repeats": 0}
    assert "why:" not in render_html(_mismatch() | {"pipeline_counts": quiet})
    assert "What the pipeline counted" not in render_html(_mismatch() | {"pipeline_counts": quiet})


def test_a_per_type_count_added_later_gets_a_column() -> None:
    rows = [_type_row("order_placed", 10, 9, 9, ok=9) | {"held_by_earlier_run": 1}]
    page = render_html(_mismatch() | {"by_type": rows})
    assert "<th>held by earlier run</th>" in page


def test_the_page_shows_each_contract_entry_every_altered_field_and_every_finding():
    altered = [{"event_id": f"e{i}", "sink": "bigquery:orders", "field": f"items[{i}].price", "published": "14.99",
                "held": "15.0"} for i in range(LIST_LIMIT + 5)]  # fmt: skip
    page = render_html(_base(
        contract="shop (flattened)",
        entries=[{"entry": "bigquery:orders", "expected": 10, "held": 9, "missing": 1, "altered": 2, "rows": 9,
                  "unexplained": 0}],
        altered_fields=altered,
        findings={"misplaced": ["e1", "e2"], "duplicated": ["e3"]},
    ))  # fmt: skip
    assert "contract: shop (flattened)" in page and "bigquery:orders" in page
    assert all(f"items[{i}].price" in page for i in range(LIST_LIMIT + 5))  # all of them, not a sample
    assert "e1 e2" in page and "duplicated" in page
