"""battery.html: the check's self-contained page, parsed back with html.parser: its sections, the coloured scorecard,
each failure's evidence, and the SVG plots' points against the series they draw."""

from __future__ import annotations

import itertools
from html.parser import HTMLParser
from pathlib import Path

from battery_samples import full_battery

from battery.html import BOTTOM, HEIGHT, LEFT, TOP, render_html, write_html
from battery.model import Budgets
from battery.scorecard import backlog_series, latency_series, score

BOTTOM_Y = HEIGHT - BOTTOM  # where the value 0 sits
VOID = {"meta", "br", "hr", "img", "input", "link"}


class _Page(HTMLParser):
    """Every element with its attributes and the section (the id of the last <h2>, else its text) it sits in; the
    text of each section; tags that do not close in order."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None], str]] = []
        self.text: dict[str, list[str]] = {}
        self.headings: list[str] = []
        self.section = ""
        self.stack: list[str] = []
        self.unbalanced: list[str] = []
        self.svg_texts: dict[str, list[tuple[dict[str, str | None], str]]] = {}  # chart class -> its <text>s
        self._in_h2 = False
        self._chart = ""
        self._text_attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "h2":
            self._in_h2 = True
            self.section = found.get("id") or ""
        if tag == "svg":
            self._chart = found.get("class") or ""
        if tag == "text":
            self._text_attrs = found
        self.elements.append((tag, found, self.section))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), self.section))

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False
        if tag == "svg":
            self._chart = ""
        if not self.stack or self.stack.pop() != tag:
            self.unbalanced.append(tag)

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings.append(data)
            if not self.section:
                self.section = data
        self.text.setdefault(self.section, []).append(data)
        if self._chart and self.stack and self.stack[-1] == "text":
            self.svg_texts.setdefault(self._chart, []).append((self._text_attrs, data))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a, _ in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def in_section(self, section: str, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a, s in self.elements if t == tag and s == section]

    def section_text(self, section: str) -> str:
        return "".join(self.text.get(section, []))


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert not parser.unbalanced and not parser.stack
    return parser


def _points(polyline: dict[str, str | None]) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (p.split(",") for p in (polyline["points"] or "").split())]


def _chart(page: _Page, name: str) -> list[dict[str, str | None]]:
    """The polylines of the <svg> whose classes include `name`, in order."""
    found, inside = [], False
    for tag, attrs, _ in page.elements:
        if tag == "svg":
            inside = name in (attrs.get("class") or "").split()
        elif tag == "polyline" and inside:
            found.append(attrs)
    return found


def _failing_run():
    run, ids = full_battery(budgets=Budgets(latency_s=1.5, drain_s=10))  # GCS lands in 2 s: over budget
    gone = ids["steady"][3]
    run.drop(gone).find("missing", gone)
    run.slow(ids["burst"][10:], "gcs", 12_000)
    run.unexpected.append({"sink": "gcs", "event_id": "<script>alert(1)</script>", "message_id": "m",
                           "location": "output/<u>x</u>.json"})  # fmt: skip
    return run, ids, gone


def test_the_page_has_the_scorecard_the_plots_and_a_section_per_scenario() -> None:
    run, _, _ = _failing_run()
    data = run.data()
    card = score(data)
    page = _parse(render_html(card, data))
    assert page.headings[:5] == ["Check", "Scorecard", "Scenarios as published",
                                 "Publish → sink latency over the run (p95 per second, per sink)",
                                 "Backlog over the run (per sink)"]  # fmt: skip
    sections = [a["id"] for a in page.find("h2") if a.get("id")]
    assert sections == [f"scenario-{s}" for s in card.scenarios]
    # the scorecard: a row per scenario, linked to its section; a cell per property, coloured by its status
    links = [a["href"] for a in page.in_section("Scorecard", "a")]
    assert links == [f"#scenario-{s}" for s in card.scenarios if s != "run"]
    cells = [a.get("class") for a in page.in_section("Scorecard", "td") if a.get("class") in ("pass", "fail", "skip")]
    assert cells.count("fail") == len([r for r in card.rows if r.status == "fail"])
    assert cells.count("pass") == len([r for r in card.rows if r.status == "pass"])
    assert len(page.in_section("Scorecard", "td")) > len(cells)  # the dashes of properties not judged
    assert "FAILED" in page.section_text("")  # the banner, before any section


def test_a_failure_gives_its_evidence_in_its_scenario_section() -> None:
    run, _, gone = _failing_run()
    data = run.data()
    page = _parse(render_html(score(data), data))
    steady = page.section_text("scenario-steady")
    assert "complete: fail" in steady and "1 of 20 events missing" in steady
    assert gone in steady and "published as message m-steady-3, seen in no sink" in steady
    assert "missing" in page.section_text("scenario-steady")
    burst = page.section_text("scenario-burst")
    assert "kept up with the burst: fail" in burst and "burst-029" in burst
    # hostile strings from the sinks are text, never markup
    assert "<script>alert(1)</script>" in page.section_text("scenario-run")
    assert not page.find("script") and not page.find("u")
    assert "output/<u>x</u>.json" in page.section_text("scenario-run")


def test_the_latency_plot_has_a_point_per_second_per_sink_and_the_budget_line() -> None:
    run, _, _ = _failing_run()
    data = run.data()
    page = _parse(render_html(score(data), data))
    lines = _chart(page, "latency-run")
    series = latency_series(data)
    assert [a["data-sink"] for a in lines] == list(series) == ["bigquery", "dead_letter_table", "gcs"]
    top = max(p.p95_ms for points in series.values() for p in points)
    scale = (BOTTOM_Y - min(y for line in lines for _, y in _points(line))) / top
    for line in lines:
        points = _points(line)
        values = [p.p95_ms for p in series[line["data-sink"]]]
        assert len(points) == len(values) == int(line["data-n"])
        assert all(a[0] < b[0] for a, b in itertools.pairwise(points))  # in time order
        assert all(x >= LEFT for x, _ in points) and all(TOP <= y <= BOTTOM_Y for _, y in points)
        # each point's height above the axis is its p95, every sink on one scale (coordinates keep 0.1 px)
        assert all(abs(BOTTOM_Y - y - v * scale) <= 0.1 for (_, y), v in zip(points, values, strict=True))
    assert max(p.p95_ms for p in series["gcs"]) == 12_000  # the burst's slow copies, plotted
    # the y axis's labels (seconds) sit where a point of that value would: the plot reads true against its axis
    ticks = [(float(t), float(a["y"])) for a, t in page.svg_texts["chart latency latency-run"]
             if a.get("text-anchor") == "end" and a.get("x") == str(LEFT - 7)]  # fmt: skip
    assert len(ticks) >= 3 and ticks[0][0] == 0 and ticks[-1][1] - 4 == TOP  # the axis spans the plot's height
    assert all(abs(BOTTOM_Y - (y - 4) - seconds * 1000 * scale) <= 0.15 for seconds, y in ticks)
    assert page.find("line", **{"class": "limit"}), "the 1.5 s budget is within the plot"
    labels = [t for t in page.text["Publish → sink latency over the run (p95 per second, per sink)"]]
    assert "p95 publish → landed (s)" in labels and "seconds since the run's first publish (by publish time)" in labels
    bands = [t for t in labels if t in {p.name for p in run.phases}]
    assert bands == [p.name for p in run.phases for _ in ("title", "label")]  # a band's tooltip, then its label


def test_the_backlog_plot_has_a_point_per_second_and_drains_to_zero() -> None:
    run, _ = full_battery()
    data = run.data()
    page = _parse(render_html(score(data), data))
    series = backlog_series(data)
    for line in _chart(page, "backlog-run"):
        points = _points(line)
        assert len(points) == len(series[line["data-sink"]])
        assert points[-1][1] == BOTTOM_Y  # everything landed: no backlog at the end
    burst = _chart(page, "backlog-burst")
    assert [a["data-sink"] for a in burst] == ["bigquery", "gcs"]  # the burst sent no malformed message
    assert page.text["Backlog over the run (per sink)"].count("published, not yet landed (events)") == 1


def test_without_landed_times_there_is_nothing_to_plot_and_the_skip_says_the_fix() -> None:
    run, _ = full_battery(with_lags=False)
    data = run.data()
    page = _parse(render_html(score(data), data))
    assert not page.find("polyline")
    assert "no latency to plot" in page.section_text("Publish → sink latency over the run (p95 per second, per sink)")
    assert "fix: map metadata.publish_time" in page.section_text("scenario-steady")


def test_write_html_creates_its_folder(tmp_path: Path) -> None:
    run, _ = full_battery()
    data = run.data()
    written = write_html(score(data), data, tmp_path / "reports" / "check.html")
    page = written.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<title>workbench check 20261201-102000-ab12: passed</title>" in page
    assert "http" not in page.replace('xmlns="http', "")  # self-contained: no external reference
