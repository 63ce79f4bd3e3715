"""A self-contained HTML page of one reconcile: for a person to read, attach to a ticket or keep with a run.

    >>> from reconcile.html import render_html, write_html
    >>> page = render_html(report.to_dict())                        # doctest: +SKIP
    >>> write_html(report.to_dict(), Path("reconcile.html"))        # doctest: +SKIP

The input is Report.to_dict() (reconcile/report.py). The page needs nothing else: the CSS is inline, the charts
are SVG drawn here, there is no script and no external reference, so it opens the same offline, in a mail
client or years later. Every string from the report is escaped: event ids and locations come from the sinks,
where anything may have been written.
"""

from __future__ import annotations

import html
import pathlib
from collections.abc import Collection
from datetime import datetime
from typing import Any

from reconcile.queries import HISTOGRAM_BUCKETS_MS
from reconcile.report import PROBLEM_LABELS, latency_measures

LIST_LIMIT = 200  # rows per list: enough to start an investigation, small enough for a browser
BEYOND = 999999999  # upper_ms of the histogram's last bucket (reconcile.queries.LATENCY_HISTOGRAM)
BAR_MAX = 420  # px of the longest bar; every bar of a chart is scaled against that chart's largest count
BAR_H, LABEL_W = 12, 190
RED, GREY, GREEN = "#c0392b", "#9aa5b1", "#2e8b57"
SINK_COLOURS = {"gcs": "#2f6fb0", "bigquery": "#3d9a50", "dead_letter_table": "#8e44ad", "dead_letter_topic": "#d68910"}
CSS = """
body{font:14px/1.45 system-ui,sans-serif;color:#1d2329;margin:24px auto;max-width:1100px;padding:0 16px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2e6;padding-bottom:4px}
.banner{padding:14px 18px;border-radius:6px;color:#fff;font-size:16px}
.banner b{font-size:22px;margin-right:12px}.matched{background:#2e8b57}.mismatch{background:#c0392b}
.why{margin-top:6px;font-size:14px}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;border-bottom:1px solid #eceff1;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}td.bad{color:#c0392b;font-weight:600}
th{background:#f4f6f7}code{font-size:12px}.more{color:#5f6b76;font-style:italic}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:11px;height:11px;
margin-right:4px;vertical-align:-1px}svg text{font:11px system-ui,sans-serif;fill:#1d2329}
"""


def _e(value: Any) -> str:
    """Escaped text of any value; None is shown as nothing."""
    return "" if value is None else html.escape(str(value))


def _n(value: Any) -> int:
    """A count: the queries give NULL (None) where nothing was counted."""
    return int(value or 0)


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value).replace("T", " ") if value else "—"


def _ms(ms: Any) -> str:
    """A latency for a person: 850 ms, 2.5 s, 3 min."""
    if ms is None:
        return "—"
    return f"{ms:,} ms" if ms < 1000 else f"{ms / 1000:.3g} s" if ms < 60_000 else f"{ms / 60_000:.3g} min"


def _width(n: int, most: int) -> float:
    return round(n / most * BAR_MAX, 1) if most else 0.0


def _table(headers: list[str], rows: list[list[Any]], numeric: Collection[int] = ()) -> str:
    """A table. Columns in `numeric` are right-aligned; a cell may be a (value, css class) pair, as _bad gives."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            value, cls = cell if isinstance(cell, tuple) else (cell, "")
            cls = f"{cls} n".strip() if i in numeric else cls
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _e(value)
            cells.append(f'<td class="{cls}">{shown}</td>' if cls else f"<td>{shown}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{f'<tr>{head}</tr>' if headers else ''}{''.join(body)}</table>"


def _bad(n: int) -> tuple[int, str]:
    """A count of failures: red when there are any."""
    return (n, "bad" if n else "")


def _legend(items: list[tuple[str, str]]) -> str:
    spans = "".join(f'<span><i style="background:{c}"></i>{_e(label)}</span>' for label, c in items)
    return f'<div class="legend">{spans}</div>'


def _bar_chart(name: str, groups: list[tuple[str, list[tuple[str, int, str]]]]) -> str:
    """Horizontal grouped bars, one group per label, one bar per (series, count, colour), all on one scale so
    that bars compare across groups. data-n carries the count so the width can be checked against it."""
    most = max((n for _, bars in groups for _, n, _ in bars), default=0)
    parts, y = [], 4
    for label, bars in groups:
        top = y
        for series, n, colour in bars:
            w = _width(n, most)
            # A red bar is a problem and the legend names no single one, so it says which beside its count.
            shown = f"{n:,} {_e(series)}" if colour == RED else f"{n:,}"
            parts.append(
                f'<rect class="bar" data-series="{_e(series)}" data-n="{n}" x="{LABEL_W}" y="{y}" width="{w}" '
                f'height="{BAR_H}" fill="{colour}"><title>{_e(label)}: {n:,} {_e(series)}</title></rect>'
                f'<text x="{LABEL_W + w + 4}" y="{y + BAR_H - 2}">{shown}</text>'
            )
            y += BAR_H + 2
        parts.append(f'<text x="{LABEL_W - 8}" y="{(top + y) / 2 + 3}" text-anchor="end">{_e(label)}</text>')
        y += 10
    width = LABEL_W + BAR_MAX + 110
    return f'<svg class="chart {name}" width="{width}" height="{y}" role="img">{"".join(parts)}</svg>'


def _stacked_chart(name: str, rows: list[tuple[str, list[tuple[str, int, str]]]]) -> str:
    """One horizontal bar per label, its segments side by side in the given order, all rows on one scale (the
    largest row total), so that many labels fit on a page. data-n carries each segment's count."""
    most = max((sum(n for _, n, _ in segments) for _, segments in rows), default=0)
    parts, y = [], 4
    for label, segments in rows:
        x = float(LABEL_W)
        for series, n, colour in segments:
            w = _width(n, most)
            parts.append(
                f'<rect class="bar" data-series="{_e(series)}" data-n="{n}" x="{x}" y="{y}" width="{w}" '
                f'height="{BAR_H}" fill="{colour}"><title>{_e(label)}: {n:,} {_e(series)}</title></rect>'
            )
            x += w
        # The count that matters first: failures in words when there are any, else the clean total.
        failing = [f"{n:,} {_e(series)}" for series, n, colour in segments if n and colour != GREEN]
        shown = ", ".join(failing) if failing else f"{sum(n for _, n, _ in segments):,}"
        parts.append(f'<text x="{x + 4}" y="{y + BAR_H - 2}">{shown}</text>')
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + BAR_H - 2}" text-anchor="end">{_e(label)}</text>')
        y += BAR_H + 4
    width = LABEL_W + BAR_MAX + 200
    return f'<svg class="chart {name}" width="{width}" height="{y}" role="img">{"".join(parts)}</svg>'


def _banner(report: dict[str, Any]) -> str:
    """The verdict in bold, once, then the headline without the word again; what the pipeline's own counters
    say about the mismatch beneath (reconcile.pipeline_counters), when they say anything."""
    verdict = "matched" if report.get("verdict") == "matched" else "mismatch"
    headline = str(report.get("headline") or "").replace(f"{verdict.upper()}: ", "", 1)
    why = (report.get("pipeline_counts") or {}).get("explanation")
    explained = f'<div class="why">why: {_e(why)}</div>' if why else ""
    return f'<div class="banner {verdict}"><b>{verdict.upper()}</b>{_e(headline)}{explained}</div>'


def _flat(d: dict[str, Any] | None) -> str:
    """key: value pairs; a key with no value (None: a plan with a duration has no count) is left out."""
    return ", ".join(f"{k}: {v}" for k, v in (d or {}).items() if v is not None)


def _facts(report: dict[str, Any]) -> str:
    run = report.get("run") or {}
    checked = report.get("checked") or {}
    rows = [
        ["run id", report.get("run_id")],
        ["status", run.get("status")],
        ["window", f"{_when(run.get('started_at'))} → {_when(run.get('finished_at'))}"],
        ["target", _flat(run.get("target"))],
        ["totals", _flat(run.get("totals"))],
        ["plan", _flat(run.get("plan"))],
        ["sinks checked", ", ".join(s for s, on in checked.items() if on) or "none"],
        ["sinks not checked", ", ".join(s for s, on in checked.items() if not on) or "none"],
        ["rows read", _flat(report.get("sizes"))],
        ["engine", f"{report.get('engine')}, {report.get('elapsed_s') or 0:.1f} s, exit {report.get('exit_code')}"],
    ]
    return "<h2>Run</h2>" + _table([], rows)


BY_TYPE_FAILING = ("missing", "misplaced", "altered", "gcs_duplicated")  # what fails a valid event, drawn red
# Malformed outcomes, worst first: a malformed event accepted into an event sink is the worst failure of a run.
BY_KIND_SERIES = [("accepted", RED), ("missing", "#e67e22"), ("other_reason", "#e5b80b"), ("expected_reason", GREEN)]


def _by_type(rows: list[dict[str, Any]]) -> str:
    title = "<h2>Valid events by type</h2>"
    if not rows:
        return title + "<p>no valid events</p>"
    series = [("expected", GREY), ("in_gcs", SINK_COLOURS["gcs"]), ("in_bigquery", SINK_COLOURS["bigquery"])]
    groups = []
    for r in rows:
        bars = [(s.replace("_", " "), _n(r.get(s)), c) for s, c in series]
        # A problem gets a bar only when there is one, so a clean type reads as three equal bars.
        bars += [(p.replace("_", " "), _n(r.get(p)), RED) for p in BY_TYPE_FAILING if _n(r.get(p))]
        groups.append((r.get("event_type"), bars))
    legend = _legend([(s.replace("_", " "), c) for s, c in series] + [("problem", RED)])
    # dead_lettered too is a failure here: a valid event in a dead-letter sink was rejected.
    failing = {*BY_TYPE_FAILING, "dead_lettered"}
    # Every count of the rows, in the queries' order: a count added to reconcile.queries.BY_TYPE shows unchanged.
    columns = [c for c in rows[0] if c != "event_type"]
    table = [
        [r.get("event_type")] + [_bad(_n(r.get(c))) if c in failing else _n(r.get(c)) for c in columns] for r in rows
    ]
    headers = ["event type", *(c.replace("_", " ") for c in columns)]
    return title + legend + _bar_chart("by-type", groups) + _table(headers, table, range(1, len(columns) + 1))


def _by_kind(rows: list[dict[str, Any]]) -> str:
    title = "<h2>Malformed events by kind</h2>"
    if not rows:
        return title + "<p>no malformed events</p>"
    groups = [(r.get("kind"), [(s.replace("_", " "), _n(r.get(s)), c) for s, c in BY_KIND_SERIES]) for r in rows]
    legend = _legend([(s.replace("_", " "), c) for s, c in BY_KIND_SERIES])
    columns = [
        "kind",
        "reason",
        "sent",
        "accepted",
        "expected_reason",
        "other_reason",
        "other_codes",
        "missing",
        "bytes_altered",
        "ok",
    ]
    failing = {"accepted", "other_reason", "missing", "bytes_altered"}
    numeric = {i for i, c in enumerate(columns) if c not in ("kind", "reason", "other_codes")}
    table = [
        [
            _bad(_n(r.get(c))) if c in failing else _n(r.get(c)) if i in numeric else r.get(c)
            for i, c in enumerate(columns)
        ]
        for r in rows
    ]
    headers = [c.replace("_", " ") for c in columns]
    return title + legend + _stacked_chart("by-kind", groups) + _table(headers, table, numeric)


def _bucket_label(upper_ms: int) -> str:
    return f"≤{_ms(upper_ms)}" if upper_ms < BEYOND else f">{_ms(HISTOGRAM_BUCKETS_MS[-1])}"


def _histogram(rows: list[dict[str, Any]]) -> str:
    """One line per sink over the buckets, evenly spaced: the 1-2-5 buckets are log-spaced already. Each sink
    is drawn as its share of its own events, so a sink holding more rows does not flatten the others."""
    if not rows:
        # The histogram covers the event sinks (reconcile.queries.LATENCY_HISTOGRAM); the table above may still
        # hold the dead_letters table's latency.
        return "<p>no histogram: none of this run's events landed in GCS or BigQuery with a publish time</p>"
    buckets = sorted({*HISTOGRAM_BUCKETS_MS, BEYOND, *(_n(r.get("upper_ms")) for r in rows)})
    counts: dict[str, dict[int, int]] = {}
    for r in rows:
        counts.setdefault(r.get("sink") or "?", {})[_n(r.get("upper_ms"))] = _n(r.get("n"))
    shares = {s: {b: n / (sum(c.values()) or 1) for b, n in c.items()} for s, c in counts.items()}
    top = max(v for share in shares.values() for v in share.values()) or 1
    left, step, height = 40, 56, 160
    xs = [left + i * step + step / 2 for i in range(len(buckets))]  # the centre of each bucket
    parts = [f'<line x1="{left}" y1="{height}" x2="{left + len(buckets) * step}" y2="{height}" stroke="#888"/>']
    parts += [
        f'<text x="{x}" y="{height + 14}" text-anchor="middle">{_e(_bucket_label(b))}</text>'
        for x, b in zip(xs, buckets, strict=True)
    ]
    parts.append(f'<text x="{left - 4}" y="12" text-anchor="end">{top:.0%}</text>')
    legend = []
    for k, sink in enumerate(sorted(shares)):
        colour = SINK_COLOURS.get(sink, ("#555", "#999", "#b03a2e")[k % 3])
        ys = [height - shares[sink].get(b, 0) / top * (height - 8) for b in buckets]
        points = " ".join(f"{x:.0f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        parts.append(
            f'<polyline class="series" data-sink="{_e(sink)}" points="{points}" fill="none" stroke="{colour}" '
            f'stroke-width="2"/>'
        )
        legend.append((f"{sink} ({sum(counts[sink].values()):,} rows)", colour))
    width = left + len(buckets) * step
    svg = f'<svg class="chart histogram" width="{width}" height="{height + 22}" role="img">{"".join(parts)}</svg>'
    return _legend(legend) + svg


def _latency(report: dict[str, Any]) -> str:
    rows = [
        [
            r.get("sink"),
            _n(r.get("n")),
            *(_ms(r.get(q)) for q in ("p50", "p95", "p99", "max")),
            latency_measures(r.get("sink") or ""),
        ]
        for r in report.get("latency") or []
    ]
    # Each sink's landed time is its own metadata's, not one moment for all: the last column says which.
    title = "<h2>Latency, publish to landed (each sink's own landed time)</h2>"
    if not rows:
        return title + "<p>no latencies measured</p>"
    table = _table(["sink", "n", "p50", "p95", "p99", "max", "measures"], rows, range(1, 6))
    return title + table + _histogram(report.get("histogram") or [])


def _listing(title: str, rows: list[dict[str, Any]], columns: list[str], note: str = "", lead: str = "") -> str:
    """The first LIST_LIMIT rows of a list, and how many more there are."""
    if not rows:
        return f"<h2>{_e(title)}</h2><p>none</p>"
    counted = {i for i, c in enumerate(columns) if c.endswith("copies")}
    shown = [[_n(r.get(c)) if i in counted else r.get(c) for i, c in enumerate(columns)] for r in rows[:LIST_LIMIT]]
    more = f'<p class="more">… and {len(rows) - LIST_LIMIT:,} more</p>' if len(rows) > LIST_LIMIT else ""
    header = f"<h2>{_e(title)} ({len(rows):,})</h2>" + (f"<p>{_e(note)}</p>" if note else "") + lead
    return header + _table([c.replace("_", " ") for c in columns], shown, counted) + more


def _problems(report: dict[str, Any]) -> str:
    counts = report.get("problem_counts") or {}
    # In PROBLEM_LABELS order, the report's order of gravity; a problem unknown to it comes last.
    order = [p for p in PROBLEM_LABELS if p in counts] + [p for p in counts if p not in PROBLEM_LABELS]
    summary = _table(["problem", "events"], [[PROBLEM_LABELS.get(p, p), _bad(_n(counts[p]))] for p in order], {1})
    columns = [
        "problem",
        "event_id",
        "event_type",
        "kind",
        "reason",
        "message_id",
        "gcs_copies",
        "bigquery_copies",
        "dlt_copies",
        "dlq_copies",
        "dead_letter_reasons",
        "gcs_location",
        "bigquery_location",
    ]
    return _listing("Problems", report.get("problems") or [], columns, lead=summary if counts else "")


def _pipeline_counts(counts: dict[str, Any] | None) -> str:
    """What the pipeline's own record (its dedup journal) said about this run, when it said anything
    (reconcile.pipeline_counters)."""
    if not counts or not counts.get("sources"):
        return ""
    rows = [
        ["this run's valid events in no event sink", _n(counts.get("not_in_any_sink"))],
        ["of those, ids the pipeline had already let through as another message", _n(counts.get("repeats"))],
    ]
    sources = "".join(f"<li><code>{_e(s)}</code></li>" for s in counts["sources"])
    return "<h2>What the pipeline counted</h2>" + _table([], rows, {1}) + f"<p>read from</p><ul>{sources}</ul>"


def _entries(report: dict[str, Any]) -> str:
    """Per place of the sink contract: which part of the pipeline loses (or changes) what."""
    rows = report.get("entries") or []
    if not rows:
        return ""
    shown = [[r["entry"], "" if r["expected"] is None else _n(r["expected"]), _n(r["held"]),
              "" if r["missing"] is None else _bad(_n(r["missing"])), _bad(_n(r["altered"])), _n(r["rows"]),
              _bad(_n(r["unexplained"]))] for r in rows]  # fmt: skip
    title = f"<h2>Per sink (contract: {_e(report.get('contract'))})</h2>"
    return title + _table(["sink", "expected", "held", "missing", "altered", "rows", "unexplained"], shown,
                          range(1, 7))  # fmt: skip


def _altered_fields(rows: list[dict[str, Any]]) -> str:
    """Every altered field, published value beside the sink's (all of them: the terminal shows a sample)."""
    if not rows:
        return ""
    shown = [[r["event_id"], r["sink"], r["field"], r["published"], r["held"]] for r in rows]
    return f"<h2>Altered fields ({len(rows):,})</h2>" + _table(["event_id", "sink", "field", "published", "held"],
                                                              shown)  # fmt: skip


def _findings(found: dict[str, list[str]]) -> str:
    """Every diagnosis with every event it hit (problems shows each event's gravest one)."""
    if not found:
        return ""
    summary = _table(["finding", "events"], [[PROBLEM_LABELS.get(k, k), _bad(len(ids))] for k, ids in found.items()],
                     {1})  # fmt: skip
    lists = "".join(f"<details><summary>{_e(PROBLEM_LABELS.get(k, k))}: event ids</summary><p>{_e(' '.join(ids))}"
                    "</p></details>" for k, ids in found.items())  # fmt: skip
    return "<h2>Every diagnosis, with all the events it hit</h2>" + summary + lists


def _notes(notes: list[str]) -> str:
    return "<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>" if notes else ""


def render_html(report: dict[str, Any]) -> str:
    """The whole page, one string."""
    sinks = ["sink", "event_id", "message_id", "event_type", "location"]
    raw_duplicates = ["event_id", "event_type", "gcs_copies", "bigquery_copies"]
    foreign_note = "allowed: foreign producers do not fail this run" if report.get("allow_foreign") else ""
    sections = [
        _banner(report),
        _facts(report),
        _pipeline_counts(report.get("pipeline_counts")),
        _by_type(report.get("by_type") or []),
        _by_kind(report.get("by_kind") or []),
        _latency(report),
        _entries(report),
        _problems(report),
        _altered_fields(report.get("altered_fields") or []),
        _findings(report.get("findings") or {}),
        _listing(
            "Raw duplicates: BigQuery rows, GCS redeliveries (not failing)",
            report.get("raw_duplicates") or [],
            raw_duplicates,
        ),
        _listing("Unexpected (this run's id, never sent)", report.get("unexpected") or [], sinks),
        _listing("Foreign (no known run)", report.get("foreign") or [], [*sinks, "run_id"], foreign_note),
        _notes(report.get("notes") or []),
    ]
    title = f"reconcile {report.get('run_id')}: {report.get('verdict')}"
    head = f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
    return head + f"<style>{CSS}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"


def write_html(report: dict[str, Any], path: pathlib.Path) -> pathlib.Path:
    """Write the page to `path` (its folder is created) and return the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path
