"""Run manifests: what one publish run sent, kept where `workbench reconcile` finds it by run id.

Layout, under $WORKBENCH_HOME/runs/<run_id>/ (WORKBENCH_HOME defaults to ./.workbench):
    manifest.json       config, status (running | completed | interrupted | failed), totals and counts, the
                        publishing process (publisher: pid, host, start ticks) and, for a run stopped early, how
                        it stopped (stop: signal, forced); rewritten atomically about once a second, so it is
                        consistent at any moment. run_state() reads a "running" whose process is gone as dead.
                        A run of phases also has "phases", one entry per phase in publishing order (see
                        publisher.run: settings, started_at / finished_at, sent, published, failed).
    events-<W>.csv      one line per message worker W handed to its sink, appended when the outcome is known:
                        event_id, expected destination, event type, reason code, malformed kind, event time,
                        duplicate flag, outcome (published | failed), Pub/Sub message id, the MD5 of the
                        payload bytes (payload_digest: a dead letter must hold exactly these bytes) and, for
                        valid events, the digest of the event's canonical form (canonical_digest,
                        eventmodel.canonical: an event sink must hold exactly this event); for a run written
                        to S3 also where the event sits: object_uri (s3://BUCKET/KEY), object_line (the
                        1-based line of the uncompressed object its record starts on) and object_index (the
                        0-based record number in that object: ndjson line - 1, array element, 0 for an object
                        of its own); empty for Pub/Sub and file runs; and scenario: the phase of the run
                        that sent it (publisher.run.Phase, a `workbench check` scenario), empty for a run
                        without phases; outcome_ms: when the outcome was known (epoch ms; for Pub/Sub the
                        publish acknowledged, just after the server's publish_time), the publish time of any
                        sink that keeps none (`workbench check` times those sinks' latency with it)
    objects-<W>.csv     S3 runs only: one line per object worker W wrote or tried to write (OBJECT_COLUMNS)

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
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from eventmodel.resources import workbench_home
from eventmodel.schema import MAX_PAYLOAD_BYTES
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
    "object_uri",
    "object_line",
    "object_index",
    "event",
    "scenario",
    "outcome_ms",
)
# 2: payload_digest is MD5 (was BLAKE2b-64) and canonical_digest exists.
# 3: object_uri, object_line and object_index exist (a version 2 CSV lacks columns a reader of 3 names).
# 4: event exists: the event's JSON as published (a JSON object payload up to EVENT_TEXT_LIMIT bytes), which a
#    sink contract needs to find events by natural key and to compare converted values (reconcile.contract).
# 5: scenario exists: the phase of the run (a `workbench check` scenario) that sent the event, empty for a run
#    without phases; a run of phases has "phases" in manifest.json (publisher.run); and outcome_ms, when the
#    outcome was known (epoch milliseconds).
MANIFEST_VERSION = 5
# The oldest manifest reconcile reads with the built-in contract (which needs no `event`).
MIN_RECONCILE_VERSION = 3
# A payload larger than this is not kept in `event` (a malformed oversize payload: its MD5 identifies it). Every
# valid event is kept, up to the largest the pipeline accepts: a natural-key sink contract finds a near-limit event
# by its JSON here like any other.
EVENT_TEXT_LIMIT = MAX_PAYLOAD_BYTES
# The csv module refuses a field longer than 131,072 characters by default (_csv.Error "field larger than field
# limit"), and `event` now holds up to EVENT_TEXT_LIMIT. Every Python reader of events-*.csv (iter_events, tally,
# recount here; reconcile.engine, workbench.check_run, loadtest.run_manifest) imports this module, so the limit is
# raised here, once for the process, with room to spare (it counts characters; a payload has at most as many).
csv.field_size_limit(max(csv.field_size_limit(), 2 * EVENT_TEXT_LIMIT))
PUBLISHED = "published"
FAILED = "failed"
OBJECT_COLUMNS = (
    "object_uri",
    "key",
    "span",  # which of the run's --objects spans the object belongs to
    "format",  # ndjson | array | per-event
    "gzip",  # "1" when the body is a gzip stream
    "event_type",  # the type folder under --split-by-type, else empty
    "records",
    "raw_bytes",  # the uncompressed body's length
    "stored_bytes",  # what S3 holds (compressed when gzip)
    "raw_md5",  # MD5 of the uncompressed body
    "outcome",  # published | failed
)


@dataclass(frozen=True, slots=True)
class Placed:
    """A message as an object store holds it: what the manifest records of it, without the payload, and where.

    The S3 sink hands these (not the messages) to the outcome callback once the object that holds them is
    written, so an object's events are recorded after S3 has them and the payloads need not be kept."""

    event_id: str
    expected: str
    event_type: str
    reason: str | None
    kind: str | None
    event_time: str | None
    duplicate: bool
    canonical_digest: str | None
    payload_digest: str
    object_uri: str
    object_line: int
    object_index: int

    @classmethod
    def of(cls, message: Any, object_uri: str, line: int, index: int, event_id: str | None = None) -> Placed:
        """event_id: the id the record has where it is put (a history record's, eventmodel.history.identity)."""
        return cls(event_id or message.event_id, message.expected, message.event_type, message.reason, message.kind,
                   message.event_time, message.duplicate, message.canonical_digest, payload_digest(message.data),
                   object_uri, line, index)  # fmt: skip

    def as_row(self) -> tuple[str, ...]:
        """A flat form for spilling to disk; from_row() reads it back."""
        return (self.event_id, self.expected, self.event_type, self.reason or "", self.kind or "",
                self.event_time or "", "1" if self.duplicate else "", self.canonical_digest or "",
                self.payload_digest, self.object_uri, str(self.object_line), str(self.object_index))  # fmt: skip

    @classmethod
    def from_row(cls, row: list[str]) -> Placed:
        return cls(row[0], row[1], row[2], row[3] or None, row[4] or None, row[5] or None, row[6] == "1",
                   row[7] or None, row[8], row[9], int(row[10]), int(row[11]))  # fmt: skip


def payload_digest(data: bytes) -> str:
    """The payload's MD5 hex: what BigQuery's TO_HEX(MD5(payload)) and DuckDB's md5(payload) give back."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def event_text(data: bytes, valid: bool) -> str:
    """What the manifest keeps of a payload in `event`: a valid event's JSON as sent; a malformed payload's only
    when it is a JSON object (then a pipeline that wrongly accepts it can be caught holding it by natural key)."""
    if len(data) > EVENT_TEXT_LIMIT:
        return ""
    if not valid:
        try:
            if not isinstance(orjson.loads(data), dict):
                return ""
        except orjson.JSONDecodeError:
            return ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return ""


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

    def record(self, message: Any, outcome: str, message_id: str | None) -> bool:
        """Record one outcome of a message (generator.stream.OutgoingMessage, or a Placed from an object store).
        False when the log was already closed (a forced stop): the message stays in flight, unrecorded."""
        if isinstance(message, Placed):
            digest = message.payload_digest
            where = (message.object_uri, str(message.object_line), str(message.object_index))
            event = ""
        else:
            digest = payload_digest(message.data)
            where = ("", "", "")
            event = event_text(message.data, message.expected != "dead_letter")
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
            digest,
            message.canonical_digest or "",
            *where,
            event,
            # A Placed (object store) and the messages of older callers carry no tag: no scenario.
            getattr(message, "scenario", ""),
            str(time.time_ns() // 1_000_000),
        )
        with self._lock:
            if self._file.closed:  # an outcome that came after a forced stop: the run counts it as in flight
                return False
            self._writer.writerow(row)
            count(self.counts, outcome, message.expected, message.event_type, message.kind, message.reason,
                  message.duplicate)  # fmt: skip
        return True

    def snapshot_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        with self._lock:
            self._file.close()


class ObjectLog:
    """The objects-<worker>.csv of one worker of an S3 run: one line per object, when its outcome is known."""

    def __init__(self, directory: Path, worker: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"objects-{worker}.csv"
        self._file = self.path.open("w", newline="", buffering=1 << 16)
        self._writer = csv.writer(self._file)
        self._writer.writerow(OBJECT_COLUMNS)

    def record(self, **values: Any) -> None:
        self._writer.writerow(["" if values.get(c) is None else values[c] for c in OBJECT_COLUMNS])

    def close(self) -> None:
        self._file.close()


def iter_objects(run_id: str) -> Iterator[dict[str, str]]:
    """Every object an S3 run wrote (or failed to), streamed from its objects-*.csv."""
    for path in sorted(run_dir(run_id).glob("objects-*.csv")):
        with path.open(newline="") as f:
            yield from csv.DictReader(f)


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


def tally(run_id: str, scenarios: dict[str, Counter[str]] | None = None) -> Counter[str]:
    """The counts of a run from its events CSVs, for a manifest written by a process that published nothing
    itself (the Locust master, or `workbench loadtest` after its processes ended). scenarios, when given, gets
    the outcomes (published, failed) of each scenario tag in the same pass (a manifest older than 5 has none)."""
    counts: Counter[str] = Counter()
    for row in iter_events(run_id):
        count(counts, row["outcome"], row["expected"], row["event_type"], row["kind"], row["reason"],
              row["duplicate"] == "1")  # fmt: skip
        if scenarios is not None and row.get("scenario"):
            scenarios.setdefault(row["scenario"], Counter())[row["outcome"]] += 1
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


# The effective state of a run (run_state): the manifest's status, except that a run whose manifest says running
# while its publishing process is gone is dead (killed with SIGKILL, a crash, a power cut): nobody will finish it.
RUNNING = "running"
COMPLETED = "completed"
INTERRUPTED = "interrupted"
DEAD = "dead"


def _start_ticks(pid: int) -> int | None:
    """When pid started, in clock ticks since boot (Linux /proc/PID/stat field 22); None elsewhere or if gone.
    A pid and its start time name one process: a recycled pid has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def this_process() -> dict[str, Any]:
    """What manifest.json's "publisher" records, so that run_state() can tell a live publisher from a dead one."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": _start_ticks(os.getpid())}


def process_gone(publisher: dict[str, Any] | None) -> bool:
    """True only when the recorded process provably no longer runs: same host, and its pid is free, a zombie, or
    taken by a process that started later. Another host, or no record (older manifests), is never called gone."""
    if not publisher or not publisher.get("pid") or publisher.get("host") != socket.gethostname():
        return False
    pid = int(publisher["pid"])
    if not Path("/proc").is_dir():  # no start times here: the pid alone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    ticks = _start_ticks(pid)
    return ticks is None or (publisher.get("start_ticks") is not None and ticks != publisher["start_ticks"])


def run_state(manifest: dict[str, Any]) -> str:
    """running | completed | interrupted | failed | dead: the one answer `workbench runs` and reconcile give.

    dead: the manifest says running but its publisher is gone, so it will never be finished; its totals are the
    last ones written (up to a second old) and what was in flight when it died is unknown."""
    status = manifest.get("status") or "unknown"
    if status == RUNNING and process_gone(manifest.get("publisher")):
        return DEAD
    return status


def recount(
    run_id: str, sent: int, scenarios: dict[str, Counter[str]] | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """Totals and counts of a run from what its events-*.csv hold, for a run stopped before its workers could
    report their last numbers: published and failed are what the CSVs say; in flight is the rest of `sent` (the
    messages handed to a sink whose outcome was never recorded). scenarios: as tally's."""
    counts = tally(run_id, scenarios)
    published, failed = counts.get(PUBLISHED, 0), counts.get(FAILED, 0)
    sent = max(sent, published + failed)
    totals = {"sent": sent, "published": published, "failed": failed, "in_flight": sent - published - failed}
    return totals, dict(sorted(counts.items()))


def stop_note(manifest: dict[str, Any]) -> str | None:
    """For a report on an interrupted run: that it was stopped early, how, and what is being compared."""
    if manifest.get("status") != INTERRUPTED:
        return None
    stop = manifest.get("stop") or {}
    how = f" by {stop['signal']}" if stop.get("signal") else ""
    published = (manifest.get("totals") or {}).get("published", 0)
    phases = manifest.get("phases") or []  # a run of phases plans each phase's messages, not a count
    planned = (manifest.get("plan") or {}).get("count") or sum(p.get("planned") or 0 for p in phases)
    of = f" of the {planned:,} planned" if planned else ""
    return (
        f"run {manifest.get('run_id')} was interrupted{how}: {published:,}{of} messages were published before the "
        "stop, and those are what this report compares"
    )
