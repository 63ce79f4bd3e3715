"""Run manifests: what one publish run sent, kept where `workbench reconcile` finds it by run id.

Layout, under $WORKBENCH_HOME/runs/<run_id>/ (WORKBENCH_HOME defaults to ./.workbench):
    manifest.json       config, status (running | completed | interrupted | failed), totals and counts;
                        rewritten atomically about once a second, so it is consistent at any moment
    events-<W>.csv      one line per message worker W handed to its sink, appended when the outcome is known:
                        event_id, expected destination, event type, reason code, malformed kind, event time,
                        duplicate flag, outcome (published | failed), Pub/Sub message id, the MD5 of the
                        payload bytes (payload_digest: a dead letter must hold exactly these bytes) and, for
                        valid events, the digest of the event's canonical form (canonical_digest,
                        eventmodel.canonical: an event sink must hold exactly this event)

MD5 because both reconcile engines compute it natively (BigQuery MD5, DuckDB md5), so reconcile compares
digests inside the engine. `manifest_version` in manifest.json says which columns a run has.

The event lists are streamed to disk, never held in memory, so a run of millions of events keeps a flat
memory profile. The truth about malformed events (reason, kind) lives here and never in the message.
"""

from __future__ import annotations

import csv
import hashlib
import os
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from eventmodel.resources import workbench_home
from publisher.errors import PublishError

EVENT_COLUMNS = (
    "event_id",
    "expected",
    "event_type",
    "reason",
    "kind",
    "event_time",
    "duplicate",
    "outcome",
    "message_id",
    "payload_digest",
    "canonical_digest",
)
# 2: payload_digest is MD5 (was BLAKE2b-64) and canonical_digest exists; reconcile needs 2 or later.
MANIFEST_VERSION = 2
PUBLISHED = "published"
FAILED = "failed"


def payload_digest(data: bytes) -> str:
    """The payload's MD5 hex: what BigQuery's TO_HEX(MD5(payload)) and DuckDB's md5(payload) give back."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def runs_root() -> Path:
    return workbench_home() / "runs"


def run_dir(run_id: str) -> Path:
    return runs_root() / run_id


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by start time, unique across machines: 20261127-141502-3f9a."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class EventLog:
    """The events-<worker>.csv of one worker. record() is called from sink callbacks, hence the lock."""

    def __init__(self, directory: Path, worker: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"events-{worker}.csv"
        self._file = self.path.open("w", newline="", buffering=1 << 16)
        self._writer = csv.writer(self._file)
        self._writer.writerow(EVENT_COLUMNS)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def record(self, message: Any, outcome: str, message_id: str | None) -> None:
        row = (
            message.event_id,
            message.expected,
            message.event_type,
            message.reason or "",
            message.kind or "",
            message.event_time or "",
            "1" if message.duplicate else "",
            outcome,
            message_id or "",
            payload_digest(message.data),
            message.canonical_digest or "",
        )
        with self._lock:
            self._writer.writerow(row)
            count(self.counts, outcome, message.expected, message.event_type, message.kind, message.reason,
                  message.duplicate)  # fmt: skip

    def snapshot_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        with self._lock:
            self._file.close()


def count(counts: Counter[str], outcome: str, expected: str, event_type: str, kind: str | None,
          reason: str | None, duplicate: bool) -> None:  # fmt: skip
    """Add one message to a manifest's counts (the keys manifest.json's "counts" holds)."""
    counts[outcome] += 1
    if outcome == PUBLISHED:
        counts[f"expected:{expected}"] += 1
        counts[f"type:{event_type}"] += 1
        if kind:
            counts[f"kind:{kind}"] += 1
            counts[f"reason:{reason}"] += 1
        if duplicate:
            counts["duplicates"] += 1


def tally(run_id: str) -> Counter[str]:
    """The counts of a run from its events CSVs, for a manifest written by a process that published nothing
    itself (the Locust master, or `workbench loadtest` after its processes ended)."""
    counts: Counter[str] = Counter()
    for row in iter_events(run_id):
        count(counts, row["outcome"], row["expected"], row["event_type"], row["kind"], row["reason"],
              row["duplicate"] == "1")  # fmt: skip
    return counts


def write_manifest(run_id: str, manifest: dict[str, Any]) -> Path:
    """Replace manifest.json atomically: a reader never sees half a file, even after a crash."""
    directory = run_dir(run_id)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "manifest.json"
    temporary = directory / "manifest.json.tmp"
    temporary.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    os.replace(temporary, target)
    return target


def load_manifest(run_id: str) -> dict[str, Any] | None:
    """The manifest of run_id, or None when no such run has one (each caller says what that means)."""
    path = run_dir(run_id) / "manifest.json"
    return orjson.loads(path.read_bytes()) if path.exists() else None


def read_manifest(run_id: str) -> dict[str, Any]:
    manifest = load_manifest(run_id)
    if manifest is None:
        raise PublishError(f"no run {run_id!r} under {runs_root()}", "list the runs with `workbench runs`")
    return manifest


def iter_events(run_id: str) -> Iterator[dict[str, str]]:
    """Every recorded message of a run, worker by worker, streamed from disk."""
    for path in sorted(run_dir(run_id).glob("events-*.csv")):
        with path.open(newline="") as f:
            yield from csv.DictReader(f)


def list_runs() -> list[dict[str, Any]]:
    """Every run's manifest, newest first. A run directory without a readable manifest is skipped."""
    root = runs_root()
    if not root.is_dir():
        return []
    manifests = []
    for path in sorted(root.glob("*/manifest.json"), reverse=True):
        try:
            manifests.append(orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError):
            continue
    return manifests
