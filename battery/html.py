"""A self-contained HTML page of one `workbench check` (`--html FILE`): the scorecard, a section per scenario with
the evidence of each failure, and plots of publish -> sink latency and of the backlog over the run.

    >>> write_html(score(data), data, Path("check.html"))           # doctest: +SKIP

In the style of reconcile's page (reconcile/html.py, whose CSS and sink colours it shares): the CSS is inline, the
plots are SVG drawn here, there is no script and no external reference, so the page opens the same offline and
years later. Every string from the sinks (event ids, locations, reasons) is escaped.
"""

from __future__ import annotations

import html
import math
import pathlib
from typing import Any

from battery.model import BURST_SCENARIO, FAIL, ONCE, PASS, PROPERTIES, RUN_SCENARIO, SKIP, UNEXPECTED, CheckData
from battery.scorecard import PropertyResult, Scorecard, backlog_series, latency_series, timeline, title_of
from reconcile.html import CSS as RECONCILE_CSS
from reconcile.html import RED, SINK_COLOURS

STATUS_CLASS = {PASS: "pass", FAIL: "fail", SKIP: "skip"}
CSS = (
    RECONCILE_CSS
    + """
.passed{background:#2e8b57}.failed{background:#c0392b}
td.pass{background:#e3f4ea;color:#1e6b40;font-weight:600}td.fail{background:#fbe3e0;color:#a93226;font-weight:600}
td.skip{background:#fdf2dc;color:#8a5a00}td.na{color:#b0b8bf}
h3{font-size:15px;margin:18px 0 6px}.fix{color:#5f6b76}p.axis{margin:0;color:#5f6b76;font-size:12px}
"""
)
# The plots: one size for all, so that the run's plots and each scenario's line up when scrolled past.
WIDTH, HEIGHT = 860, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 32, 40


def _e(value: Any) -> str:
    return "" if value is None else html.escape(str(value))


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.3g} s" if abs(ms) < 100_000 else f"{ms / 1000:,.0f} s"


class Markup(str):
    """HTML built here (a link), put into a table as it is; every other cell is escaped."""


def _table(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    """A table; a cell may be (text, css class)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            text, klass = cell if isinstance(cell, tuple) else (cell, "")
            if isinstance(text, Markup):
                shown = str(text)
            else:
                shown = f"{text:,}" if isinstance(text, int) and not isinstance(text, bool) else _e(text)
            cells.append(f'<td class="{klass}">{shown}</td>' if klass else f"<td>{shown}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}>{f'<tr>{head}</tr>' if headers else ''}{''.join(body)}</table>"


def _slug(scenario: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in scenario)


def _anchor(scenario: str) -> str:
    return "scenario-" + _slug(scenario)


# -------------------------------------------------------------------------------------------------- the plots


def _step(span: float, ticks: int = 5) -> float:
    """A 1-2-5 step that cuts `span` into about `ticks` intervals."""
    raw = max(span, 1e-9) / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _tick(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:g}"


def line_chart(name: str, series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str,
               bands: list[tuple[float, float, str]] | None = None,
               limit: tuple[float, str] | None = None) -> str:  # fmt: skip
    """Lines over time, one per sink, on shared axes from 0; `bands` shade the scenarios' spans (start, end, name),
    `limit` draws a budget as a dashed red line when it falls within the plot. Each line is a <polyline
    class="series"> with data-sink and one point per value, in order."""
    bands = bands or []
    xs = [x for points in series.values() for x, _ in points] + [b for band in bands for b in band[:2]]
    ys = [y for points in series.values() for _, y in points]
    x_max = max(xs, default=1.0) or 1.0
    y_top = max(ys, default=0.0)
    if limit and limit[0] <= y_top * 1.5:
        y_top = max(y_top, limit[0])  # keep the budget in sight when the data come near it
    y_step = _step(y_top or 1.0, 4)
    y_max = y_step * math.ceil((y_top or 1.0) / y_step)
    x_step = _step(x_max, 8)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + x / x_max * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - y / y_max * plot_h

    parts = []
    for k, (start, end, label) in enumerate(bands):
        fill = "#eef2f5" if k % 2 == 0 else "#f7f9fa"
        # Short scenarios lie side by side: their names alternate between two lines, and the last ones end at
        # their band rather than run off the plot.
        anchor, x = ("end", px(end)) if px(start) > LEFT + 0.85 * plot_w else ("start", px(start) + 2)
        parts.append(f'<rect class="band" x="{px(start):.1f}" y="{TOP}" width="{max(px(end) - px(start), 1):.1f}" '
                     f'height="{plot_h}" fill="{fill}"><title>{_e(label)}</title></rect>'
                     f'<text class="band-label" x="{x:.1f}" y="{TOP - 5 - (k % 2) * 12}" text-anchor="{anchor}">'
                     f"{_e(label)}</text>")  # fmt: skip
    bottom = TOP + plot_h
    parts.append(f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{LEFT + plot_w}" y2="{bottom}" stroke="#888"/>')
    parts.append(f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#888"/>')
    for i in range(int(x_max / x_step) + 1):
        x = i * x_step
        parts.append(f'<line x1="{px(x):.1f}" y1="{bottom}" x2="{px(x):.1f}" y2="{bottom + 4}" stroke="#888"/>'
                     f'<text x="{px(x):.1f}" y="{bottom + 15}" text-anchor="middle">{_tick(x)}</text>')  # fmt: skip
    for i in range(round(y_max / y_step) + 1):
        y = i * y_step
        parts.append(f'<line x1="{LEFT - 4}" y1="{py(y):.1f}" x2="{LEFT + plot_w}" y2="{py(y):.1f}" stroke="#eceff1"/>'
                     f'<text x="{LEFT - 7}" y="{py(y) + 4:.1f}" text-anchor="end">{_tick(y)}</text>')  # fmt: skip
    parts.append(f'<text class="x-label" x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
                 f"{_e(x_label)}</text>")  # fmt: skip
    parts.append(f'<text class="y-label" x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {TOP + plot_h / 2})">{_e(y_label)}</text>')  # fmt: skip
    if limit and limit[0] <= y_max:
        parts.append(f'<line class="limit" x1="{LEFT}" y1="{py(limit[0]):.1f}" x2="{LEFT + plot_w}" '
                     f'y2="{py(limit[0]):.1f}" stroke="{RED}" stroke-dasharray="5,4"/>'
                     f'<text x="{LEFT + plot_w - 4}" y="{py(limit[0]) - 4:.1f}" text-anchor="end" '
                     f'style="fill:{RED}">{_e(limit[1])}</text>')  # fmt: skip
    for k, (sink, points) in enumerate(series.items()):
        colour = SINK_COLOURS.get(sink, ("#555", "#999", "#b03a2e")[k % 3])
        drawn = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(f'<polyline class="series" data-sink="{_e(sink)}" data-n="{len(points)}" points="{drawn}" '
                     f'fill="none" stroke="{colour}" stroke-width="1.6"/>')  # fmt: skip
    legend = "".join(f'<span><i style="background:{SINK_COLOURS.get(s, "#555")}"></i>{_e(s)}</span>' for s in series)
    svg = f'<svg class="chart {_e(name)}" width="{WIDTH}" height="{HEIGHT}" role="img">{"".join(parts)}</svg>'
    return f'<div class="legend">{legend}</div>{svg}'


def _bands(data: CheckData, t0: int) -> list[tuple[float, float, str]]:
    return [(p.started_ms / 1000 - t0, p.finished_ms / 1000 - t0, p.name) for p in data.phases if p.finished_ms]


def latency_chart(data: CheckData, scenario: str | None, name: str) -> str:
    """p95 publish -> landed per second of publish time, per sink; the latency budget as a line."""
    t0, _ = timeline(data)
    lines = {sink: [(p.second - t0, p.p95_ms / 1000) for p in points]
             for sink, points in latency_series(data, scenario).items()}  # fmt: skip
    if not lines:
        return "<p>no latency to plot: no landed time known for these events in any sink</p>"
    budget = data.budgets.latency_s
    bands = _bands(data, t0) if scenario is None else []
    return line_chart(name, lines, "seconds since the run's first publish (by publish time)",
                      "p95 publish → landed (s)", bands, (budget, f"budget {budget:g} s"))  # fmt: skip


def backlog_chart(data: CheckData, scenario: str | None, name: str) -> str:
    """Per sink, the events published so far and not yet landed there, per second of the whole run."""
    t0, _ = timeline(data)
    lines = {sink: [(p.second - t0, float(p.backlog)) for p in points]
             for sink, points in backlog_series(data, scenario).items()}  # fmt: skip
    if not lines:
        return "<p>no backlog to plot: no landed time known for these events in any sink</p>"
    return line_chart(name, lines, "seconds since the run's first publish", "published, not yet landed (events)",
                      _bands(data, t0))  # fmt: skip


# ------------------------------------------------------------------------------------------------ the sections


def _banner(card: Scorecard) -> str:
    tally = card.tally()
    verdict = "PASSED" if card.passed else "FAILED"
    words = f"{tally[PASS]} hold, {tally[FAIL]} fail, {tally[SKIP]} skipped"
    scenarios = [s for s in card.scenarios if s != RUN_SCENARIO]
    return (f'<div class="banner {verdict.lower()}"><b>{verdict}</b>run {_e(card.run_id)}: {words} '
            f"across {len(scenarios)} scenarios</div>")  # fmt: skip


def _facts(card: Scorecard, data: CheckData) -> str:
    valid = len({e.event_id for e in data.events if e.expected != "dead_letter"})
    malformed = len({e.event_id for e in data.events if e.expected == "dead_letter"})
    rows = [
        ["run id", data.run_id],
        ["pipeline", data.pipeline or "running elsewhere (only its sinks were read)"],
        ["sink contract", data.contract],
        ["promise", title_of(ONCE, data.promise)],
        ["sinks read", ", ".join(data.sinks) or "none"],
        ["sent", f"{valid:,} events, {malformed:,} malformed messages, {len(data.events):,} messages in all"],
        ["budgets", f"p95 latency {data.budgets.latency_s:g} s, burst drained within {data.budgets.drain_s:g} s"],
    ]
    return "<h2>Check</h2>" + _table([], rows)


def _cell(row: PropertyResult | None) -> Any:
    if row is None:
        return ("—", "na")
    return (row.status, STATUS_CLASS[row.status])


def _scorecard(card: Scorecard) -> str:
    """Scenario x property, coloured; a property a scenario is not judged on is a dash."""
    shown = [p for p in PROPERTIES if any(r.property == p for r in card.rows)]
    headers = ["scenario", *(title_of(p, card.promise) for p in shown)]
    rows = []
    for scenario in card.scenarios:
        if scenario == RUN_SCENARIO:
            continue
        link = Markup(f'<a href="#{_anchor(scenario)}">{_e(scenario)}</a>')
        rows.append([link, *(_cell(card.get(scenario, p)) for p in shown)])
    table = _table(headers, rows, "scorecard")
    run = card.get(RUN_SCENARIO, UNEXPECTED)
    tail = ""
    if run is not None:
        tail = _table([], [["whole run", run.title, _cell(run), run.summary]], "run-row")
    return "<h2>Scorecard</h2>" + table + tail


def _phases(card: Scorecard, data: CheckData) -> str:
    if not data.phases:
        return ""
    t0, _ = timeline(data)
    rows = [[p.name, f"{p.rate:g}/s", p.seed, p.sent, f"{p.started_ms / 1000 - t0:.1f} s",
             _seconds(p.finished_ms - p.started_ms)] for p in data.phases]  # fmt: skip
    return "<h2>Scenarios as published</h2>" + _table(["scenario", "rate", "seed", "sent", "started", "lasted"], rows)


def _evidence(row: PropertyResult) -> str:
    """What a failure (or a skip) rests on: counts, then the first events with where each was last seen."""
    head = f"<h3>{_e(row.title)}: {_e(row.status)}</h3><p>{_e(row.summary)}</p>"
    if row.fix:
        head += f'<p class="fix">fix: {_e(row.fix)}</p>'
    counts = _table(["count", "value"], [[k, v if isinstance(v, int) else str(v)] for k, v in row.counts.items()])
    if not row.samples:
        return head + counts
    samples = _table(["event id", "finding", "last seen", "detail"],
                     [[s.event_id, s.finding, s.last_seen, s.detail or ""] for s in row.samples])  # fmt: skip
    return head + counts + f"<p>the first {len(row.samples)} events:</p>" + samples


def _scenario_section(card: Scorecard, data: CheckData, scenario: str) -> str:
    rows = card.rows_of(scenario)
    overview = _table(["property", "status", "summary"], [[r.title, _cell(r), r.summary] for r in rows])
    detail = "".join(_evidence(r) for r in rows if r.status == FAIL or (r.status == SKIP and r.fix)
                     or (r.samples and r.status == PASS))  # fmt: skip
    if scenario == RUN_SCENARIO:
        return f'<h2 id="{_anchor(scenario)}">The whole run</h2>' + overview + detail
    plots = "<h3>latency over time</h3>" + latency_chart(data, scenario, f"latency latency-{_slug(scenario)}")
    if scenario == BURST_SCENARIO:
        plots += "<h3>backlog over time</h3>" + backlog_chart(data, scenario, f"backlog backlog-{_slug(scenario)}")
    return f'<h2 id="{_anchor(scenario)}">Scenario {_e(scenario)}</h2>' + overview + detail + plots


def _timeline(data: CheckData) -> str:
    latency = latency_chart(data, None, "latency latency-run")
    backlog = backlog_chart(data, None, "backlog backlog-run")
    return ("<h2>Publish → sink latency over the run (p95 per second, per sink)</h2>" + latency
            + "<h2>Backlog over the run (per sink)</h2>" + backlog)  # fmt: skip


def _notes(notes: list[str]) -> str:
    return "<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>" if notes else ""


def render_html(card: Scorecard, data: CheckData) -> str:
    """The whole page, one string."""
    sections = [
        _banner(card),
        _facts(card, data),
        _scorecard(card),
        _phases(card, data),
        _timeline(data),
        *(_scenario_section(card, data, s) for s in card.scenarios),
        _notes(data.notes),
    ]
    title = f"workbench check {card.run_id}: {'passed' if card.passed else 'failed'}"
    head = f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
    return head + f"<style>{CSS}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"


def write_html(card: Scorecard, data: CheckData, path: pathlib.Path) -> pathlib.Path:
    """Write the page to `path` (its folder is created) and return the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(card, data), encoding="utf-8")
    return path
