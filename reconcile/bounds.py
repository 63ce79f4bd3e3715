"""How far reconcile reads each source: the event tables by their partition column (the runs' event times, late
events included), dead_letters by its ingest time, the GCS tree by the files' update times. Real BigQuery refuses a
read of user_activity without a partition filter (require_partition_filter), and bills every byte it scans.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconcile import queries as Q

# The event tables are read for the run's event times (from its manifest: late events can be days old) widened by
# this much on each side. Partitions are days, so a day more costs at most two partitions a table, and it keeps in
# the read a row whose time a sink holds a little off the manifest's: a malformed event the pipeline accepted
# (a timestamp without a zone is off by up to 14 h), which must be found to be reported as accepted.
EVENT_TIME_SLACK = timedelta(days=1)
# The GCS tree is read for the files written since the earliest run compared began, less this (clock skew between
# the publisher and the object store's update times).
FILE_SLACK = timedelta(minutes=5)
# An external table names its folders one URI each: past this many minute folders, coarser ones (hours, days...).
MAX_PREFIXES = 500


@dataclass(frozen=True)
class ReadBounds:
    """How far each source is read: the event tables by their partition column (event time), dead_letters by
    its (ingest time), the GCS tree by the files' update times."""

    event_times: tuple[datetime, datetime]
    ingested_since: datetime
    files_since: datetime

    def note(self) -> str:
        low, high = (t.strftime("%Y-%m-%d %H:%M") for t in self.event_times)
        return (
            f"the event tables were read for event times {low} .. {high} UTC (the run's, "
            f"\u00b1 {EVENT_TIME_SLACK.days} day): a row with an event time outside them is not read, and shows as "
            "missing from BigQuery"
        )


def read_bounds(event_times: tuple[datetime, datetime] | None, windows: list[tuple[datetime, datetime]]) -> ReadBounds:
    """The bounds of a reconcile: the event times of the runs compared (their manifests, late events included),
    with their publish windows (a foreign producer's events carry about the time they were published), widened
    by EVENT_TIME_SLACK; dead letters and files since the earliest of those runs began."""
    starts = [w[0] for w in windows]
    ends = [w[1] for w in windows]
    low = min([*starts, *(event_times[:1] if event_times else ())])
    high = max([*ends, *(event_times[1:] if event_times else ())])
    return ReadBounds(
        event_times=(low - EVENT_TIME_SLACK, high + EVENT_TIME_SLACK),
        ingested_since=min(starts) - EVENT_TIME_SLACK,
        files_since=min(starts) - FILE_SLACK,
    )


def manifest_event_times(csvs: list[Path]) -> tuple[datetime, datetime] | None:
    """The earliest and latest event time of the valid events the manifests' CSVs record as published (their
    event_time column, publisher/manifest.py), read in bulk by DuckDB; None when they record none."""
    import duckdb

    if not csvs:
        return None
    files = ", ".join(f"'{str(p).replace(chr(39), chr(39) * 2)}'" for p in csvs)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        low, high = con.execute(
            "SELECT min(t), max(t) FROM (SELECT TRY_CAST(event_time AS TIMESTAMPTZ) AS t "
            f"FROM read_csv([{files}], header = true, all_varchar = true, union_by_name = true) "
            f"WHERE outcome = 'published' AND expected != '{Q.DEAD_LETTER}')"
        ).fetchone()
    finally:
        con.close()
    if low is None or high is None:
        return None
    return low.astimezone(UTC), high.astimezone(UTC)


def files_written_since(files: list[Any], since: datetime) -> list[Any]:
    """The files of the tree that can hold the runs' events: written since `since` (a file with no update time
    is kept). A file of the run moved or renamed keeps its update time, so a misplaced one is still read."""
    return [f for f in files if f.updated is None or f.updated >= since]


def folder_prefixes(uris: list[str], floor: str, limit: int = MAX_PREFIXES) -> list[str]:
    """The folders holding `uris`, no more than `limit`: their own (minute) folders, coarsened a level at a time
    (hours, days, ...) while there are more, never above `floor` (the type folder). Each ends with '/'."""
    floor = floor.rstrip("/") + "/"
    folders = {u.rsplit("/", 1)[0] + "/" for u in uris}
    while len(folders) > limit:
        coarser = {f if f == floor or not f.startswith(floor) else f.rstrip("/").rsplit("/", 1)[0] + "/"
                   for f in folders}  # fmt: skip
        if coarser == folders:
            break
        folders = coarser
    kept: list[str] = []
    for folder in sorted(folders):  # a folder under one already kept adds nothing
        if not any(folder.startswith(k) for k in kept):
            kept.append(folder)
    return kept
