"""Hand-built CheckData for the battery's tests: a small run of the real scenarios, with reconcile's verdict written
as reconcile writes it (Report.to_dict(): problems with the gravest finding per event, findings with every one).

    run = RunBuilder()
    steady = run.scenario("steady", valid=20)
    run.drop(steady[3], "bigquery").find("missing_in_bigquery", steady[3])
    data = run.data()

Every event starts clean: held once in GCS (2 s after publish) and BigQuery (0.5 s), a malformed message in the
dead_letters table (0.4 s) with its reason. A test then breaks what it is about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from battery.model import Budgets, CheckData, Lag, Phase, SentEvent

T0 = 1_796_036_400_000  # 2026-12-01 10:20:00 UTC, epoch ms
TYPES = ("order", "inventory", "user_activity")
MALFORMED_KINDS = (("cut_off_write", "TRUNCATED_JSON"), ("missing_field", "MISSING_FIELD"),
                   ("nan_literal", "NOT_JSON"), ("oversize_event", "OVERSIZE_PAYLOAD"))  # fmt: skip
ALL_SINKS = ["gcs", "bigquery", "dead_letter_table", "dead_letter_topic"]
LANDING_MS = {"gcs": 2_000, "bigquery": 500, "dead_letter_table": 400}
EVENT_SINKS = ("gcs", "bigquery")


@dataclass
class RunBuilder:
    promise: str = "deduplicated"
    sinks: list[str] = field(default_factory=lambda: list(ALL_SINKS))
    budgets: Budgets = field(default_factory=Budgets)
    with_lags: bool = True
    run_id: str = "20261201-102000-ab12"
    events: list[SentEvent] = field(default_factory=list)
    lags: list[Lag] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    findings: dict[str, list[str]] = field(default_factory=dict)
    problems: dict[str, dict[str, Any]] = field(default_factory=dict)
    altered_fields: list[dict[str, Any]] = field(default_factory=list)
    raw_duplicates: list[dict[str, Any]] = field(default_factory=list)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    foreign: list[dict[str, Any]] = field(default_factory=list)
    allow_foreign: bool = False
    cursor_ms: int = T0
    published_ms: dict[str, int] = field(default_factory=dict)

    def scenario(self, name: str, valid: int = 0, malformed: int = 0, resent: int = 0, rate: float = 100.0,
                 event_time: str | None = None) -> list[str]:  # fmt: skip
        """Publish a scenario: `valid` events, then `malformed` messages, then `resent` re-sends of its first valid
        events, at `rate` per second from where the previous one ended. Its event ids, valid first."""
        start = self.cursor_ms
        ids = []
        step = 1000 / rate
        for i in range(valid + malformed):
            event_id = f"{name}-{i:03d}"
            at = round(start + i * step)
            if i < valid:
                event_type = TYPES[i % len(TYPES)]
                sent = SentEvent(event_id, name, event_type, event_type, None, None,
                                 event_time or _iso(at), False, f"m-{name}-{i}")  # fmt: skip
                self._land(event_id, at, EVENT_SINKS)
            else:
                kind, reason = MALFORMED_KINDS[(i - valid) % len(MALFORMED_KINDS)]
                sent = SentEvent(event_id, name, "dead_letter", "order", kind, reason, None, False, f"m-{name}-{i}")
                self._land(event_id, at, ("dead_letter_table",))
            self.events.append(sent)
            self.published_ms[event_id] = at
            ids.append(event_id)
        count = valid + malformed
        for k in range(resent):
            original = next(e for e in self.events if e.event_id == ids[k])
            at = round(start + (count + k) * step)
            self.events.append(SentEvent(original.event_id, name, original.expected, original.event_type, None, None,
                                         original.event_time, True, f"m-{name}-again-{k}"))  # fmt: skip
        end = round(start + (count + resent) * step)
        self.phases.append(Phase(name, rate, 100 + len(self.phases), start, end, count + resent))
        self.cursor_ms = end + 1000
        return ids

    def _land(self, event_id: str, at: int, sinks: tuple[str, ...]) -> None:
        if self.with_lags:
            for sink in sinks:
                self.lags.append(Lag(event_id, sink, at, at + LANDING_MS[sink]))

    # ------------------------------------------------------------------ what the pipeline did to the events

    def drop(self, event_id: str, sink: str | None = None) -> RunBuilder:
        """The event's copies vanish from `sink` (every sink when None)."""
        self.lags = [g for g in self.lags if not (g.event_id == event_id and (sink is None or g.sink == sink))]
        return self

    def copy(self, event_id: str, sink: str, after_ms: int = 3_000) -> RunBuilder:
        """One more copy of the event in `sink`, landed `after_ms` after publish."""
        at = self.published_ms[event_id]
        self.lags.append(Lag(event_id, sink, at, at + after_ms))
        return self

    def slow(self, event_ids: list[str], sink: str, lag_ms: int) -> RunBuilder:
        """The events' copies in `sink` land `lag_ms` after publish."""
        wanted = set(event_ids)
        self.lags = [Lag(g.event_id, g.sink, g.publish_ms, g.publish_ms + lag_ms)
                     if g.event_id in wanted and g.sink == sink else g for g in self.lags]  # fmt: skip
        return self

    def find(self, finding: str, event_id: str, **problem: Any) -> RunBuilder:
        """Reconcile's diagnosis of the event: in findings, and as its problem row unless a graver one is there."""
        self.findings.setdefault(finding, []).append(event_id)
        if event_id not in self.problems:
            self.problems[event_id] = self.problem_row(finding, event_id) | problem
        return self

    def problem_row(self, finding: str, event_id: str) -> dict[str, Any]:
        """A PROBLEMS row (reconcile.queries) as the sinks' lags say the event is held."""
        sent = next(e for e in self.events if e.event_id == event_id)
        held = {s: sum(1 for g in self.lags if g.event_id == event_id and g.sink == s) for s in LANDING_MS}
        folder = "2026/12/01/10/20"
        return {
            "problem": finding, "event_id": event_id, "expected": sent.expected, "event_type": sent.event_type,
            "kind": sent.kind, "reason": sent.reason, "message_id": sent.message_id,
            "gcs_copies": held["gcs"], "bigquery_copies": held["bigquery"], "dlt_copies": held["dead_letter_table"],
            "dlq_copies": 0, "dead_letter_reasons": sent.reason if held["dead_letter_table"] else None,
            "gcs_location": f"output/{sent.event_type}/{folder}/{sent.event_type}_2026120110200001.json"
            if held["gcs"] else None,
            "bigquery_location": f"events.{sent.event_type}s" if held["bigquery"] else None,
        }  # fmt: skip

    # ---------------------------------------------------------------------------------------------- the data

    def report(self) -> dict[str, Any]:
        problems = sorted(self.problems.values(), key=lambda p: (p["problem"] != "accepted", p["problem"],
                                                                  p["event_id"]))  # fmt: skip
        return {
            "run_id": self.run_id,
            "checked": {s: True for s in self.sinks},
            "problems": problems,
            "findings": {f: sorted(ids) for f, ids in sorted(self.findings.items())},
            "altered_fields": self.altered_fields,
            "raw_duplicates": self.raw_duplicates,
            "unexpected": self.unexpected,
            "foreign": self.foreign,
            "allow_foreign": self.allow_foreign,
            "elapsed_s": 4.2,
        }

    def data(self) -> CheckData:
        return CheckData(run_id=self.run_id, contract="event-workbench pipeline (built-in)", promise=self.promise,
                         sinks=list(self.sinks), phases=list(self.phases), report=self.report(),
                         events=list(self.events), lags=list(self.lags), budgets=self.budgets,
                         pipeline="python -m pipeline.run --streaming")  # fmt: skip


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def full_battery(**options: Any) -> tuple[RunBuilder, dict[str, list[str]]]:
    """Every scenario of the battery, small, all clean: the builder and each scenario's event ids."""
    run = RunBuilder(**options)
    ids = {
        "steady": run.scenario("steady", valid=20),
        "malformed": run.scenario("malformed", valid=4, malformed=8),
        "duplicates": run.scenario("duplicates", valid=10, resent=2),
        "late": run.scenario("late", valid=7, event_time="2026-10-22T09:18:30Z"),
        "out-of-order": run.scenario("out-of-order", valid=6),
        "oversize": run.scenario("oversize", valid=2, malformed=2, rate=20),
        "burst": run.scenario("burst", valid=30, rate=1000),
    }
    return run, ids
