"""What one `workbench check` gathered, as plain values: the input of the scorecard and of every report.

A check publishes one run whose events are tagged by scenario (publisher.manifest `scenario` column), waits for
the sinks, reconciles the run once, and reads each event's lag per sink. Nothing here touches a service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The properties, in the order the scorecard shows them. Each scenario is judged on those that apply to it.
COMPLETE = "complete"
ONCE = "once"  # exactly-once, or at-least-once when the contract promises no more (Contract.duplicates)
UNCHANGED = "unchanged"
PLACED = "placed"
MALFORMED = "malformed"
LATE_PLACED = "late_placed"
LATENCY = "latency"
BURST = "burst"
PROPERTIES = (COMPLETE, ONCE, UNCHANGED, PLACED, MALFORMED, LATE_PLACED, LATENCY, BURST)

PASS, FAIL, SKIP = "pass", "fail", "skip"

# The scenarios some properties are about (battery.scenarios names them): late data is judged on its placement by
# its own time, the burst on how fast its backlog drained.
LATE_SCENARIOS = ("late", "out-of-order")
BURST_SCENARIO = "burst"
# Rows of the sinks that belong to no scenario (this run's id on a row never sent, a foreign producer's rows) are
# judged once for the whole run, as this scenario and property.
RUN_SCENARIO = "run"
UNEXPECTED = "unexpected"


@dataclass(frozen=True, slots=True)
class SentEvent:
    """One message of the run as its manifest recorded it (publisher.manifest EVENT_COLUMNS), outcome published."""

    event_id: str
    scenario: str
    expected: str  # the event type, or "dead_letter" for a malformed message
    event_type: str
    kind: str | None  # the malformed kind
    reason: str | None  # the reason code a malformed message must get
    event_time: str | None  # ISO-8601 as published
    duplicate: bool  # a re-send of an earlier event (same event_id, new message)
    message_id: str | None
    published_ms: int | None = None  # when the publish was acknowledged (manifest outcome_ms; none before version 5)


@dataclass(frozen=True, slots=True)
class Lag:
    """One copy of an event in one sink: when it was published and when the sink's own metadata says it landed
    (reconcile.report.LATENCY_MEASURES says what "landed" is per sink). Epoch milliseconds."""

    event_id: str
    sink: str
    publish_ms: int
    landed_ms: int


@dataclass(frozen=True, slots=True)
class Phase:
    """One scenario as it was published: its settings and its wall-clock span (epoch ms)."""

    name: str
    rate: float
    seed: int
    started_ms: int
    finished_ms: int
    sent: int


@dataclass
class Budgets:
    latency_s: float = 60.0  # p95 publish -> sink, per scenario and sink
    drain_s: float = 60.0  # after the burst's last message, until its last event landed in every sink


@dataclass
class CheckData:
    """Everything the scorecard judges. `report` is reconcile's Report.to_dict() of the whole run (its problems,
    findings and altered_fields list every event, not a sample); `events` and `lags` are per event."""

    run_id: str
    contract: str  # the sink contract's name
    promise: str  # Contract.duplicates: "deduplicated" | "at_least_once"
    sinks: list[str]  # the sinks reconcile read (report.checked, those True)
    phases: list[Phase]  # in publish order
    report: dict[str, Any]
    events: list[SentEvent]
    lags: list[Lag]
    budgets: Budgets = field(default_factory=Budgets)
    pipeline: str | None = None  # the --pipeline command, or None for a pipeline running elsewhere
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0  # the whole check, wall clock (JUnit's time)
