"""What the pipeline itself counted, read after the fact: the part of a mismatch the sinks alone cannot explain.

The sinks show what arrived, not what the pipeline chose to drop. Its dedup step (pipeline.dedup) drops an event
whose id it has already let through as another message, which is what happens to every event of a run that
reuses an earlier run's ids (a rerun with the same seed): reconcile then finds them in no sink. Two records under
$WORKBENCH_HOME/pipeline/ say so:

- `dedup-*.tsv`, the dedup journal of local runs (pipeline.dedup_journal): one line per event let through,
  `event_id TAB message_id TAB publish_time`, kept for the dedup window. An event of this run found in no event
  sink, whose id the journal holds under *another* message id, was dropped as a repeat of that message.
- `counters/*.json`, one file per local pipeline run, rewritten as it goes (format below): the pipeline's own
  counters per publish run id, so the number of duplicates it dropped for this run can be quoted.

    counts = read_pipeline_counts(report.run_id, report.problems)        # doctest: +SKIP
    counts.explanation()   # "the pipeline's dedup dropped 9,470 of this run's events as repeats ..."

Counters file, format 1 (`$WORKBENCH_HOME/pipeline/counters/<pipeline run>.json`):

    {"format": 1, "pipeline_run": "20261207-091500-4242", "subscription": "projects/P/subscriptions/S",
     "started_at": "2026-12-07T09:15:00Z", "updated_at": "...", "finished_at": null or "...",
     "by_run": {"<publish run id>": {"read": 9470, "duplicates_dropped": 9470, ...}},
     "counters": {"read": 9470, "duplicates_dropped": 9470, ...}}

Counter names are pipeline.metrics' (READ, DUPLICATES, ...). `by_run` is keyed by the run_id attribute of what
was read; `counters` are the whole pipeline run's. Only `by_run` is used here: a pipeline run's totals may mix runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

COUNTERS_FORMAT = 1
# pipeline.metrics.READ and DUPLICATES (not imported: that module loads Beam, and reading a JSON file needs none).
READ = "read"
DUPLICATES = "duplicates_dropped"


def pipeline_home() -> Path:
    from eventmodel.resources import workbench_home

    return workbench_home() / "pipeline"


@dataclass
class PipelineCounts:
    """What the pipeline's own records say about one run's events that reached no event sink."""

    run_id: str
    not_in_any_sink: int  # this run's valid events found in no event sink (missing, or found only elsewhere)
    repeats: int = 0  # of those, ids the dedup journal holds under another message: dropped as repeats
    duplicates_dropped: int | None = None  # the pipeline's counter for this run (counters files), None: no record
    read: int | None = None
    sources: list[str] = field(default_factory=list)  # the files that said so

    def explanation(self) -> str | None:
        """One sentence for the verdict, or None when the pipeline's records explain nothing."""
        if not self.not_in_any_sink or not (self.repeats or self.duplicates_dropped):
            return None
        said = []
        if self.duplicates_dropped:
            dropped = f"{self.duplicates_dropped:,}"
            said.append(
                (f"the pipeline read {self.read:,} of this run's events and its dedup dropped {dropped} of them"
                 if self.read else f"the pipeline's dedup dropped {dropped} of this run's events")
                + " as repeats of event ids it had already let through (its counters)"
            )  # fmt: skip
        if self.repeats:
            said.append(
                f"{self.repeats:,} of the {self.not_in_any_sink:,} events in no sink have ids the pipeline had "
                "already let through as another message (its dedup journal)"
            )
        return (
            "; ".join(said) + ": this run reused event ids, so the pipeline kept the first copies and dropped these "
            "(to send a run's events again on purpose: `workbench publish --replay RUN_ID`)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "explanation": self.explanation()}


def unsunk_events(problems: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """event id -> message id of this run's valid events with no copy in any event sink (the events a dedup drop
    leaves behind, whatever problem the report files them under)."""
    return {
        p["event_id"]: p.get("message_id") or ""
        for p in problems
        if p.get("expected") != "dead_letter" and not p.get("gcs_copies") and not p.get("bigquery_copies")
    }


def journal_repeats(journal: Path, events: Mapping[str, str]) -> set[str]:
    """The ids in `events` (event id -> this run's message id) that `journal` holds under another message id."""
    found: set[str] = set()
    try:
        with journal.open(encoding="utf-8") as lines:
            for line in lines:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 3:  # a line cut short by a crash
                    continue
                event_id, message_id = parts[0], parts[1]
                mine = events.get(event_id)
                if mine is not None and message_id != mine:
                    found.add(event_id)
    except OSError:
        return set()
    return found


def run_counters(path: Path, run_id: str) -> dict[str, int] | None:
    """This run's counters from one counters file, or None (another format, unreadable, or not this run)."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != COUNTERS_FORMAT:
        return None
    mine = (data.get("by_run") or {}).get(run_id)
    if not isinstance(mine, dict):
        return None
    return {k: int(v) for k, v in mine.items() if isinstance(v, int | float)}


def read_pipeline_counts(
    run_id: str, problems: Iterable[Mapping[str, Any]], home: Path | None = None
) -> PipelineCounts:
    """What the journals and counters files under `home` (default $WORKBENCH_HOME/pipeline) say about run_id."""
    home = home or pipeline_home()
    events = unsunk_events(problems)
    counts = PipelineCounts(run_id=run_id, not_in_any_sink=len(events))
    if events:
        repeated: set[str] = set()
        for journal in sorted(home.glob("dedup-*.tsv")):
            found = journal_repeats(journal, events)
            if found:
                repeated |= found
                counts.sources.append(str(journal))
        counts.repeats = len(repeated)
    for path in sorted((home / "counters").glob("*.json")):
        mine = run_counters(path, run_id)
        if mine is None:
            continue
        counts.sources.append(str(path))
        counts.duplicates_dropped = (counts.duplicates_dropped or 0) + mine.get(DUPLICATES, 0)
        counts.read = (counts.read or 0) + mine.get(READ, 0)
    return counts
