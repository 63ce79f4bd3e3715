"""Reconcile benchmark: one run of N events (1,000,000 by default) reconciled against its GCS files, its BigQuery
rows and its manifest, beside a naive Python-dict reconcile of the same data measured in the same run.

    .venv/bin/python benchmarks/bench_reconcile.py                  # 1,000,000 events (~4 minutes, mostly generating)
    .venv/bin/python benchmarks/bench_reconcile.py --quick          # 50,000 events (~1 minute)
    .venv/bin/python benchmarks/bench_reconcile.py --events 200000 --no-emulator

Generated first, into a temporary folder (not measured; its time is printed apart): a run of N messages from
EventStream (5% malformed, 1% duplicates) "published" at a simulated 1,000 messages/s (the clock advances 1 ms per
message, so a million events span ~17 minutes of event time), with
- its manifest, as `workbench publish` writes it: events-0.csv through EventLog, manifest.json (completed, version 2)
  under a temporary WORKBENCH_HOME; every message has a Pub/Sub message id;
- the GCS tree as the pipeline writes it: valid events deduplicated on event_id, grouped by (type, minute of their
  event time) and flushed every 5 s of publish time or 5,000 lines (WriteEventFiles' defaults) to
  pipeline.core.file_path, one pipeline.core.file_line per event; each file's mtime is when it "landed";
- the rows reconcile would fetch from BigQuery, built directly: the bigquery sink's sink_events rows (the columns
  reconcile.queries.bigquery_select returns, canonical_digest being eventmodel.canonical.canonical_digest of the
  event) and the dead_letters rows of the dead_letters table (payload cut at 1 MB) and of the dead-letter topic,
  as Arrow files.

Measured, each in a fresh process (multiprocessing 'spawn'; peak RSS is that process's VmHWM):
- reconcile: reconcile.run.reconcile() itself, on a DuckDBEngine into which the BigQuery and dead-letter Arrow
  tables were loaded first with DuckDBEngine.load_arrow (counted in the time). reconcile() reads the manifest, the
  known runs and the GCS tree itself and runs every comparison statement. The target names no dataset and no topic
  (so reconcile fetches nothing from the emulators) but says all four sinks are checked, so a missing BigQuery row
  or dead letter fails the verdict as it would in a real reconcile. Module imports are timed apart.
- baseline: the obvious Python implementation: csv.DictReader over the manifest, json.loads and
  eventmodel.canonical.canonical_digest over every GCS line, the Arrow rows as Python dicts (as a BigQuery client
  returns rows), dicts of event_id -> copies per sink, and the same diagnoses in Python loops. It must give the
  same per-type and per-kind counts and the same problems as reconcile.
Then a small run (5,000 messages) is broken three ways (a BigQuery row dropped, a GCS line altered, a dead letter
missing from the topic): reconcile and the baseline must both exit 1 naming exactly those events.
Not included in the reconcile time: fetching the rows from the BigQuery emulator (loading a million rows into
bqemulator is far too slow for a benchmark). Unless --no-emulator, that fetch is measured apart on a small run
(--emulator-rows, 20,000 messages): bqemulator started, the ddl/ model applied, the event rows loaded with load jobs
(the dead letters streamed: bqemulator's JSON load jobs keep BYTES base64-encoded), and reconcile() run for real
against it, its verdict and per-type counts required equal to those of the same run with the rows preloaded.
Target (issue): reconcile 1,000,000 events in under 30 s on this machine, peak memory stated.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import multiprocessing
import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _machine import describe  # benchmarks/ is the script's folder, hence on sys.path
from rich.console import Console
from rich.table import Table

TARGET_S = 30.0
RATE = 1_000.0  # simulated publish rate, messages/s: event and publish times advance 1 ms per message
FLUSH_S = 5.0  # WriteEventFiles' flush_seconds and max_lines defaults
MAX_LINES = 5_000
BROKEN_EVENTS = 5_000
PROJECT = "bench-reconcile"
HOME_ENV = "WORKBENCH_HOME"
BY_TYPE_FIELDS = ("expected", "in_gcs", "in_bigquery", "missing", "gcs_duplicated", "bigquery_raw_duplicated",
                  "misplaced", "altered", "dead_lettered", "ok")  # fmt: skip
BY_KIND_FIELDS = ("sent", "accepted", "expected_reason", "other_reason", "missing", "bytes_altered", "ok")
console = Console()


# ------------------------------------------------------------------------------------------------ generation


def generate(folder: Path, events: int, seed: int, full_rows: bool = False) -> dict[str, Any]:
    """A finished run of `events` messages with its manifest, GCS tree and BigQuery/dead-letter rows (see top).

    full_rows: also write the BigQuery tables' own rows (eventmodel.rows) as NDJSON, for the emulator fetch.
    """
    import orjson
    import pyarrow as pa

    from eventmodel import resources as names
    from eventmodel import rows
    from eventmodel.schema import MAX_PAYLOAD_BYTES
    from eventmodel.validate import Accepted
    from generator.stream import DEAD_LETTER, EventStream, GeneratorConfig
    from pipeline.core import STAGE_VALIDATE, ValidEvent, file_line, file_path, minute_key
    from publisher.manifest import (
        MANIFEST_VERSION,
        PUBLISHED,
        EventLog,
        new_run_id,
        payload_digest,
        run_dir,
        write_manifest,
    )
    from publisher.sinks import PubSubTarget
    from reconcile import queries as Q
    from reconcile.engine import DEAD_LETTER_COLUMNS, SINK_EVENT_COLUMNS

    began = time.perf_counter()
    home, output = folder / "home", folder / "output"
    os.environ[HOME_ENV] = str(home)  # run_dir() and write_manifest() write under it
    start = time.time() - events / RATE - 120  # the whole run lies in the past: files landed before "now"
    run_id = new_run_id(datetime.fromtimestamp(start, UTC))
    now = [start]
    config = GeneratorConfig(seed=seed, malformed_rate=0.05, duplicate_rate=0.01)
    produce = iter(EventStream(config, run_id, clock=lambda: now[0])).__next__
    log = EventLog(run_dir(run_id), 0)
    sink_events: dict[str, list] = {c: [] for c in SINK_EVENT_COLUMNS}
    letters: dict[str, list] = {c: [] for c in DEAD_LETTER_COLUMNS}
    table_rows: dict[str, list[bytes]] = {}
    seen: set[str] = set()
    buffers: dict[tuple[str, str], tuple[float, list[bytes]]] = {}
    sequences: Counter[tuple[str, str]] = Counter()
    written = {"files": 0, "bytes": 0}

    def flush(key: tuple[str, str], lines: list[bytes], at: float) -> None:
        event_type, minute = key
        path = file_path(str(output), event_type, minute, sequences[key])
        sequences[key] += 1
        os.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        body = b"".join(lines)
        with open(path, "wb") as f:
            f.write(body)
        os.utime(path, (at + 0.3, at + 0.3))  # when the object "landed": just after the flush
        written["files"] += 1
        written["bytes"] += len(body)

    def flush_due(at: float) -> None:
        for key, (first, lines) in list(buffers.items()):
            if at - first >= FLUSH_S:
                flush(key, lines, at)
                del buffers[key]

    def add_letter(sink: str, location: str, m: Any, message_id: str, digest: str, cut: bool,
                   publish_us: int | None, landed_us: int) -> None:  # fmt: skip
        for column, value in (
            ("sink", sink), ("location", location), ("event_id", m.event_id), ("source_message_id", message_id),
            ("run_id", run_id), ("reason", m.reason), ("stage", STAGE_VALIDATE), ("payload_digest", digest),
            ("payload_cut", cut), ("publish_time", publish_us), ("landed_time", landed_us),
        ):  # fmt: skip
            letters[column].append(value)

    malformed = duplicates = 0
    for i in range(events):
        t = start + i / RATE
        now[0] = t
        m = produce()
        message_id = str(10_000_000_000 + i)  # Pub/Sub message ids are decimal strings
        log.record(m, PUBLISHED, message_id)
        publish_us = int(t * 1_000_000) + 2_000  # Pub/Sub stamps publish_time a little after the send
        published = datetime.fromtimestamp(publish_us / 1_000_000, UTC)
        if m.expected == DEAD_LETTER:  # dead-lettered by the validator: the dead_letters table and the topic
            malformed += 1
            digest = payload_digest(m.data)
            cut = len(m.data) > MAX_PAYLOAD_BYTES
            table_digest = payload_digest(m.data[:MAX_PAYLOAD_BYTES]) if cut else digest
            add_letter(Q.DEAD_LETTER_TABLE, rows.DEAD_LETTER_TABLE, m, message_id, table_digest, cut,
                       publish_us, publish_us + 150_000)  # fmt: skip
            add_letter(Q.DEAD_LETTER_TOPIC, f"{names.DEAD_LETTER_TOPIC}/{20_000_000_000 + i}", m, message_id,
                       digest, False, None, publish_us + 120_000)  # fmt: skip
            if full_rows:
                row = rows.dead_letter_row(
                    m.data, reason=m.reason, detail="bench", stage=STAGE_VALIDATE, message_id=message_id,
                    publish_time=published, attributes=m.attributes,
                    ingest_time=datetime.fromtimestamp(publish_us / 1_000_000 + 0.15, UTC),
                )  # fmt: skip
                table_rows.setdefault(rows.DEAD_LETTER_TABLE, []).append(orjson.dumps(row))
        elif m.event_id in seen:  # a duplicate: the pipeline keeps the first copy only
            duplicates += 1
        else:
            seen.add(m.event_id)
            event = orjson.loads(m.data)
            event_time = datetime.fromisoformat(m.event_time)
            valid = ValidEvent(m.event_type, event, event_time, m.event_id, message_id, published, m.attributes,
                               m.data)  # fmt: skip
            minute = minute_key(event_time)
            key = (m.event_type, minute)
            buffer = buffers.get(key)
            if buffer is None:
                buffer = buffers[key] = (t, [])
            buffer[1].append(file_line(valid))
            if len(buffer[1]) >= MAX_LINES:
                flush(key, buffer[1], t)
                del buffers[key]
            table = rows.table_of(m.event_type)
            for column, value in (
                ("sink", Q.BIGQUERY), ("location", table), ("event_id", m.event_id), ("message_id", message_id),
                ("run_id", run_id), ("publish_time", publish_us), ("landed_time", publish_us + 250_000),
                ("event_type", m.event_type), ("container_type", m.event_type), ("event_minute", minute),
                ("container_minute", None), ("name_ok", True), ("canonical_digest", m.canonical_digest),
            ):  # fmt: skip
                sink_events[column].append(value)
            if full_rows:
                row = rows.event_row(
                    Accepted(m.event_type, event, event_time), message_id=message_id, publish_time=published,
                    attributes=m.attributes, ingest_time=datetime.fromtimestamp(publish_us / 1_000_000 + 0.25, UTC),
                )  # fmt: skip
                table_rows.setdefault(table, []).append(orjson.dumps(row))
        if i % 1000 == 999:
            flush_due(t)
    end = start + events / RATE
    for key, (_first, lines) in buffers.items():
        flush(key, lines, end)
    log.close()
    write_manifest(run_id, {
        "run_id": run_id,
        "manifest_version": MANIFEST_VERSION,
        "status": "completed",
        "started_at": _iso(start),
        "finished_at": _iso(end),
        "elapsed_s": round(end - start, 3),
        "active_s": round(end - start, 3),
        "target": asdict(PubSubTarget(PROJECT, names.TOPIC, None)) | {"kind": "pubsub"},
        "plan": {"rate": RATE, "profile": "constant", "count": events, "duration_s": None, "workers": 1},
        "generator": config.as_dict(),
        "totals": {"sent": events, "published": events, "failed": 0, "in_flight": 0},
        "counts": log.snapshot_counts(),
        "errors": [],
    })  # fmt: skip

    def save(columns: dict[str, list], types: dict[str, str], name: str) -> str:
        kinds = {"STRING": pa.string(), "BOOL": pa.bool_(), "TIMESTAMP": pa.timestamp("us", tz="UTC")}
        schema = pa.schema([(c, kinds[k]) for c, k in types.items()])
        table = pa.table({c: pa.array(columns[c], type=schema.field(c).type) for c in types}, schema=schema)
        path = str(folder / f"{name}.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            writer.write_table(table)
        return path

    run = {
        "run_id": run_id,
        "home": str(home),
        "output": str(output),
        "sink_events": save(sink_events, SINK_EVENT_COLUMNS, "bigquery_sink_events"),
        "dead_letters": save(letters, DEAD_LETTER_COLUMNS, "dead_letters"),
        "messages": events,
        "valid": len(seen),
        "malformed": malformed,
        "duplicates": duplicates,
        "files": written["files"],
        "gcs_bytes": written["bytes"],
        "table_rows": {},
    }
    for table, lines in table_rows.items():
        path = folder / f"rows-{table}.json"
        path.write_bytes(b"\n".join(lines) + b"\n")
        run["table_rows"][table] = str(path)
    run["seconds"] = time.perf_counter() - began
    return run


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def break_run(run: dict[str, Any]) -> dict[str, str]:
    """Break a generated run three ways; return {event_id: the problem reconcile must name}."""
    import orjson
    import pyarrow as pa
    import pyarrow.compute as pc

    from reconcile import queries as Q

    expected: dict[str, str] = {}
    table = _read_arrow(run["sink_events"])  # drop one BigQuery row: missing_in_bigquery
    dropped = table["event_id"][len(table) // 2].as_py()
    _write_arrow(run["sink_events"], table.filter(pc.not_equal(table["event_id"], pa.scalar(dropped))))
    expected[dropped] = "missing_in_bigquery"
    letters = _read_arrow(run["dead_letters"])  # lose one dead letter on the topic: missing_in_dead_letter_topic
    on_topic = letters.filter(pc.equal(letters["sink"], pa.scalar(Q.DEAD_LETTER_TOPIC)))
    lost = on_topic["event_id"][len(on_topic) // 2].as_py()
    keep = pc.invert(pc.and_(pc.equal(letters["sink"], pa.scalar(Q.DEAD_LETTER_TOPIC)),
                             pc.equal(letters["event_id"], pa.scalar(lost))))  # fmt: skip
    _write_arrow(run["dead_letters"], letters.filter(keep))
    expected[lost] = "missing_in_dead_letter_topic"
    path = sorted(glob.glob(f"{run['output']}/user_activity/**/*.json", recursive=True))[0]  # alter one GCS line
    lines = Path(path).read_bytes().splitlines(keepends=True)
    record = orjson.loads(lines[0])
    user = record["event"]["user_id"]
    record["event"]["user_id"] = user[:-1] + ("0" if user[-1] != "0" else "1")
    lines[0] = orjson.dumps(record) + b"\n"
    stat = os.stat(path)
    Path(path).write_bytes(b"".join(lines))
    os.utime(path, (stat.st_atime, stat.st_mtime))
    expected[record["event_id"]] = "altered"
    return expected


def _read_arrow(path: str) -> Any:
    import pyarrow as pa

    with pa.memory_map(path) as source:
        return pa.ipc.open_file(source).read_all()


def _write_arrow(path: str, table: Any) -> None:
    import pyarrow as pa

    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


# ------------------------------------------------------------------------------- measurements (child processes)


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _summary(report: Any) -> dict[str, Any]:
    return {
        "exit_code": report.exit_code,
        "headline": report.headline(),
        "by_type": {r["event_type"]: {k: int(r[k] or 0) for k in BY_TYPE_FIELDS} for r in report.by_type},
        "by_kind": {r["kind"]: {k: int(r[k] or 0) for k in BY_KIND_FIELDS} for r in report.by_kind},
        "problems": {p["event_id"]: p["problem"] for p in report.problems},
        "unexpected": len(report.unexpected),
        "foreign": len(report.foreign),
        "sizes": dict(report.sizes),
        "checked": dict(report.checked),
    }


def _phases(began: float, stamps: list[tuple[float, str]], done: float) -> dict[str, float]:
    """Phase times from reconcile's on_step messages: manifest (up to the listing), listing, GCS read, compare."""
    at = {}
    for moment, text in stamps:
        for prefix in ("listing", "reading BigQuery", "reading", "comparing"):
            if text.startswith(prefix):
                at.setdefault(prefix, moment)
                break
    phases = {"manifest + known runs": at["listing"] - began, "list GCS files": at["reading"] - at["listing"]}
    if "reading BigQuery" in at:
        phases["read GCS lines"] = at["reading BigQuery"] - at["reading"]
        phases["BigQuery emulator fetch"] = at["comparing"] - at["reading BigQuery"]
    else:
        phases["read GCS lines"] = at["comparing"] - at["reading"]
    phases["compare (queries)"] = done - at["comparing"]
    return phases


def reconcile_child(run: dict[str, Any]) -> dict[str, Any]:
    """reconcile.run.reconcile() of the run, the BigQuery and dead-letter rows preloaded into its engine."""
    os.environ[HOME_ENV] = run["home"]
    imported = time.perf_counter()
    from dataclasses import dataclass as _dataclass

    import apache_beam.io.filesystems  # noqa: F401 - the GCS listing's import (~2 s), paid once per process

    from reconcile import queries as Q
    from reconcile.engine import DuckDBEngine
    from reconcile.run import ReconcileTarget, reconcile

    @_dataclass(frozen=True)
    class PreloadedTarget(ReconcileTarget):
        """No dataset and no topic to read (their rows are in the engine already), yet all four are checked."""

        def checked(self) -> dict[str, bool]:
            return dict.fromkeys(Q.SINKS, True)

    began = time.perf_counter()
    import_s = began - imported
    engine = DuckDBEngine()
    try:
        for table in ("sink_events", "dead_letters"):
            engine.load_arrow(table, _read_arrow(run[table]))
        loaded = time.perf_counter()
        stamps: list[tuple[float, str]] = []
        target = PreloadedTarget(output_root=run["output"], dataset=None, read_dead_letter_topic=False)
        report = reconcile(run["run_id"], target, lambda text: stamps.append((time.perf_counter(), text)), engine)
        done = time.perf_counter()
    finally:
        engine.close()
    phases = {"BigQuery + dead-letter rows into DuckDB (load_arrow)": loaded - began}
    phases.update(_phases(loaded, stamps, done))
    return {"seconds": done - began, "import_s": import_s, "phases": phases, "peak_mb": _peak_rss_mb(),
            **_summary(report)}  # fmt: skip


def emulator_reconcile_child(run: dict[str, Any], endpoint: str) -> dict[str, Any]:
    """reconcile.run.reconcile() of the run for real: the BigQuery rows fetched from the emulator (no topic)."""
    os.environ[HOME_ENV] = run["home"]
    import apache_beam.io.filesystems  # noqa: F401
    import google.cloud.bigquery  # noqa: F401

    from eventmodel import resources as names
    from reconcile.run import ReconcileTarget, reconcile

    target = ReconcileTarget(output_root=run["output"], project=PROJECT, dataset=names.DATASET,
                             bigquery_emulator=endpoint, read_dead_letter_topic=False)  # fmt: skip
    stamps: list[tuple[float, str]] = []
    began = time.perf_counter()
    report = reconcile(run["run_id"], target, lambda text: stamps.append((time.perf_counter(), text)))
    done = time.perf_counter()
    return {"seconds": done - began, "phases": _phases(began, stamps, done), "peak_mb": _peak_rss_mb(),
            **_summary(report)}  # fmt: skip


def baseline_child(run: dict[str, Any]) -> dict[str, Any]:
    """The naive reconcile: Python dicts and loops over csv, json and canonical_digest; same diagnoses."""
    os.environ[HOME_ENV] = run["home"]
    from eventmodel.canonical import canonical_digest
    from eventmodel.schema import EVENT_TIME_FIELD
    from publisher.manifest import run_dir, runs_root
    from reconcile import queries as Q
    from reconcile.run import WINDOW_SLACK
    from reconcile.sources import place_of

    began = time.perf_counter()
    phases: dict[str, float] = {}
    run_id = run["run_id"]
    # 1. the manifest: event_id -> its first row, with the number of copies sent
    sent: dict[str, dict[str, Any]] = {}
    for path in sorted(glob.glob(str(run_dir(run_id) / "events-*.csv"))):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["outcome"] != "published":
                    continue
                first = sent.get(row["event_id"])
                if first is None:
                    row["copies"] = 1
                    sent[row["event_id"]] = row
                else:
                    first["copies"] += 1
    with open(run_dir(run_id) / "manifest.json") as f:
        manifest = json.load(f)
    known = {run_id}
    for path in glob.glob(str(runs_root() / "*" / "manifest.json")):
        with open(path) as f:
            known.add(json.load(f)["run_id"])
    start = _parse(manifest["started_at"]) - WINDOW_SLACK.total_seconds()
    end = _parse(manifest["finished_at"]) + WINDOW_SLACK.total_seconds()

    def in_scope(row_run: str | None, publish_time: str | None) -> bool:
        if row_run == run_id:
            return True
        publish_s = _parse(publish_time)
        return (row_run is None or row_run not in known) and publish_s is not None and start <= publish_s <= end

    after = time.perf_counter()
    phases["manifest"], mark = after - began, after
    # 2. the GCS tree: event_id -> copies (event type, folder type, event minute, folder minute, name ok, digest)
    copies: dict[str, dict[str, list[tuple]]] = {Q.GCS: {}, Q.BIGQUERY: {}}
    others: list[tuple[str, str | None, str]] = []  # (sink, run_id, event_id) of every copy, for unexpected/foreign
    root = run["output"]
    files = 0
    for dirpath, _folders, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            place = place_of(root, path) if name.endswith(".json") else None
            if place is None:
                continue
            files += 1
            container_type, container_minute, name_ok = place
            time_field = EVENT_TIME_FIELD[container_type]
            with open(path, encoding="utf-8") as f:
                for text in f:
                    try:
                        line = json.loads(text)
                        event = line["event"]
                    except (ValueError, KeyError, TypeError):
                        continue
                    row_run = (line.get("attributes") or {}).get("run_id")
                    if not in_scope(row_run, line.get("publish_time")):
                        continue
                    copy = (event.get("event_type"), container_type, _minute(event.get(time_field)), container_minute,
                            name_ok, canonical_digest(container_type, event))  # fmt: skip
                    copies[Q.GCS].setdefault(line["event_id"], []).append(copy)
                    others.append((Q.GCS, row_run, line["event_id"]))
    after = time.perf_counter()
    phases["GCS lines (json.loads + canonical_digest)"], mark = after - mark, after
    # 3. the BigQuery rows and dead letters, as Python rows (what a BigQuery client hands back)
    for row in _read_arrow(run["sink_events"]).to_pylist():
        copy = (row["event_type"], row["container_type"], row["event_minute"], row["container_minute"],
                row["name_ok"], row["canonical_digest"])  # fmt: skip
        copies[row["sink"]].setdefault(row["event_id"], []).append(copy)
        others.append((row["sink"], row["run_id"], row["event_id"]))
    letters: dict[str, dict[str, list[dict]]] = {Q.DEAD_LETTER_TABLE: {}, Q.DEAD_LETTER_TOPIC: {}}
    for row in _read_arrow(run["dead_letters"]).to_pylist():
        letters[row["sink"]].setdefault(row["event_id"], []).append(row)
        others.append((row["sink"], row["run_id"], row["event_id"]))
    after = time.perf_counter()
    phases["BigQuery + dead-letter rows as dicts"], mark = after - mark, after
    # 4. compare, event by event
    by_type: dict[str, Counter[str]] = {}
    by_kind: dict[str, Counter[str]] = {}
    problems: dict[str, str] = {}
    for event_id, s in sent.items():
        g = _held(copies[Q.GCS].get(event_id, ()), s, gcs=True)
        b = _held(copies[Q.BIGQUERY].get(event_id, ()), s, gcs=False)
        dt = _lettered(letters[Q.DEAD_LETTER_TABLE].get(event_id, ()), s)
        dq = _lettered(letters[Q.DEAD_LETTER_TOPIC].get(event_id, ()), s)
        if s["expected"] == Q.DEAD_LETTER:
            if g[0] + b[0] > 0:
                problem = "accepted"
            elif dt[0] == 0 and dq[0] == 0:
                problem = "missing"
            elif dt[0] == 0:
                problem = "missing_in_dead_letter_table"
            elif dq[0] == 0:
                problem = "missing_in_dead_letter_topic"
            elif dt[1] == 0 or dq[1] == 0:
                problem = "other_reason"
            elif dt[2] + dq[2] > 0:
                problem = "altered"
            else:
                problem = None
            counts = by_kind.setdefault(s["kind"], Counter())
            counts["sent"] += 1
            counts["accepted"] += problem == "accepted"
            counts["expected_reason"] += dt[1] > 0 or dq[1] > 0
            counts["other_reason"] += problem == "other_reason"
            counts["missing"] += problem in ("missing", "missing_in_dead_letter_table", "missing_in_dead_letter_topic")
            counts["bytes_altered"] += dt[2] + dq[2] > 0
        else:
            if g[0] == 0 and b[0] == 0:
                problem = "missing"
            elif g[0] == 0:
                problem = "missing_in_gcs"
            elif b[0] == 0:
                problem = "missing_in_bigquery"
            elif g[1] + b[1] > 0:
                problem = "misplaced"
            elif g[2] + b[2] > 0:
                problem = "altered"
            elif g[0] > 1:
                problem = "duplicated"
            else:
                problem = None
            counts = by_type.setdefault(s["event_type"], Counter())
            counts["expected"] += 1
            counts["in_gcs"] += g[0] > 0
            counts["in_bigquery"] += b[0] > 0
            counts["missing"] += problem in ("missing", "missing_in_gcs", "missing_in_bigquery")
            counts["gcs_duplicated"] += g[0] > 1
            counts["bigquery_raw_duplicated"] += b[0] > 1
            counts["misplaced"] += g[1] + b[1] > 0
            counts["altered"] += g[2] + b[2] > 0
            counts["dead_lettered"] += dt[0] + dq[0] > 0
        counts["ok"] += problem is None
        if problem is not None:
            problems[event_id] = problem
    unexpected = sum(1 for _sink, r, e in others if r == run_id and e not in sent)
    foreign = sum(1 for _sink, r, _e in others if r is None or r not in known)
    done = time.perf_counter()
    phases["compare (Python loops)"] = done - mark
    exit_code = 0 if not problems and not unexpected and not foreign else 1
    return {
        "seconds": done - began,
        "phases": phases,
        "peak_mb": _peak_rss_mb(),
        "exit_code": exit_code,
        "files": files,
        "by_type": {t: {k: int(c[k]) for k in BY_TYPE_FIELDS} for t, c in by_type.items()},
        "by_kind": {k: {f: int(c[f]) for f in BY_KIND_FIELDS} for k, c in by_kind.items()},
        "problems": problems,
        "unexpected": unexpected,
        "foreign": foreign,
    }


def _held(found: Any, s: dict[str, Any], gcs: bool) -> tuple[int, int, int]:
    """(copies, misplaced, altered) of one event in one event sink: EVENT_STATUS's `held`, in Python."""
    misplaced = altered = 0
    for event_type, container_type, event_minute, container_minute, name_ok, digest in found:
        misplaced += (
            container_type != s["event_type"] or event_type is None or event_type != s["event_type"]
            or (gcs and (container_minute is None or event_minute is None or container_minute != event_minute
                         or not name_ok))
        )  # fmt: skip
        altered += digest is None or digest != s["canonical_digest"]
    return len(found), misplaced, altered


def _lettered(found: Any, s: dict[str, Any]) -> tuple[int, int, int]:
    """(copies, with the right reason, altered) of one event in one dead-letter sink."""
    right = sum(1 for d in found if d["reason"] == s["reason"])
    altered = sum(1 for d in found if not d["payload_cut"] and d["payload_digest"] != s["payload_digest"])
    return len(found), right, altered


def _parse(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _minute(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).strftime("%Y%m%d%H%M")
    except ValueError:
        return None


def in_child(function: Any, *args: Any) -> Any:
    """Run function(*args) in a fresh spawned process (its own peak memory), return what it returns."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# ------------------------------------------------------------------------------------------- emulator fetch


def emulator_fetch(folder: Path, events: int, seed: int) -> dict[str, Any]:
    """A small run's rows loaded into a fresh bqemulator; reconcile() run against it, and with the rows preloaded."""
    import orjson
    from google.cloud import bigquery

    from ddl.apply import apply_ddl
    from eventmodel.rows import DEAD_LETTER_TABLE
    from workbench.localstack.emulators import start_bigquery_emulator

    run = generate(folder, events, seed, full_rows=True)
    began = time.perf_counter()
    with start_bigquery_emulator(project=PROJECT, time_travel=False) as emulator:
        started = time.perf_counter()
        apply_ddl(project=PROJECT, emulator=emulator.host_port)
        client = emulator.client()
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
                                        write_disposition=bigquery.WriteDisposition.WRITE_APPEND)  # fmt: skip
        for table, path in run["table_rows"].items():
            if table == DEAD_LETTER_TABLE:  # bqemulator's JSON load jobs keep BYTES base64-encoded: stream them
                with open(path, "rb") as body:
                    lines = [orjson.loads(line) for line in body]
                for at in range(0, len(lines), 500):
                    errors = client.insert_rows_json(f"{PROJECT}.events.{table}", lines[at : at + 500])
                    assert not errors, errors[:3]
                continue
            with open(path, "rb") as body:
                client.load_table_from_file(body, f"{PROJECT}.events.{table}", job_config=config).result(timeout=300)
        loaded = time.perf_counter()
        real = in_child(emulator_reconcile_child, run, emulator.endpoint)
    preloaded = in_child(reconcile_child, run)
    rows = real["sizes"].get("bigquery", 0) + real["sizes"].get("dead_letter_table", 0)
    return {"run": run, "real": real, "preloaded": preloaded, "rows": rows, "start_s": started - began,
            "load_s": loaded - started}  # fmt: skip


# ----------------------------------------------------------------------------------------------------- main


@dataclass
class Figures:
    run: dict[str, Any]
    engine: dict[str, Any]
    baseline: dict[str, Any]


def check_clean(run: dict[str, Any], engine: dict[str, Any], baseline: dict[str, Any]) -> None:
    assert engine["exit_code"] == 0, f"reconcile did not match: {engine['headline']}"
    expected = sum(r["expected"] for r in engine["by_type"].values())
    found = sum(r["ok"] for r in engine["by_type"].values())
    assert expected == found == run["valid"], (expected, found, run["valid"])
    assert all(r["in_gcs"] == r["in_bigquery"] == r["expected"] for r in engine["by_type"].values())
    assert sum(r["sent"] for r in engine["by_kind"].values()) == run["malformed"]
    assert sum(r["ok"] for r in engine["by_kind"].values()) == run["malformed"]
    assert engine["checked"] == {"gcs": True, "bigquery": True, "dead_letter_table": True, "dead_letter_topic": True}
    assert engine["sizes"]["files"] == run["files"] == baseline["files"]
    same(engine, baseline)


def same(engine: dict[str, Any], baseline: dict[str, Any]) -> None:
    for key in ("exit_code", "by_type", "by_kind", "problems", "unexpected", "foreign"):
        assert engine[key] == baseline[key], f"reconcile and the baseline disagree on {key}"


def print_results(figures: Figures, broken: dict[str, Any], fetch: dict[str, Any] | None) -> None:
    run, engine, baseline = figures.run, figures.engine, figures.baseline
    events = run["messages"]
    table = Table(title=f"reconcile of {events:,} events (target < {TARGET_S:.0f} s)")
    for column in ("measurement", "wall", "events/s", "x baseline", "peak RSS", ""):
        table.add_column(column, justify="left" if column in ("measurement", "") else "right")
    verdict = "PASS" if engine["seconds"] < TARGET_S else "FAIL"
    table.add_row(
        "reconcile() on DuckDB", f"{engine['seconds']:.1f} s",
        f"{events / engine['seconds']:,.0f}", f"{baseline['seconds'] / engine['seconds']:.1f}x",
        f"{engine['peak_mb']:,.0f} MiB", f"[{'green' if verdict == 'PASS' else 'red'}]{verdict}[/]",
    )  # fmt: skip
    table.add_row(
        "naive Python dicts", f"{baseline['seconds']:.1f} s", f"{events / baseline['seconds']:,.0f}",
        "1.0x", f"{baseline['peak_mb']:,.0f} MiB", "[dim]baseline[/]",
    )  # fmt: skip
    console.print(table)
    for name, result in (("reconcile", engine), ("baseline", baseline)):
        phases = Table(title=f"where the {name} time goes")
        phases.add_column("phase")
        phases.add_column("seconds", justify="right")
        for phase, seconds in result["phases"].items():
            phases.add_row(phase, f"{seconds:.2f}")
        console.print(phases)
    console.print(f"reconcile: {engine['headline']}; imports (DuckDB, sqlglot, Beam FileSystems) "
                  f"{engine['import_s']:.1f} s, not counted")  # fmt: skip
    console.print("NOT included: fetching the rows from the BigQuery emulator (the rows reconcile would receive "
                  "were built directly and loaded with DuckDBEngine.load_arrow, which is counted)")  # fmt: skip
    console.print(f"detection check ({BROKEN_EVENTS:,} messages, 3 events broken): reconcile exit "
                  f"{broken['engine']['exit_code']}, baseline exit {broken['baseline']['exit_code']}, both name "
                  f"{', '.join(sorted(broken['expected'].values()))}")  # fmt: skip
    if fetch:
        real, pre = fetch["real"], fetch["preloaded"]
        seconds = real["phases"]["BigQuery emulator fetch"]
        console.print(
            f"BigQuery emulator fetch, {fetch['run']['messages']:,} messages ({fetch['rows']:,} rows): "
            f"{seconds:.2f} s ({fetch['rows'] / seconds:,.0f} rows/s) inside a real reconcile of "
            f"{real['seconds']:.2f} s (the same run with the rows preloaded: {pre['seconds']:.2f} s); "
            f"emulator start {fetch['start_s']:.1f} s, "
            f"DDL + load jobs {fetch['load_s']:.1f} s; verdict exit {real['exit_code']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="messages in the run (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="50,000 messages")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--no-emulator", action="store_true", help="skip the BigQuery emulator fetch measurement")
    parser.add_argument("--emulator-rows", type=int, default=20_000, help="messages of the emulator-fetch run")
    args = parser.parse_args()
    events = 50_000 if args.quick else args.events
    machine = describe()
    console.print(f"[bold]Reconcile benchmark[/] — {machine}")
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as folder:
        with console.status(f"generating a run of {events:,} messages (not measured)"):
            run = generate(Path(folder) / "run", events, args.seed)
        console.print(
            f"generated {run['messages']:,} messages ({run['valid']:,} valid, {run['malformed']:,} malformed, "
            f"{run['duplicates']:,} duplicates) -> {run['files']:,} GCS files ({run['gcs_bytes'] / 2**20:,.0f} MiB), "
            f"{run['valid']:,} BigQuery rows, {2 * run['malformed']:,} dead letters, in {run['seconds']:.1f} s "
            "(not measured)"
        )
        with console.status("reconcile (DuckDB engine)"):
            engine = in_child(reconcile_child, run)
        with console.status("naive baseline"):
            baseline = in_child(baseline_child, run)
        check_clean(run, engine, baseline)
        with console.status("detection check on a broken run"):
            small = generate(Path(folder) / "broken", BROKEN_EVENTS, args.seed + 1)
            expected = break_run(small)
            broken = {"expected": expected, "engine": in_child(reconcile_child, small),
                      "baseline": in_child(baseline_child, small)}  # fmt: skip
        assert broken["engine"]["exit_code"] == 1 and broken["engine"]["problems"] == expected, broken["engine"]
        same(broken["engine"], broken["baseline"])
        fetch = None
        if not args.no_emulator:
            with console.status(f"BigQuery emulator fetch ({args.emulator_rows:,} messages)"):
                fetch = emulator_fetch(Path(folder) / "emulator", args.emulator_rows, args.seed + 2)
            assert fetch["real"]["exit_code"] == 0, fetch["real"]["headline"]
            assert fetch["real"]["by_type"] == fetch["preloaded"]["by_type"]
        print_results(Figures(run, engine, baseline), broken, fetch)


if __name__ == "__main__":
    main()
