"""What the pipeline itself counted, read after the fact: the part of a mismatch the sinks alone cannot explain.

The sinks show what arrived, not what the pipeline chose to drop. Its dedup step (pipeline.dedup) drops an event
whose id it has already let through as another message, which is what happens to every event of a run that
reuses an earlier run's ids without `publish --replay`: reconcile then finds them in no sink. The pipeline's
dedup journal of local runs says so: `$WORKBENCH_HOME/pipeline/dedup-*.tsv` (pipeline.dedup_journal), one line per
event let through, `event_id TAB message_id TAB publish_time`, kept for the dedup window. An event of this run
found in no event sink, whose id the journal holds under *another* message id, was dropped as a repeat of that
message. (On Dataflow the dedup state lives in the runner and nothing is read here.)

    counts = read_pipeline_counts(report.run_id, report.problems)        # doctest: +SKIP
    counts.explanation()   # "9,470 of the 9,470 events in no sink have ids the pipeline had already let through"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def pipeline_home() -> Path:
    from eventmodel.resources import workbench_home

    return workbench_home() / "pipeline"


@dataclass
class PipelineCounts:
    """What the pipeline's own records say about one run's events that reached no event sink."""

    run_id: str
    not_in_any_sink: int  # this run's valid events found in no event sink (missing, or found only elsewhere)
    repeats: int = 0  # of those, ids the dedup journal holds under another message: dropped as repeats
    sources: list[str] = field(default_factory=list)  # the journals that said so

    def explanation(self) -> str | None:
        """One sentence for the verdict, or None when the pipeline's records explain nothing."""
        if not self.not_in_any_sink or not self.repeats:
            return None
        return (
            f"{self.repeats:,} of the {self.not_in_any_sink:,} events in no sink have ids the pipeline had already "
            "let through as another message (its dedup journal): this run reused event ids, so the pipeline kept "
            "the first copies and dropped these (to send a run's events again on purpose: "
            "`workbench publish --replay RUN_ID`)"
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


def read_pipeline_counts(
    run_id: str, problems: Iterable[Mapping[str, Any]], home: Path | None = None
) -> PipelineCounts:
    """What the dedup journals under `home` (default $WORKBENCH_HOME/pipeline) say about run_id."""
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
    return counts
