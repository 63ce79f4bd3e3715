"""The terminal face of a reconcile: the verdict, the per-type and per-kind tables, latency, a sample of ids,
and, while `--wait` polls, a live line of what is still missing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from reconcile.report import PROBLEM_LABELS, SAMPLE, Report, latency_measures
from workbench import terminal


def _n(value: Any) -> int:
    return int(value or 0)


# Short headers for the per-type counts (reconcile.queries.BY_TYPE); a count the queries add later shows under
# its own name, spaced, with no change here.
TYPE_HEADERS = {
    "expected": "expected",
    "in_gcs": "in GCS",
    "in_bigquery": "in BQ",
    "missing": "missing",
    "gcs_duplicated": "GCS dup",
    "gcs_redelivered": "GCS redeliv",
    "bigquery_raw_duplicated": "BQ raw dup",
    "misplaced": "misplaced",
    "altered": "altered",
    "dead_lettered": "dead letters",
    "sink_gave_up": "sink gave up",
    "ok": "ok",
}


def type_columns(report: Report) -> list[str]:
    """The per-type counts in the queries' order (every key of the rows but the type)."""
    if not report.by_type:
        return list(TYPE_HEADERS)
    return [k for k in report.by_type[0] if k != "event_type"]


def type_table(report: Report):
    keys = type_columns(report)
    columns = ["type", *(TYPE_HEADERS.get(k, k.replace("_", " ")) for k in keys)]
    return terminal.table(
        "valid events, per type", columns, [[r["event_type"], *(_n(r.get(k)) for k in keys)] for r in report.by_type]
    )


def kind_table(report: Report):
    rows = [
        [
            r["kind"],
            r["reason"],
            _n(r["sent"]),
            _n(r["accepted"]),
            _n(r["expected_reason"]),
            _n(r["other_reason"]) and f"{_n(r['other_reason'])} ({r['other_codes']})",
            _n(r["missing"]),
            _n(r["bytes_altered"]),
        ]
        for r in report.by_kind
        if _n(r["ok"]) != _n(r["sent"])
    ]
    clean = sum(1 for r in report.by_kind if _n(r["ok"]) == _n(r["sent"]))
    sent = sum(_n(r["sent"]) for r in report.by_kind)
    title = f"malformed events: {sent:,} sent over {len(report.by_kind)} kinds, {clean} kinds all dead-lettered right"
    columns = ["kind", "expected reason", "sent", "ACCEPTED", "right reason", "other reason", "missing",
               "bytes altered"]  # fmt: skip
    return terminal.table(title, columns, rows, droppable=["expected reason"]) if rows else Text(title)


def latency_table(report: Report):
    return terminal.table(
        "publish -> each sink's own landed time (ms)",
        ["sink", "events", "p50", "p95", "p99", "max", "measures"],
        [
            [r["sink"], _n(r["n"]), _n(r["p50"]), _n(r["p95"]), _n(r["p99"]), _n(r["max"]), latency_measures(r["sink"])]
            for r in report.latency
        ],
        droppable=["measures"],
    )


def entry_table(report: Report):
    """Per place of the sink contract: which part of the pipeline loses (or changes) what."""
    rows = [
        [
            r["entry"],
            "" if r["expected"] is None else f"{r['expected']:,}",
            f"{r['held']:,}",
            "" if r["missing"] is None else f"{r['missing']:,}",
            f"{r['altered']:,}",
            f"{r['rows']:,}",
            f"{r['unexplained']:,}",
        ]
        for r in report.entries
    ]
    return terminal.table(
        f"per sink, contract: {escape(report.contract)}",
        ["sink", "expected", "held", "missing", "altered", "rows", "unexplained"],
        rows,
        droppable=["rows", "unexplained"],
    )


def problem_sample(report: Report) -> list[Any]:
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in report.problems:
        by_problem[p["problem"]].append(p)
    parts: list[Any] = []
    # In the labels' order of gravity; a problem the labels do not know yet comes last, under its own name.
    order = [p for p in PROBLEM_LABELS if p in by_problem] + [p for p in by_problem if p not in PROBLEM_LABELS]
    for problem in order:
        found = by_problem[problem]
        rows = [
            [
                p["event_id"],
                p["kind"] or p["event_type"],
                _n(p["gcs_copies"]),
                _n(p["bigquery_copies"]),
                _n(p["dlt_copies"]) + _n(p["dlq_copies"]),
                p["dead_letter_reasons"] or "",
                p["gcs_location"] or p["bigquery_location"] or f"published as message {p['message_id']}",
            ]
            for p in found[:SAMPLE]
        ]
        more = f" (first {SAMPLE} shown)" if len(found) > SAMPLE else ""
        parts.append(
            terminal.table(
                f"[red]{len(found):,} {PROBLEM_LABELS.get(problem, problem.replace('_', ' '))}[/red]{more}",
                ["event_id", "type / kind", "GCS", "BQ", "dead letters", "reasons", "last seen"],
                rows,
                droppable=["reasons", "type / kind"],
            )
        )
    if report.altered_fields:
        shown = report.altered_fields[:SAMPLE]
        more = f" (first {SAMPLE} shown; --json and --html have all)" if len(report.altered_fields) > SAMPLE else ""
        parts.append(
            terminal.table(
                f"[red]{len(report.altered_fields):,} altered fields[/red]{more}",
                ["event_id", "sink", "field", "published", "held"],
                [[r["event_id"], r["sink"], r["field"], str(r["published"]), str(r["held"])] for r in shown],
                droppable=["sink"],
            )
        )
    counts = {k: len(v) for k, v in report.findings.items()}
    if counts and counts != dict(report.problem_counts):
        # One defect can hide behind another (an order both misplaced and altered): name each with all its events.
        parts.append(
            terminal.table(
                "every diagnosis (an event can have several; the tables above show its gravest)",
                ["diagnosis", "events"],
                [[PROBLEM_LABELS.get(k, k.replace("_", " ")), n] for k, n in counts.items()],
            )
        )
    for title, found in (("unexpected: this run's id, never sent", report.unexpected),
                         ("foreign: no manifest knows them", report.foreign)):  # fmt: skip
        if found:
            parts.append(
                terminal.table(
                    f"[red]{len(found):,} {title}[/red]",
                    ["sink", "message_id", "event_id", "type", "where"],
                    [
                        [r["sink"], r["message_id"], r["event_id"], r["event_type"] or "", r["location"]]
                        for r in found[:SAMPLE]
                    ],
                    droppable=["type", "where"],
                )
            )
    return parts


def show(
    report: Report,
    output_root: str | None,
    dataset: str | None,
    explanation: str | None = None,
    written: Sequence[str] = (),
) -> None:
    """Print the whole report to the terminal (stdout), verdict last so it is what stays on screen.

    `explanation`: what the pipeline's own counters say about the mismatch (reconcile.pipeline_counters), shown
    with the verdict; `written`: the report files already written, listed before it.
    """
    out = terminal.out
    out.print(type_table(report))
    out.print(kind_table(report))
    if report.entries:
        out.print(entry_table(report))
    if report.latency:
        out.print(latency_table(report))
    for part in problem_sample(report):
        out.print(part)
    redelivered = sum(1 for r in report.raw_duplicates if _n(r.get("gcs_copies")) > 1)
    in_bigquery = sum(1 for r in report.raw_duplicates if _n(r.get("bigquery_copies")) > 1)
    if in_bigquery:
        terminal.warning(
            f"{in_bigquery:,} events have more than one row in the raw BigQuery tables (streaming inserts "
            "deduplicate best-effort); the *_deduped views show each once"
        )
    if redelivered:
        terminal.warning(
            f"{redelivered:,} events were written to the files more than once as the same message (at-least-once: "
            "redelivered after a crash or a lost ack); readers deduplicate on event_id"
        )
    gave_up = sum(_n(r.get("sink_gave_up")) for r in report.by_type)
    if gave_up:
        terminal.warning(
            f"{gave_up:,} valid events are not in a sink that stayed down past the pipeline's retry limit: that sink "
            "dead-lettered them (BIGQUERY_INSERT_FAILED / GCS_WRITE_FAILED) with their original bytes; they are "
            "not lost, replay them from the dead-letter topic"
        )
    for note in report.notes:
        terminal.warning(note)
    sizes = ", ".join(f"{k} {v:,}" for k, v in report.sizes.items())
    terminal.info(f"read: {sizes} in {report.elapsed_s:.1f} s ({report.engine})")
    look = []
    if output_root:
        look.append(f"files:   find {output_root} -name '*.json' | head")
    if dataset:
        look.append(f"rows:    SELECT * FROM {dataset}.orders_deduped WHERE run_id = '{report.run_id}' LIMIT 10")
        look.append(
            f"letters: SELECT reason, COUNT(*) FROM {dataset}.dead_letters WHERE run_id = '{report.run_id}' "
            "GROUP BY reason"
        )
        look.append('(queries: any BigQuery client; on the local stack after eval "$(workbench env)")')
    look.append(f"again:   workbench reconcile {report.run_id} --json report.json --html report.html")
    terminal.info("look further:\n  " + "\n  ".join(look))
    for line in written:
        terminal.info(line)
    if report.matched:
        terminal.success(report.headline())
    else:
        terminal.error(report.headline())
    if explanation:
        terminal.info(f"  [bold]why:[/bold] {escape(explanation)}")


def human_bytes(n: int) -> str:
    """Bytes as BigQuery bills them (binary units: 1 GiB = 2**30 bytes)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n:,} B"


def show_estimate(estimate: dict[str, Any]) -> None:
    """`reconcile --dry-run`: per statement, the bytes BigQuery would scan; then the total and what is left out."""
    rows = [[s["statement"], s["reads"], s["bytes"], human_bytes(s["bytes"])] for s in estimate["statements"]]
    total = sum(s["bytes"] for s in estimate["statements"])
    rows.append(["total", "", total, human_bytes(total)])
    terminal.out.print(
        terminal.table(
            f"run {estimate['run_id']}: what a reconcile would have BigQuery scan ({estimate['engine']} engine, "
            "dry runs: nothing was run)",
            ["statement", "reads", "bytes", "scanned"],
            rows,
            droppable=["reads"],
        )
    )
    for note in estimate["notes"]:
        terminal.info(note)
    terminal.success(f"dry run of run {estimate['run_id']}: {human_bytes(total)} would be scanned; nothing compared")


class WaitView:
    """A live line while --wait polls: what is still missing per sink, and the time left."""

    def __init__(self) -> None:
        self._live = Live(Text("reconciling..."), console=terminal.console, refresh_per_second=4, transient=True)

    def __enter__(self) -> WaitView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(*exc)

    def step(self, message: str) -> None:
        self._live.update(Text(message))

    def poll(self, report: Report | None, remaining: float, what: str) -> None:
        if report is None:
            self._live.update(Text(f"{what}; {max(0, remaining):.0f} s left"))
            return
        counts = report.problem_counts
        missing = ", ".join(f"{PROBLEM_LABELS.get(k, k)}: {v:,}" for k, v in counts.most_common()) or "nothing"
        self._live.update(
            Group(
                Text(f"{report.run_id}: still wrong: {missing}"),
                Text(f"sinks hold {report.sizes}; {max(0, remaining):.0f} s left", style="dim"),
            )
        )
