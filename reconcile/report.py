"""The verdict of one reconcile: what was expected, what each sink holds, and every id that does not match.

Exit status (the CLI's): 0 when everything matches, 1 on any mismatch. (2, "could not reconcile", is a
ReconcileError and never a Report.) What fails a run:
- any event with a `problem` (reconcile.queries.EVENT_STATUS): missing, misplaced, altered, duplicated in the
  GCS files, a malformed event accepted, dead-lettered with another reason, dead-letter bytes changed;
- rows of this run that the manifest never sent (unexpected);
- rows of no known run published during the run (foreign), unless foreign producers are allowed.
Raw duplicates are reported but do not fail: in the BigQuery tables (streaming inserts deduplicate on insertId
best-effort only, and the *_deduped views, ddl/30_views.sql, show each event once), and in the GCS files when the
copies are the *same* Pub/Sub message written again (at-least-once: a message redelivered after a crash or a lost
ack, before its ack). Copies from different messages mean the dedup step failed: that is "duplicated".
An event of a replay (`publish --replay RUN`) that the sinks hold only under the replayed run's id is where a
deduplicating pipeline puts it: counted (by_type / by_kind held_by_earlier_run) and noted, not failing; in a run
that did not ask for a replay the same finding is the problem "id_reused".
A valid event missing from a sink that dead-lettered it (BIGQUERY_INSERT_FAILED, GCS_WRITE_FAILED: the sink
stayed down past the pipeline's retry limit) is not missing: it is where the pipeline promises to put it, with
its original bytes, and the report counts it (by_type.sink_gave_up).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

# What each sink's latency (reconcile.queries.LATENCY: landed time - Pub/Sub publish_time) measures: each sink's
# "landed" time is the one its own metadata keeps, and they are not the same moment (docs/pipeline.md, "Latency").
LATENCY_MEASURES: dict[str, str] = {
    "gcs": "publish -> file readable in GCS (the object's update time)",
    "bigquery": "publish -> the insert request that landed the row (ingest_time; streaming rows are queryable "
    "within seconds of it; a backfill's rows carry the time of the load job that landed them)",
    "dead_letter_table": "publish -> the insert request that landed the dead letter (ingest_time)",
}


def latency_measures(sink: str) -> str:
    """What the latency of `sink` measures, in a phrase for reports."""
    return LATENCY_MEASURES.get(sink, "publish -> the sink's own landed time")


# How problems are named in reports, in the order of gravity the report shows them.
PROBLEM_LABELS: dict[str, str] = {
    "accepted": "malformed event accepted into an event sink",
    "missing": "missing from every sink",
    "missing_in_gcs": "missing from the GCS files",
    "missing_in_bigquery": "missing from BigQuery",
    "missing_in_dead_letter_table": "missing from the dead_letters table",
    "missing_in_dead_letter_topic": "missing from the dead-letter topic",
    "misplaced": "misplaced (wrong type folder, minute folder, file name or table)",
    "altered": "altered (the sink's copy differs from what was published)",
    "other_reason": "dead-lettered with another reason code",
    "duplicated": "duplicated (copies from different messages, or copies a sink cannot tell apart, where the "
    "contract promises deduplication)",
    "id_reused": "held only under another run's id (this run reused its event ids without --replay)",
    "collision": "shares its natural key with another published event, in a sink that keeps no event id",
    "missing_in_dead_letter_files": "missing from the dead-letter files",
}
SAMPLE = 10


@dataclass
class Report:
    run_id: str
    run: dict[str, Any]  # from manifest.json: status, started_at, finished_at, target, totals
    checked: dict[str, bool]  # sink -> read by this reconcile
    by_type: list[dict[str, Any]]
    by_kind: list[dict[str, Any]]
    problems: list[dict[str, Any]]
    raw_duplicates: list[dict[str, Any]]
    unexpected: list[dict[str, Any]]
    foreign: list[dict[str, Any]]
    latency: list[dict[str, Any]]
    histogram: list[dict[str, Any]]
    sizes: dict[str, int]  # rows read per sink, files in the tree
    allow_foreign: bool = False
    engine: str = "duckdb"
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    contract: str = "event-workbench pipeline (built-in)"  # the sink contract judged by (reconcile.contract)
    entries: list[dict[str, Any]] = field(default_factory=list)  # run.entry_counts: per contract entry
    # reconcile.altered: per altered event and sink, each field that differs (published beside held)
    altered_fields: list[dict[str, Any]] = field(default_factory=list)
    # queries.FINDINGS: every diagnosis of every event (problems shows the first), as {finding: [event ids]}
    findings: dict[str, list[str]] = field(default_factory=dict)

    @property
    def problem_counts(self) -> Counter[str]:
        return Counter(p["problem"] for p in self.problems)

    @property
    def matched(self) -> bool:
        return not self.problems and not self.unexpected and (self.allow_foreign or not self.foreign)

    @property
    def exit_code(self) -> int:
        return 0 if self.matched else 1

    @property
    def expected_total(self) -> int:
        return sum(r["expected"] for r in self.by_type) + sum(r["sent"] for r in self.by_kind)

    def headline(self) -> str:
        if self.matched:
            return (
                f"run {self.run_id}: all {self.expected_total:,} events accounted for "
                f"({', '.join(s for s, on in self.checked.items() if on)})"
            )
        parts = [f"{n:,} {PROBLEM_LABELS.get(p, p)}" for p, n in self.problem_counts.most_common()]
        if self.unexpected:
            parts.append(f"{len(self.unexpected):,} unexpected (this run's id, never sent)")
        if self.foreign and not self.allow_foreign:
            parts.append(f"{len(self.foreign):,} foreign (no manifest knows them)")
        return f"run {self.run_id}: MISMATCH: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            verdict="matched" if self.matched else "mismatch",
            exit_code=self.exit_code,
            headline=self.headline(),
            problem_counts=dict(self.problem_counts),
            latency_measures={r["sink"]: latency_measures(r["sink"]) for r in self.latency if r.get("sink")},
        )
        return data
