"""The scorecard of one `workbench check`: each property judged per scenario from what the check gathered.

    >>> card = score(data)                      # data: battery.model.CheckData          # doctest: +SKIP
    >>> card.exit_code, [(r.scenario, r.property, r.status) for r in card.rows]          # doctest: +SKIP

Pure: the input is a CheckData (one reconcile of the whole run, the manifest's events, each copy's lag), the output
plain values. Which property a scenario is judged on follows from what it sent:

| property | judged for | fails on (reconcile findings of the scenario's events) |
| --- | --- | --- |
| complete | scenarios with valid events | missing, missing_in_gcs, missing_in_bigquery |
| once | scenarios with valid events | duplicated, id_reused (at-least-once: extra copies are only evidence) |
| unchanged | scenarios with valid events | altered (with the fields, reconcile.altered) |
| placed | scenarios with valid events | misplaced, collision |
| malformed | scenarios with malformed messages | any finding of one: accepted, other_reason, missing*, altered |
| late_placed | LATE_SCENARIOS | misplaced or missing (placed by their own time, none lost) |
| latency | every scenario | p95 of landed - publish, per sink, over the budget |
| burst | BURST_SCENARIO | its last event landed in a sink more than the drain budget after it ended, or never |

Rows of no scenario (report["unexpected"], report["foreign"] unless allowed, findings of ids the manifest does not
list) are one row of RUN_SCENARIO, property UNEXPECTED. Exit code: 0 when nothing fails (skips do not), else 1.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from battery.model import (
    BURST,
    BURST_SCENARIO,
    COMPLETE,
    FAIL,
    LATE_PLACED,
    LATE_SCENARIOS,
    LATENCY,
    MALFORMED,
    ONCE,
    PASS,
    PLACED,
    PROPERTIES,
    RUN_SCENARIO,
    SKIP,
    UNCHANGED,
    UNEXPECTED,
    Budgets,
    CheckData,
    Lag,
    Phase,
    SentEvent,
)
from reconcile.contract import AT_LEAST_ONCE
from reconcile.queries import DEAD_LETTER, DEAD_LETTER_SINKS, DEAD_LETTER_TOPIC, EVENT_SINKS

SAMPLES = 10  # event ids named per failing property: enough to start looking, few enough to read

# Where a finding of a valid event counts. Every diagnosis reconcile can make is named here
# (tests/battery/test_scorecard.py holds this to reconcile.report.PROBLEM_LABELS), so none is silently dropped.
VALID_FINDINGS: dict[str, str] = {
    "missing": COMPLETE,
    "missing_in_gcs": COMPLETE,
    "missing_in_bigquery": COMPLETE,
    "duplicated": ONCE,
    "id_reused": ONCE,
    "altered": UNCHANGED,
    "misplaced": PLACED,
    "collision": PLACED,
    # Diagnoses of malformed messages only; a valid event never earns them, but should one, it is not lost.
    "accepted": MALFORMED,
    "other_reason": MALFORMED,
    "missing_in_dead_letter_table": MALFORMED,
    "missing_in_dead_letter_topic": MALFORMED,
    "missing_in_dead_letter_files": MALFORMED,
}
# Late data is placed by its own time: a misplaced or lost late event is what the property is about.
LATE_FINDINGS = ("misplaced", "missing", "missing_in_gcs", "missing_in_bigquery")
MISSING_FINDINGS = (
    "missing",
    "missing_in_gcs",
    "missing_in_bigquery",
    "missing_in_dead_letter_table",
    "missing_in_dead_letter_topic",
    "missing_in_dead_letter_files",
)
NO_LAG_FIX = (
    "map metadata.publish_time and metadata.landed_time of each sink in the sink contract (docs/your-pipeline.md); "
    "the built-in pipeline's sinks carry both"
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One event named as evidence: which finding, and where it was last seen."""

    event_id: str
    finding: str
    last_seen: str
    detail: str | None = None  # the altered fields, published beside held


@dataclass
class PropertyResult:
    scenario: str
    property: str
    status: str  # PASS | FAIL | SKIP
    title: str  # what the property is called in reports and JUnit: "exactly-once", "at-least-once", ...
    summary: str  # one line
    counts: dict[str, int | float] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    fix: str | None = None  # a skip: what would make the property measurable

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Scorecard:
    run_id: str
    contract: str
    promise: str
    rows: list[PropertyResult]
    phases: list[Phase] = field(default_factory=list)
    budgets: Budgets = field(default_factory=Budgets)

    @property
    def passed(self) -> bool:
        return all(r.status != FAIL for r in self.rows)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def scenarios(self) -> list[str]:
        """Scenario names in the order of the rows (publish order, the run row last)."""
        return list(dict.fromkeys(r.scenario for r in self.rows))

    def rows_of(self, scenario: str) -> list[PropertyResult]:
        return [r for r in self.rows if r.scenario == scenario]

    def get(self, scenario: str, prop: str) -> PropertyResult | None:
        return next((r for r in self.rows if r.scenario == scenario and r.property == prop), None)

    def tally(self) -> dict[str, int]:
        counted = Counter(r.status for r in self.rows)
        return {s: counted.get(s, 0) for s in (PASS, FAIL, SKIP)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "contract": self.contract,
            "promise": self.promise,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "tally": self.tally(),
            "budgets": asdict(self.budgets),
            "scenarios": self.scenarios,
            "rows": [r.to_dict() for r in self.rows],
        }


# ------------------------------------------------------------------------------------------------ the scorecard


def score(data: CheckData) -> Scorecard:
    """Every property of every scenario, then the run's own row."""
    facts = _Facts(data)
    rows: list[PropertyResult] = []
    for scenario in facts.scenarios:
        rows += _scenario_rows(facts, scenario)
    rows.append(_run_row(facts))
    return Scorecard(data.run_id, data.contract, data.promise, rows, list(data.phases), data.budgets)


def applies(scenario: str, events: list[SentEvent]) -> list[str]:
    """The properties `scenario` is judged on, in PROPERTIES order, from the messages it sent."""
    valid = any(e.expected != DEAD_LETTER for e in events)
    malformed = any(e.expected == DEAD_LETTER for e in events)
    wanted = {LATENCY}
    if valid:
        wanted |= {COMPLETE, ONCE, UNCHANGED, PLACED}
    if malformed:
        wanted.add(MALFORMED)
    if scenario in LATE_SCENARIOS and valid:
        wanted.add(LATE_PLACED)
    if scenario == BURST_SCENARIO:
        wanted.add(BURST)
    return [p for p in PROPERTIES if p in wanted]


def title_of(prop: str, promise: str) -> str:
    """The name people read for a property (the JUnit testcase name)."""
    if prop == ONCE:
        return "at-least-once" if promise == AT_LEAST_ONCE else "exactly-once"
    return TITLES[prop]


TITLES = {
    COMPLETE: "complete",
    UNCHANGED: "unchanged",
    PLACED: "placed right",
    MALFORMED: "malformed handled as promised",
    LATE_PLACED: "late data placed by its own time",
    LATENCY: "p95 latency within budget",
    BURST: "kept up with the burst",
    UNEXPECTED: "no rows the run never sent",
}


class _Facts:
    """The CheckData indexed once: events by scenario, findings by event, problem rows and lags by event."""

    def __init__(self, data: CheckData) -> None:
        self.data = data
        self.by_scenario: dict[str, list[SentEvent]] = defaultdict(list)
        self.scenario_of: dict[str, str] = {}
        self.order: dict[str, int] = {}
        for i, e in enumerate(data.events):
            self.by_scenario[e.scenario].append(e)
            self.scenario_of.setdefault(e.event_id, e.scenario)
            self.order.setdefault(e.event_id, i)
        self.malformed_ids = {e.event_id for e in data.events if e.expected == DEAD_LETTER}
        named = [p.name for p in data.phases]
        self.scenarios = list(dict.fromkeys([*named, *self.by_scenario]))
        self.phase = {p.name: p for p in data.phases}
        report = data.report
        self.findings: dict[str, list[str]] = defaultdict(list)  # event id -> its findings, in report order
        for finding, ids in (report.get("findings") or {}).items():
            for event_id in ids:
                self.findings[event_id].append(finding)
        self.problem = {p["event_id"]: p for p in report.get("problems") or [] if p.get("event_id")}
        self.altered: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for a in report.get("altered_fields") or []:
            self.altered[a.get("event_id")].append(a)
        self.lags: dict[str, list[Lag]] = defaultdict(list)
        for lag in data.lags:
            self.lags[lag.event_id].append(lag)
        # Copies per event and sink where there are more than one: from each copy's lag, or reconcile's raw
        # duplicates when the sink records no landed time (the larger of the two: a copy without a lag is a copy).
        held = Counter((lag.event_id, lag.sink) for lag in data.lags)
        self.copies: dict[str, dict[str, int]] = defaultdict(dict)
        for (event_id, sink), n in held.items():
            if n > 1:
                self.copies[event_id][sink] = n
        for raw in report.get("raw_duplicates") or []:
            for sink in EVENT_SINKS:
                n = int(raw.get(f"{sink}_copies") or 0)
                if n > max(1, held[(raw.get("event_id"), sink)]):
                    self.copies[raw.get("event_id")][sink] = n
        self._ids: dict[tuple[str, bool | None], list[str]] = {}
        self.message_of = {e.event_id: e.message_id for e in data.events if e.message_id and not e.duplicate}

    def ids(self, scenario: str, malformed: bool | None = None) -> list[str]:
        """The scenario's distinct event ids in publish order; malformed: only those (True) or only valid (False)."""
        if (scenario, malformed) not in self._ids:
            events = self.by_scenario.get(scenario, [])
            chosen = (e.event_id for e in events if malformed is None or (e.expected == DEAD_LETTER) == malformed)
            self._ids[(scenario, malformed)] = list(dict.fromkeys(chosen))
        return self._ids[(scenario, malformed)]

    def property_of(self, event_id: str, finding: str, judged: Iterable[str]) -> str:
        """The property a finding of this event counts against, among those its scenario is judged on."""
        if event_id in self.malformed_ids:
            return MALFORMED  # a malformed message is handled as promised, or not: every finding of it says how
        prop = VALID_FINDINGS.get(finding, COMPLETE)
        return prop if prop in judged else COMPLETE

    def last_seen(self, event_id: str) -> str:
        """Where the event was last seen: each sink that held it and where, or the message no sink holds."""
        row = self.problem.get(event_id)
        if row is None:
            held = Counter(lag.sink for lag in self.lags.get(event_id, []))
            if held:
                return "; ".join(f"{sink}: {_copies(n)}" for sink, n in sorted(held.items()))
            return f"published as message {self.message_of.get(event_id) or '?'}, seen in no sink"
        seen = []
        for sink in EVENT_SINKS:
            n = int(row.get(f"{sink}_copies") or 0)
            if n:
                seen.append(f"{sink}: {row.get(f'{sink}_location') or '?'}" + (f" ({_copies(n)})" if n > 1 else ""))
        letters = int(row.get("dlt_copies") or 0) + int(row.get("dlq_copies") or 0)
        if letters:
            seen.append(f"dead letter: reason {row.get('dead_letter_reasons') or '?'}")
        if seen:
            return "; ".join(seen)
        return f"published as message {row.get('message_id') or self.message_of.get(event_id) or '?'}, seen in no sink"

    def altered_detail(self, event_id: str) -> str | None:
        fields = self.altered.get(event_id)
        if not fields:
            return None
        shown = "; ".join(f"{a.get('sink')} {a.get('field')}: {a.get('published')!r} -> {a.get('held')!r}"
                          for a in fields[:3])  # fmt: skip
        return shown + (f"; and {len(fields) - 3} more fields" if len(fields) > 3 else "")

    def sample(self, event_id: str, finding: str) -> Sample:
        detail = self.altered_detail(event_id) if "altered" in finding else None
        return Sample(event_id, finding, self.last_seen(event_id), detail)

    def first(self, event_ids: Iterable[str]) -> list[str]:
        return sorted(set(event_ids), key=lambda e: (self.order.get(e, len(self.order)), e))[:SAMPLES]


def _copies(n: int) -> str:
    return f"{n} copies" if n != 1 else "1 copy"


def _scenario_rows(facts: _Facts, scenario: str) -> list[PropertyResult]:
    events = facts.by_scenario.get(scenario, [])
    judged = applies(scenario, events)
    # The findings of this scenario's events, each under the property it counts against.
    hits: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))  # property -> event -> findings
    for event_id in facts.ids(scenario):
        for finding in facts.findings.get(event_id, []):
            hits[facts.property_of(event_id, finding, judged)][event_id].append(finding)
    rows = []
    for prop in judged:
        if prop in (COMPLETE, UNCHANGED, PLACED):
            rows.append(_findings_row(facts, scenario, prop, hits[prop]))
        elif prop == ONCE:
            rows.append(_once_row(facts, scenario, hits[prop]))
        elif prop == MALFORMED:
            rows.append(_malformed_row(facts, scenario, hits[prop]))
        elif prop == LATE_PLACED:
            rows.append(_late_row(facts, scenario))
        elif prop == LATENCY:
            rows.append(_latency_row(facts, scenario))
        elif prop == BURST:
            rows.append(_burst_row(facts, scenario))
    return rows


def _row(facts: _Facts, scenario: str, prop: str, status: str, summary: str, counts: dict[str, Any],
         samples: list[Sample] | None = None, fix: str | None = None) -> PropertyResult:  # fmt: skip
    title = title_of(prop, facts.data.promise)
    return PropertyResult(scenario, prop, status, title, summary, counts, samples or [], fix)


def _evidence(facts: _Facts, failing: dict[str, list[str]]) -> tuple[Counter[str], list[Sample]]:
    """Counts per finding, and the first events (publish order) with where each was last seen."""
    per_finding = Counter(f for found in failing.values() for f in dict.fromkeys(found))
    samples = [facts.sample(e, ", ".join(dict.fromkeys(failing[e]))) for e in facts.first(failing)]
    return per_finding, samples


def _by_finding(per_finding: Counter[str]) -> str:
    return ", ".join(f"{n:,} {finding.replace('_', ' ')}" for finding, n in per_finding.most_common())


NOUNS = {COMPLETE: "missing", UNCHANGED: "altered", PLACED: "misplaced"}
HOLDS = {
    COMPLETE: "every sink holds all {n:,} events",
    UNCHANGED: "all {n:,} events held as published",
    PLACED: "all {n:,} events in their own folder, file and table",
}


def _findings_row(facts: _Facts, scenario: str, prop: str, failing: dict[str, list[str]]) -> PropertyResult:
    n = len(facts.ids(scenario, malformed=False))
    per_finding, samples = _evidence(facts, failing)
    counts: dict[str, Any] = {"events": n, "failing": len(failing), **per_finding}
    if prop == UNCHANGED:
        counts["fields"] = sum(len(facts.altered.get(e, [])) for e in failing)
    if not failing:
        return _row(facts, scenario, prop, PASS, HOLDS[prop].format(n=n), counts)
    summary = f"{len(failing):,} of {n:,} events {NOUNS[prop]}"
    if set(per_finding) != {NOUNS[prop]}:  # which findings, when they say more than the noun
        summary += f": {_by_finding(per_finding)}"
    if prop == UNCHANGED:
        fields = Counter(f"{a.get('sink')} {a.get('field')}" for e in failing for a in facts.altered.get(e, []))
        if fields:
            summary += "; fields " + ", ".join(f"{name} ({k:,})" for name, k in fields.most_common(3))
    return _row(facts, scenario, prop, FAIL, summary, counts, samples)


def _extra_copies(facts: _Facts, event_ids: list[str]) -> dict[str, dict[str, int]]:
    """Copies beyond the first, per event and sink."""
    return {e: {sink: n - 1 for sink, n in facts.copies[e].items()} for e in event_ids if e in facts.copies}


def _once_row(facts: _Facts, scenario: str, failing: dict[str, list[str]]) -> PropertyResult:
    ids = facts.ids(scenario, malformed=False)
    resent = sum(1 for e in facts.by_scenario.get(scenario, []) if e.duplicate)
    extra = _extra_copies(facts, ids)
    per_sink: Counter[str] = Counter()
    for more in extra.values():
        per_sink.update(more)
    per_finding, samples = _evidence(facts, failing)
    counts: dict[str, Any] = {"events": len(ids), "resent": resent, "failing": len(failing), **per_finding,
                              "extra_copies": sum(per_sink.values()), "events_with_copies": len(extra)}  # fmt: skip
    copies = ", ".join(f"{sink} {n:,}" for sink, n in sorted(per_sink.items()))
    if failing:
        title = title_of(ONCE, facts.data.promise)
        summary = f"{len(failing):,} of {len(ids):,} events not held {title}: {_by_finding(per_finding)}"
        return _row(facts, scenario, ONCE, FAIL, summary, counts, samples)
    if facts.data.promise == AT_LEAST_ONCE:
        # At-least-once promises no more: copies are what it allows, shown so that their volume is seen.
        if not extra:
            return _row(facts, scenario, ONCE, PASS, f"all {len(ids):,} events held, no extra copies", counts)
        shown = [Sample(e, "extra copies", facts.last_seen(e)) for e in facts.first(extra)]
        summary = (f"{sum(per_sink.values()):,} extra copies of {len(extra):,} events ({copies}), allowed by "
                   "the at-least-once promise")  # fmt: skip
        return _row(facts, scenario, ONCE, PASS, summary, counts, shown)
    summary = f"each of {len(ids):,} events held once" + (f" ({resent:,} re-sent)" if resent else "")
    if extra:
        summary += f"; {sum(per_sink.values()):,} raw copies of one message ({copies}), which reconcile allows"
    return _row(facts, scenario, ONCE, PASS, summary, counts)


def _malformed_row(facts: _Facts, scenario: str, failing: dict[str, list[str]]) -> PropertyResult:
    ids = facts.ids(scenario, malformed=True)
    kinds = Counter(e.kind or "?" for e in facts.by_scenario.get(scenario, []) if e.expected == DEAD_LETTER)
    per_finding, samples = _evidence(facts, failing)
    counts: dict[str, Any] = {"messages": len(ids), "kinds": len(kinds), "failing": len(failing), **per_finding}
    if not failing:
        summary = f"all {len(ids):,} malformed messages ({len(kinds)} kinds) handled as the contract promises"
        return _row(facts, scenario, MALFORMED, PASS, summary, counts)
    summary = f"{len(failing):,} of {len(ids):,} malformed messages mishandled: {_by_finding(per_finding)}"
    return _row(facts, scenario, MALFORMED, FAIL, summary, counts, samples)


def _late_row(facts: _Facts, scenario: str) -> PropertyResult:
    ids = facts.ids(scenario, malformed=False)
    failing = {e: found for e in ids if (found := [f for f in facts.findings.get(e, []) if f in LATE_FINDINGS])}
    per_finding, samples = _evidence(facts, failing)
    counts: dict[str, Any] = {"events": len(ids), "failing": len(failing), **per_finding}
    if not failing:
        summary = f"all {len(ids):,} events placed by their own event time, none lost"
        return _row(facts, scenario, LATE_PLACED, PASS, summary, counts)
    summary = f"{len(failing):,} of {len(ids):,} events not placed by their own time: {_by_finding(per_finding)}"
    return _row(facts, scenario, LATE_PLACED, FAIL, summary, counts, samples)


# ------------------------------------------------------------------------------------------- latency and burst


def percentile(values: list[int], q: float) -> int:
    """The nearest-rank percentile (q in 0..100) of `values`, which must not be empty: a value that was measured."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]


def _expected_sinks(facts: _Facts, scenario: str) -> list[str]:
    """The sinks read that record a landed time and should hold some of the scenario's messages."""
    events = facts.by_scenario.get(scenario, [])
    wanted = []
    if any(e.expected != DEAD_LETTER for e in events):
        wanted += [s for s in facts.data.sinks if s in EVENT_SINKS]
    if any(e.expected == DEAD_LETTER for e in events):
        # The dead-letter topic's copy does not carry the source's publish time (docs/reconcile.md): no latency.
        wanted += [s for s in facts.data.sinks if s in DEAD_LETTER_SINKS and s != DEAD_LETTER_TOPIC]
    return wanted


def _scenario_lags(facts: _Facts, scenario: str) -> dict[str, list[Lag]]:
    by_sink: dict[str, list[Lag]] = defaultdict(list)
    for event_id in facts.ids(scenario):
        for lag in facts.lags.get(event_id, []):
            by_sink[lag.sink].append(lag)
    return dict(sorted(by_sink.items()))


def _seconds(ms: int | float) -> str:
    return f"{ms / 1000:.3g} s" if abs(ms) < 100_000 else f"{ms / 1000:,.0f} s"


def _latency_row(facts: _Facts, scenario: str) -> PropertyResult:
    budget_ms = round(facts.data.budgets.latency_s * 1000)
    by_sink = _scenario_lags(facts, scenario)
    unmeasured = [s for s in _expected_sinks(facts, scenario) if s not in by_sink]
    if not by_sink:
        why = "no landed time known for this scenario's events in any sink"
        return _row(facts, scenario, LATENCY, SKIP, why, {"budget_ms": budget_ms}, fix=NO_LAG_FIX)
    counts: dict[str, Any] = {"budget_ms": budget_ms}
    over, shown = [], []
    for sink, lags in by_sink.items():
        ms = [lag.landed_ms - lag.publish_ms for lag in lags]
        p95 = percentile(ms, 95)
        counts |= {f"{sink}.n": len(ms), f"{sink}.p50_ms": percentile(ms, 50), f"{sink}.p95_ms": p95,
                   f"{sink}.max_ms": max(ms)}  # fmt: skip
        shown.append(f"{sink} {_seconds(p95)}")
        if p95 > budget_ms:
            over.append(sink)
    measured = "p95 " + ", ".join(shown) + f" (budget {_seconds(budget_ms)})"
    if unmeasured:
        measured += f"; not measured, no landed time: {', '.join(unmeasured)}"
    if not over:
        return _row(facts, scenario, LATENCY, PASS, measured, counts)
    # The copies over budget, slowest first: the events a person looks at first.
    slow = sorted((lag for sink in over for lag in by_sink[sink] if lag.landed_ms - lag.publish_ms > budget_ms),
                  key=lambda g: g.landed_ms - g.publish_ms, reverse=True)  # fmt: skip
    samples = [Sample(g.event_id, f"slow in {g.sink}", f"{g.sink}: landed {_seconds(g.landed_ms - g.publish_ms)} "
                      "after publish") for g in slow[:SAMPLES]]  # fmt: skip
    summary = f"over budget in {', '.join(over)}: " + measured
    return _row(facts, scenario, LATENCY, FAIL, summary, counts, samples)


def _burst_row(facts: _Facts, scenario: str) -> PropertyResult:
    budget_ms = round(facts.data.budgets.drain_s * 1000)
    phase = facts.phase.get(scenario)
    ids = facts.ids(scenario, malformed=False)
    counts: dict[str, Any] = {"drain_budget_ms": budget_ms, "events": len(ids)}
    if phase is None:
        why = "the run's manifest records no phase for the burst, so when it ended is unknown"
        return _row(facts, scenario, BURST, SKIP, why, counts, fix="publish the burst as a phase of the run")
    by_sink = {s: [g for g in lags if g.event_id not in facts.malformed_ids]
               for s, lags in _scenario_lags(facts, scenario).items() if s in EVENT_SINKS}  # fmt: skip
    by_sink = {s: lags for s, lags in by_sink.items() if lags}
    # An event still missing from a sink means its backlog never drained there, whatever the time says.
    missing = {e: found for e in ids if (found := [f for f in facts.findings.get(e, []) if f in MISSING_FINDINGS])}
    counts["missing"] = len(missing)
    if not by_sink and missing:
        per_finding, samples = _evidence(facts, missing)
        summary = f"{len(missing):,} of {len(ids):,} burst events never landed ({_by_finding(per_finding)})"
        return _row(facts, scenario, BURST, FAIL, summary, counts, samples)
    if not by_sink:
        why = "no landed time known for the burst's events in any sink, so the drain cannot be timed"
        return _row(facts, scenario, BURST, SKIP, why, counts, fix=NO_LAG_FIX)
    late, shown = [], []
    for sink, lags in by_sink.items():
        drain = max(0, max(g.landed_ms for g in lags) - phase.finished_ms)
        counts[f"{sink}.drain_ms"] = drain
        shown.append(f"{sink} {_seconds(drain)}")
        if drain > budget_ms:
            late.append(sink)
    drained = f"drained {', '.join(shown)} after the burst ended (budget {_seconds(budget_ms)})"
    unmeasured = [s for s in facts.data.sinks if s in EVENT_SINKS and s not in by_sink]
    if unmeasured:
        drained += f"; not timed, no landed time: {', '.join(unmeasured)}"
    if not late and not missing:
        return _row(facts, scenario, BURST, PASS, drained, counts)
    if missing:
        per_finding, samples = _evidence(facts, missing)
        summary = f"{len(missing):,} of {len(ids):,} burst events never landed ({_by_finding(per_finding)}); {drained}"
        return _row(facts, scenario, BURST, FAIL, summary, counts, samples)
    # The copies that landed past the budget, latest first.
    last = sorted((g for sink in late for g in by_sink[sink] if g.landed_ms - phase.finished_ms > budget_ms),
                  key=lambda g: -g.landed_ms)  # fmt: skip
    samples = [
        Sample(g.event_id, f"landed late in {g.sink}",
               f"{g.sink}: landed {_seconds(g.landed_ms - phase.finished_ms)} after the burst ended")
        for g in last[:SAMPLES]
    ]  # fmt: skip
    return _row(facts, scenario, BURST, FAIL, f"too slow in {', '.join(late)}: {drained}", counts, samples)


# -------------------------------------------------------------------------------------------------- the run's row


def _run_row(facts: _Facts) -> PropertyResult:
    report = facts.data.report
    unexpected = report.get("unexpected") or []
    foreign = report.get("foreign") or []
    allowed = bool(report.get("allow_foreign"))
    # Findings of ids the manifest's events do not list: judged nowhere else, so judged here.
    orphans = {e: found for e, found in facts.findings.items() if e not in facts.scenario_of}
    counts: dict[str, Any] = {"unexpected": len(unexpected), "foreign": len(foreign), "unknown_events": len(orphans)}
    failing_foreign = [] if allowed else foreign
    if not unexpected and not failing_foreign and not orphans:
        summary = "no rows of this run that it never sent, and no rows of an unknown producer"
        if foreign:
            summary = f"no rows of this run that it never sent; {len(foreign):,} foreign rows (allowed)"
        return PropertyResult(RUN_SCENARIO, UNEXPECTED, PASS, TITLES[UNEXPECTED], summary, counts)
    samples = [Sample(r.get("event_id") or f"message {r.get('message_id') or '?'}", "unexpected",
                      f"{r.get('sink')}: {r.get('location') or '?'}") for r in unexpected[:SAMPLES]]  # fmt: skip
    samples += [Sample(r.get("event_id") or f"message {r.get('message_id') or '?'}", "foreign",
                       f"{r.get('sink')}: {r.get('location') or '?'} (run {r.get('run_id') or 'none'})")
                for r in failing_foreign[: SAMPLES - len(samples)]]  # fmt: skip
    samples += [facts.sample(e, ", ".join(found)) for e, found in list(orphans.items())[: SAMPLES - len(samples)]]
    parts = []
    if unexpected:
        parts.append(f"{len(unexpected):,} rows with this run's id that it never sent")
    if failing_foreign:
        parts.append(f"{len(failing_foreign):,} rows of no known run (pass --allow-foreign for a shared topic)")
    if orphans:
        parts.append(f"{len(orphans):,} events reconcile judged that the check's events do not list")
    return PropertyResult(RUN_SCENARIO, UNEXPECTED, FAIL, TITLES[UNEXPECTED], "; ".join(parts), counts, samples)


# ------------------------------------------------------------------------------------------ evidence as text


def evidence_lines(row: PropertyResult) -> list[str]:
    """A row's evidence for people: its counts, then each event named with where it was last seen."""
    lines = [row.summary]
    if row.fix:
        lines.append(f"fix: {row.fix}")
    if row.counts:
        lines.append("counts: " + ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}"
                                            for k, v in row.counts.items()))  # fmt: skip
    if row.samples:
        lines.append(f"first {len(row.samples)} events (event id: finding; last seen):")
        for s in row.samples:
            lines.append(f"  {s.event_id}: {s.finding}; {s.last_seen}" + (f"; {s.detail}" if s.detail else ""))
    return lines


# ------------------------------------------------------------------------------ series for plots and live view


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    second: int  # epoch second of publish
    n: int
    p50_ms: int
    p95_ms: int


@dataclass(frozen=True, slots=True)
class BacklogPoint:
    second: int  # epoch second; the counts are as at its first instant (epoch ms second * 1000)
    published: int
    landed: int

    @property
    def backlog(self) -> int:
        return self.published - self.landed


def _ids_of(data: CheckData, scenario: str | None) -> list[SentEvent]:
    return [e for e in data.events if scenario is None or e.scenario == scenario]


def latency_series(data: CheckData, scenario: str | None = None) -> dict[str, list[LatencyPoint]]:
    """Per sink, per second of publish time, the copies of the scenario's events (all, for None) that landed:
    how many, and their p50 and p95 lag in ms. Sinks and seconds sorted; a second nobody published in is absent."""
    wanted = {e.event_id for e in _ids_of(data, scenario)}
    grouped: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for lag in data.lags:
        if lag.event_id in wanted:
            grouped[lag.sink][lag.publish_ms // 1000].append(lag.landed_ms - lag.publish_ms)
    return {
        sink: [LatencyPoint(s, len(ms), percentile(ms, 50), percentile(ms, 95)) for s, ms in sorted(seconds.items())]
        for sink, seconds in sorted(grouped.items())
    }


def timeline(data: CheckData) -> tuple[int, int]:
    """The run's first and last second: from the first publish (or phase start) to the last landing (or phase end)."""
    starts = [lag.publish_ms for lag in data.lags] + [p.started_ms for p in data.phases if p.started_ms]
    ends = [lag.landed_ms for lag in data.lags] + [p.finished_ms for p in data.phases if p.finished_ms]
    if not starts:
        return (0, -1)
    return min(starts) // 1000, max(ends or starts) // 1000


def backlog_series(data: CheckData, scenario: str | None = None) -> dict[str, list[BacklogPoint]]:
    """Per sink that records landed times, at each whole second of the run (from the second of its first publish to
    the one after its last landing): how many of the scenario's events (all, for None) were published by then and
    how many had landed in that sink. An event counts once (its first copy); its
    publish time is its earliest copy's in any sink, or, landed nowhere, its phase's end (it was published by
    then): so an event never landed stays in the backlog to the end, as it should. Valid events are expected in
    the event sinks, malformed messages in the dead-letter sinks."""
    events = _ids_of(data, scenario)
    first, last = timeline(data)
    if not events or last < first:
        return {}
    published: dict[str, int] = {}
    landed: dict[str, dict[str, int]] = defaultdict(dict)
    for lag in data.lags:
        published[lag.event_id] = min(published.get(lag.event_id, lag.publish_ms), lag.publish_ms)
        held = landed[lag.sink]
        held[lag.event_id] = min(held.get(lag.event_id, lag.landed_ms), lag.landed_ms)
    ends = {p.name: p.finished_ms for p in data.phases}
    scenario_of = {e.event_id: e.scenario for e in events}
    series: dict[str, list[BacklogPoint]] = {}
    for sink in sorted(landed):
        malformed = sink in DEAD_LETTER_SINKS
        ids = list(dict.fromkeys(e.event_id for e in events if (e.expected == DEAD_LETTER) == malformed))
        if not ids:
            continue
        pub = sorted(published.get(e) or ends.get(scenario_of[e]) or first * 1000 for e in ids)
        got = sorted(landed[sink][e] for e in ids if e in landed[sink])
        series[sink] = [
            BacklogPoint(s, bisect_right(pub, s * 1000), bisect_right(got, s * 1000)) for s in range(first, last + 2)
        ]
    return series


def missing_by_scenario(report: dict[str, Any], events: list[SentEvent]) -> dict[str, int]:
    """For the live view while the sinks settle: per scenario (publish order), how many of its events some sink
    still misses (reconcile's missing findings)."""
    missing = {e for f in MISSING_FINDINGS for e in (report.get("findings") or {}).get(f, [])}
    counts: dict[str, set[str]] = {}
    for e in events:
        found = counts.setdefault(e.scenario, set())
        if e.event_id in missing:
            found.add(e.event_id)
    return {scenario: len(ids) for scenario, ids in counts.items()}
