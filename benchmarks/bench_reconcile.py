"""Reconcile benchmark: one run of N events (1,000,000 by default) reconciled against its GCS files, its BigQuery
rows and its manifest, beside a naive Python-dict reconcile of the same data measured in the same run.

    .venv/bin/python benchmarks/bench_reconcile.py                  # 1,000,000 events (~4 minutes, mostly generating)
    .venv/bin/python benchmarks/bench_reconcile.py --quick          # 50,000 events (~1 minute)
    .venv/bin/python benchmarks/bench_reconcile.py --events 200000 --no-emulator
    .venv/bin/python benchmarks/bench_reconcile.py --quick --contracts-only   # the sink-contract runs alone

Generated first, into a temporary folder (not measured; its time is printed apart): a run of N messages from
EventStream (5% malformed, 1% duplicates) "published" at a simulated 1,000 messages/s (the clock advances 1 ms per
message, so a million events span ~17 minutes of event time), with
- its manifest, as `workbench publish` writes it: events-0.csv through EventLog, manifest.json (completed,
  MANIFEST_VERSION) under a temporary WORKBENCH_HOME; every message has a Pub/Sub message id;
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
  known runs and the GCS tree itself and runs every comparison statement. The target names no dataset (so reconcile
  fetches nothing from BigQuery) and its topic read is replaced in the child process by one returning nothing (the
  topic's dead letters are among the preloaded rows), yet all four sinks are checked, so a missing BigQuery row or
  dead letter fails the verdict as it would in a real reconcile. Module imports are timed apart.
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

Sink contracts (issue 21; --no-contracts skips them): the same run reconciled twice more through reconcile()'s
contract path, each in a fresh child process with its peak RSS, exit 0 and equal per-type and per-kind counts
required of both:
- built-in: reconcile/contract.py's built-in contract, this project's pipeline (ddl/ tables, event ids, the JSON-lines
  tree above);
- flattened: a design unlike ours (flattened_document): orders with the shipping address flattened into columns
  and prices as FLOAT64 within a declared tolerance, an order_items child table (parent key: the order's natural
  key order_id/status/order_date, ordered by line_no), inventory, user_activity with metadata flattened; no event id,
  run id or publish time anywhere, so every event is found by its natural key (eventmodel.history.NATURAL_KEYS);
  GCS files of one JSON array of whole events per type and minute of event time, named by FLAT_PATH; dead letters
  in a table keyed by payload only (payload STRING, its encoding, reason, received_at: no id).
The raw tables of both designs are built directly by the generator step (build_designs, not measured): the rows the
pipeline writes (eventmodel.rows, typed as ddl/ types them), and the same rows flattened.
The BigQuery side is simulated inside DuckDB, the same way for both designs: bqemulator would need a million-row
load per design (far too slow, see above), and real BigQuery cannot run here. Each design's raw tables are stored in
the child's DuckDB under `project.dataset.table` (an attached catalog named after the project; timed apart: in
BigQuery they are already there), reconcile.run.bigquery_session is replaced in the child process only by a
BigQuerySession stand-in (so nothing tries to reach BigQuery), and SimulatedBigQuery.load_select runs the contract's
generated SELECTs (reconcile.run.bigquery_statements -> contract_sql.table_select, dead_letter_table_select),
transpiled by Q.to_duckdb, as INSERT INTO sink_events/dead_letters ... SELECT inside DuckDB. So this run times those
SELECTs on DuckDB, where real BigQuery would run them in BigQuery and return only their narrow rows.
Then the flattened tables of the 5,000-message run are broken (one order_items price moved beyond the tolerance,
one inventory row deleted): reconcile must exit 1 naming exactly those two events (altered, missing_in_bigquery),
and the altered one's field (items[i].price). Target: the flattened contract at most 1.5x the built-in one's time.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import glob
import itertools
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


def generate(folder: Path, events: int, seed: int, full_rows: bool = False,
             flat: FlatDesign | None = None) -> dict[str, Any]:  # fmt: skip
    """A finished run of `events` messages with its manifest, GCS tree and BigQuery/dead-letter rows (see top).

    full_rows: also write the BigQuery tables' own rows (eventmodel.rows) as NDJSON, for the emulator fetch and
    the contract runs. flat: also collect what the flattened design writes (its files and dead letters).
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
            ("entry", f"dead_letters:{'table' if sink == Q.DEAD_LETTER_TABLE else 'topic'}:{location.split('/')[0]}"),
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
            if flat is not None:
                flat.letter(m.data, m.reason, publish_us + 150_000)
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
            if flat is not None:
                flat.event(m.event_type, minute, t, m.data)
            if len(buffer[1]) >= MAX_LINES:
                flush(key, buffer[1], t)
                del buffers[key]
            table = rows.table_of(m.event_type)
            for column, value in (
                ("sink", Q.BIGQUERY), ("location", table), ("event_id", m.event_id), ("message_id", message_id),
                ("run_id", run_id), ("publish_time", publish_us), ("landed_time", publish_us + 250_000),
                ("event_type", m.event_type), ("container_type", m.event_type), ("event_minute", minute),
                ("container_minute", None), ("name_ok", True), ("canonical_digest", m.canonical_digest),
                ("entry", f"bigquery:{table}"), ("key_digest", None), ("event_time", event_time),
                ("expected_digest", None),
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
    if flat is not None:
        run["flat"] = flat.write(folder / "flat")
    run["seconds"] = time.perf_counter() - began
    return run


# ------------------------------------------------------------------------- contract runs: the two designs

FLAT_DATASET = "shop"
FLAT_PATH = "{type}/{YYYY}/{MM}/{DD}/{HH}/{mm}/{type}-{NNNN}.json"
FLAT_PRICE = {"stored_as": "float64", "tolerance": 0.005}
BUILT_IN, FLATTENED = "built-in", "flattened"
FLAT_TARGET = 1.5  # issue 21: the flattened contract at most 1.5x the built-in one's time
# DuckDB spelling of the ddl/ column types (NUMERIC is BigQuery's NUMERIC(38, 9)).
_DUCK_OF_BQ = {"STRING": "VARCHAR", "TIMESTAMP": "TIMESTAMPTZ", "NUMERIC": "DECIMAL(38, 9)", "INT64": "BIGINT",
               "BYTES": "VARCHAR", "JSON": "VARCHAR"}  # fmt: skip


class FlatDesign:
    """What the flattened pipeline writes beside its tables: one JSON array of whole events per type and minute of
    event time, and its dead letters in a table keyed by payload only (no id of any kind)."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], list] = {}  # (type, minute) -> [last publish time, [event bytes]]
        self.letters: dict[str, list] = {"payload": [], "payload_encoding": [], "reason": [], "received_at": []}

    def event(self, event_type: str, minute: str, published_s: float, data: bytes) -> None:
        found = self.files.setdefault((event_type, minute), [published_s, []])
        found[0] = max(found[0], published_s)
        found[1].append(data)

    def letter(self, data: bytes, reason: str, landed_us: int) -> None:
        # A STRING column holds UTF-8 only (BigQuery STRING, and DuckDB VARCHAR alike): a body that is not UTF-8 is
        # kept in base64 and the row says so, as tests/foreign_pipelines/flattened.py does.
        try:
            payload, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(data).decode("ascii"), "base64"
        for column, value in (("payload", payload), ("payload_encoding", encoding), ("reason", reason),
                              ("received_at", landed_us)):  # fmt: skip
            self.letters[column].append(value)

    def write(self, folder: Path) -> dict[str, Any]:
        """The array files under folder/output (each landed FLUSH_S after the last event of its minute was
        published) and the dead-letter rows as an Arrow file."""
        import pyarrow as pa

        output = folder / "output"
        size = 0
        for (event_type, minute), (last, datas) in self.files.items():
            path = output / FLAT_PATH.format(type=event_type, YYYY=minute[:4], MM=minute[4:6], DD=minute[6:8],
                                             HH=minute[8:10], mm=minute[10:12], NNNN="0000")  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            body = b"[" + b",".join(datas) + b"]"
            path.write_bytes(body)
            os.utime(path, (last + FLUSH_S + 0.3, last + FLUSH_S + 0.3))
            size += len(body)
        schema = pa.schema([("payload", pa.string()), ("payload_encoding", pa.string()), ("reason", pa.string()),
                            ("received_at", pa.timestamp("us", tz="UTC"))])  # fmt: skip
        letters = str(folder / "dead_letters.arrow")
        _write_arrow(letters, pa.table(self.letters, schema=schema))
        files = len(self.files)
        self.files.clear()
        return {"output": str(output), "files": files, "gcs_bytes": size, "dead_letters": letters}


def flattened_document(root: str) -> dict[str, Any]:
    """The flattened design's sink contract (reconcile/sink_contract.schema.json): no event id anywhere (identity
    by eventmodel.history.NATURAL_KEYS), prices as FLOAT64 within a tolerance, an order_items child table."""
    from eventmodel.schema import EVENT_TYPES

    processed = {"landed_time": "processed_at"}
    return {
        "version": 1,
        "name": "flattened (bench_reconcile)",
        "duplicates": "deduplicated",
        "malformed": "dead_lettered",
        "gcs": {"root": root, "format": "json_array", "gzip": False, "record": "",
                "paths": dict.fromkeys(EVENT_TYPES, FLAT_PATH), "placed_by": "event_time"},
        "bigquery": {
            "dataset": FLAT_DATASET,
            "tables": [
                {
                    "table": "orders", "type": "order", "partition_column": "order_date",
                    "columns": {
                        "order_id": "order_id", "customer_id": "customer_id",
                        "order_date": {"column": "order_date", "stored_as": "timestamp"}, "status": "status",
                        "shipping_address.street": "ship_street", "shipping_address.city": "ship_city",
                        "shipping_address.country": "ship_country",
                        "total_amount": {"column": "total_amount", **FLAT_PRICE},
                    },
                    "omit": ["event_type"], "metadata": processed,
                    "children": [{
                        "table": "order_items", "field": "items", "order_by": "line_no",
                        "parent_key": {"order_id": "order_id", "status": "status", "order_date": "order_date"},
                        "columns": {"product_id": "product_id", "product_name": "product_name", "quantity": "quantity",
                                    "price": {"column": "price", **FLAT_PRICE}},
                    }],
                },
                {
                    "table": "inventory", "type": "inventory",
                    "columns": {"inventory_id": "inventory_id", "product_id": "product_id",
                                "warehouse_id": "warehouse_id", "quantity_change": "quantity_change",
                                "reason": "reason", "timestamp": {"column": "event_time", "stored_as": "timestamp"}},
                    "omit": ["event_type"], "metadata": processed,
                },
                {
                    "table": "user_activity", "type": "user_activity", "partition_column": "event_time",
                    "columns": {"user_id": "user_id", "activity_type": "activity_type", "ip_address": "ip_address",
                                "user_agent": "user_agent",
                                "timestamp": {"column": "event_time", "stored_as": "timestamp"},
                                "metadata.session_id": "session_id", "metadata.platform": "platform"},
                    "omit": ["event_type"], "metadata": processed,
                },
            ],
        },
        "dead_letters": {
            "table": {"table": "dead_letters", "payload": "payload", "payload_encoding": "payload_encoding",
                      "reason": "reason", "landed_time": "received_at"},
            "reason_codes": "any",
        },
    }  # fmt: skip


# The flattened tables, from the built-in ones (the same rows the pipeline would write, another shape).
_FLAT_SELECTS = {
    "orders": "SELECT order_id, customer_id, order_date, status, shipping_address.street AS ship_street, "
              "shipping_address.city AS ship_city, shipping_address.country AS ship_country, "
              "CAST(total_amount AS DOUBLE) AS total_amount, ingest_time AS processed_at FROM orders",
    "order_items": "SELECT order_id, status, order_date, line_no, item.product_id AS product_id, "
                   "item.product_name AS product_name, item.quantity AS quantity, "
                   "CAST(item.price AS DOUBLE) AS price FROM (SELECT order_id, status, order_date, "
                   "generate_subscripts(items, 1) AS line_no, unnest(items) AS item FROM orders)",
    "inventory": "SELECT inventory_id, product_id, warehouse_id, quantity_change, reason, \"timestamp\" AS event_time, "
                 "ingest_time AS processed_at FROM inventory",
    "user_activity": "SELECT user_id, activity_type, ip_address, user_agent, \"timestamp\" AS event_time, "
                     "metadata.session_id AS session_id, metadata.platform AS platform, ingest_time AS processed_at "
                     "FROM user_activity",
}  # fmt: skip


def _duck_type(f: Any) -> str:
    """The ddl/ column type of a schema field, as DuckDB spells it."""
    if f.kind in ("record", "records"):
        struct = "STRUCT(" + ", ".join(f'"{s.name}" {_duck_type(s)}' for s in f.fields) + ")"
        return struct + ("[]" if f.kind == "records" else "")
    return {"timestamp": "TIMESTAMPTZ", "number": "DECIMAL(38, 9)", "integer": "BIGINT"}.get(f.kind, "VARCHAR")


def build_designs(run: dict[str, Any]) -> float:
    """The raw BigQuery tables of both designs, as Arrow files (not measured): the built-in design's are the rows
    the pipeline writes (eventmodel.rows, generate(full_rows=True)) typed as ddl/ types them; the flattened
    design's are the same rows flattened, and its dead letters the payloads FlatDesign kept. Returns seconds."""
    import duckdb

    from eventmodel import resources as names
    from eventmodel import rows
    from eventmodel.schema import EVENT_TYPES, SCHEMAS
    from reconcile.contract import parse_contract

    began = time.perf_counter()
    folder = Path(run["flat"]["output"]).parent
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    built_in: dict[str, str] = {}
    for table in [*(rows.table_of(t) for t in EVENT_TYPES), rows.DEAD_LETTER_TABLE]:
        if table == rows.DEAD_LETTER_TABLE:
            columns = {c: _DUCK_OF_BQ[k] for c, k in rows.DEAD_LETTER_TYPES.items()}
            typed = ", ".join(
                "from_base64(payload) AS payload" if c == rows.PAYLOAD else f"CAST({c} AS JSON) AS {c}"
                if c == rows.ATTRIBUTES else c for c in columns
            )  # fmt: skip
        else:
            event_type = next(t for t in EVENT_TYPES if rows.table_of(t) == table)
            columns = {f.name: _duck_type(f) for f in SCHEMAS[event_type]}
            columns |= {c: _DUCK_OF_BQ[k] for c, k in rows.METADATA_TYPES.items()}
            typed = ", ".join(f'"{c}"' for c in columns)
        spec = ", ".join(f"'{c}': '{k}'" for c, k in columns.items())
        path = run["table_rows"].get(table)
        source = (
            f"read_json('{path}', format = 'newline_delimited', columns = {{{spec}}})"
            if path
            else f"(SELECT {', '.join(f'CAST(NULL AS {k}) AS {c}' for c, k in columns.items())} LIMIT 0)"
        )
        con.execute(f"CREATE TABLE {table} AS SELECT {typed} FROM {source}")  # fmt: skip
        built_in[table] = str(folder.parent / f"builtin-{table}.arrow")
        _write_arrow(built_in[table], con.execute(f"SELECT * FROM {table}").to_arrow_table())
    flattened = {"dead_letters": run["flat"]["dead_letters"]}
    for table, select in _FLAT_SELECTS.items():
        flattened[table] = str(folder / f"{table}.arrow")
        _write_arrow(flattened[table], con.execute(select).to_arrow_table())
    con.close()
    document = flattened_document(run["flat"]["output"])
    parse_contract(document, source="bench_reconcile flattened")  # checked before any run: a wrong one fails here
    contract = folder / "flattened.sinks.json"
    contract.write_text(json.dumps(document, indent=1))
    run["designs"] = {
        BUILT_IN: {"dataset": names.DATASET, "tables": built_in, "output": run["output"], "sinks": None},
        FLATTENED: {
            "dataset": FLAT_DATASET,
            "tables": flattened,
            "output": run["flat"]["output"],
            "sinks": str(contract),
        },
    }
    return time.perf_counter() - began


def break_flattened(run: dict[str, Any]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """One order_items price moved beyond the tolerance, one inventory row deleted, in the flattened design's
    tables: ({event_id: the problem reconcile must name}, {event_id: the fields it must name altered})."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flat, built_in = run["designs"][FLATTENED]["tables"], run["designs"][BUILT_IN]["tables"]
    items = _load_arrow(flat["order_items"])
    at = len(items) // 2
    row = items.slice(at, 1).to_pylist()[0]
    prices = items["price"].to_pylist()
    prices[at] = row["price"] + 1.0  # 200 times the tolerance
    items = items.set_column(items.schema.get_field_index("price"), "price", pa.array(prices, pa.float64()))
    _write_arrow(flat["order_items"], items)
    orders = _load_arrow(built_in["orders"])
    same_key = [pc.equal(orders[c], pa.scalar(row[c], orders[c].type)) for c in ("order_id", "status", "order_date")]
    parent = orders.filter(pc.and_(pc.and_(same_key[0], same_key[1]), same_key[2]))
    assert len(parent) == 1, f"{len(parent)} orders have the natural key of order_items row {at}"
    altered = parent["event_id"][0].as_py()
    inventory = _load_arrow(flat["inventory"])
    gone = inventory["inventory_id"][len(inventory) // 2].as_py()
    _write_arrow(flat["inventory"], inventory.filter(pc.not_equal(inventory["inventory_id"], pa.scalar(gone))))
    held = _load_arrow(built_in["inventory"])
    missing = held.filter(pc.equal(held["inventory_id"], pa.scalar(gone)))["event_id"][0].as_py()
    return {altered: "altered", missing: "missing_in_bigquery"}, {altered: [f"items[{row['line_no'] - 1}].price"]}


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


def _load_arrow(path: str) -> Any:
    """An Arrow file read into memory (not mapped): safe to write back to the same path."""
    import pyarrow as pa

    with pa.OSFile(path) as source:
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
    from reconcile import sources as reconcile_sources
    from reconcile.engine import DuckDBEngine
    from reconcile.run import ReconcileTarget, reconcile

    @_dataclass(frozen=True)
    class PreloadedTarget(ReconcileTarget):
        """No dataset to read (its rows are in the engine already), yet all four sinks are checked; the topic is
        in the contract (so the verdict checks it) and its read returns nothing new (its rows are preloaded)."""

        def checked(self) -> dict[str, bool]:
            # The four sinks of this project's pipeline (Q.SINKS also names a contract's dead-letter files).
            return dict.fromkeys((Q.GCS, Q.BIGQUERY, Q.DEAD_LETTER_TABLE, Q.DEAD_LETTER_TOPIC), True)

    began = time.perf_counter()
    import_s = began - imported
    engine = DuckDBEngine()
    try:
        for table in ("sink_events", "dead_letters"):
            engine.load_arrow(table, _read_arrow(run[table]))
        loaded = time.perf_counter()
        stamps: list[tuple[float, str]] = []
        # In this process only: the topic's dead letters are the preloaded ones; no Pub/Sub is reached.
        reconcile_sources.read_dead_letter_topic = lambda *_args, **_kwargs: []
        target = PreloadedTarget(output_root=run["output"], project=PROJECT, dataset=None)
        report = reconcile(run["run_id"], target, lambda text: stamps.append((time.perf_counter(), text)), engine)
        done = time.perf_counter()
    finally:
        engine.close()
    phases = {"BigQuery + dead-letter rows into DuckDB (load_arrow)": loaded - began}
    phases.update(_phases(loaded, stamps, done))
    return {"seconds": done - began, "import_s": import_s, "phases": phases, "peak_mb": _peak_rss_mb(),
            **_summary(report)}  # fmt: skip


def _contract_phases(began: float, stamps: list[tuple[float, str]], done: float) -> dict[str, float]:
    """Phase times from reconcile's on_step messages: each message starts a phase lasting to the next one."""
    marks = [(began, "manifest + known runs"), *stamps, (done, "")]
    phases: dict[str, float] = {}
    for (at, text), (following, _) in itertools.pairwise(marks):
        if text.startswith("listing"):
            name = "list GCS files"
        elif text.startswith("reading BigQuery"):
            name = f"BigQuery SELECT of {text.rsplit('.', 1)[-1]}"
        elif text.startswith("reading"):  # "reading 123 order files"
            name = f"read GCS {text.split()[2]} files"
        elif text.startswith("finding events by natural key"):
            name = "identity by natural key (published events keyed)"
        elif text.startswith("comparing"):
            name = "compare (queries.compare: EVENT_STATUS and every report query; sizes)"
        elif text.startswith("finding which fields"):
            name = "altered fields"
        else:
            name = text
        phases[name] = phases.get(name, 0.0) + following - at
    return phases


def contract_child(run: dict[str, Any], design: str) -> dict[str, Any]:
    """reconcile.run.reconcile() of the run through one design's sink contract, on DuckDB, with the BigQuery side
    simulated in the same DuckDB (see top): the design's raw tables stored first under `project.dataset.table`
    (timed apart: in BigQuery they are already there), then reconcile() runs the contract's generated SELECTs
    (bigquery_statements) transpiled, through SimulatedBigQuery.load_select, and altered.py's re-read through the
    stand-in client."""
    os.environ[HOME_ENV] = run["home"]
    imported = time.perf_counter()
    import apache_beam.io.filesystems  # noqa: F401 - the GCS listing's import, paid once per process

    from reconcile import queries as Q
    from reconcile import run as reconcile_run
    from reconcile.engine import DuckDBEngine
    from reconcile.run import BigQuerySession, ReconcileTarget, reconcile

    class SimulatedBigQuery(DuckDBEngine):
        """A DuckDBEngine whose BigQuery reads run in DuckDB itself, over tables under the project's name."""

        def store(self, dataset: str, tables: dict[str, str]) -> None:
            self.con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS \"{PROJECT}\"")
            self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{PROJECT}"."{dataset}"')
            for name, path in tables.items():
                self.con.register("_raw", _read_arrow(path))
                try:
                    self.con.execute(f'CREATE TABLE "{PROJECT}"."{dataset}"."{name}" AS SELECT * FROM _raw')
                finally:
                    self.con.unregister("_raw")

        def load_select(self, table: str, sql: str, client: Any = None, location: str | None = None) -> None:
            self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM ({Q.to_duckdb(sql)})")

        # Where the time of the statements goes (measuring only: each is timed around reconcile's own call).
        def run(self, sql: str) -> list[dict[str, Any]]:
            with timed(_statement(sql)):
                return super().run(sql)

        def typed_published(self, event_type: str) -> str:
            with timed(f"typed_published({event_type}): the published JSON typed"):
                return super().typed_published(event_type)

        def load_published(self, csv_paths: dict[str, list[Path]]) -> None:
            with timed("load_published: the manifests' event column"):
                super().load_published(csv_paths)

    class Job:
        def __init__(self, rows: list[dict[str, Any]]) -> None:
            self.rows = rows

        def result(self) -> list[dict[str, Any]]:
            return self.rows

    class Client:
        """What reconcile asks of a BigQuery client besides load_select: altered.py's query(sql).result()."""

        def __init__(self, engine: SimulatedBigQuery) -> None:
            self.engine = engine

        def query(self, sql: str, location: str | None = None, **_: Any) -> Job:
            return Job(self.engine.run(sql))

    spec = run["designs"][design]
    statements: dict[str, list[float]] = {}  # label -> [count, seconds]

    @contextlib.contextmanager
    def timed(label: str) -> Any:
        mark = time.perf_counter()
        try:
            yield
        finally:
            found = statements.setdefault(label, [0, 0.0])
            found[0] += 1
            found[1] += time.perf_counter() - mark

    began = time.perf_counter()
    import_s = began - imported
    engine = SimulatedBigQuery()
    try:
        engine.store(spec["dataset"], spec["tables"])
        stored = time.perf_counter()
        # In this process only: reconcile() asks bigquery_session() for its client; no BigQuery is reached.
        reconcile_run.bigquery_session = lambda _target: BigQuerySession(Client(engine), None)
        stamps: list[tuple[float, str]] = []
        target = ReconcileTarget(output_root=spec["output"], project=PROJECT, dataset=spec["dataset"],
                                 read_dead_letter_topic=False, engine="duckdb", sinks=spec["sinks"])  # fmt: skip
        start = time.perf_counter()
        report = reconcile(run["run_id"], target, lambda text: stamps.append((time.perf_counter(), text)), engine)
        done = time.perf_counter()
    finally:
        engine.close()
    return {"seconds": done - start, "import_s": import_s, "store_s": stored - began,
            "phases": _contract_phases(start, stamps, done), "peak_mb": _peak_rss_mb(),
            "contract": report.contract, "entries": report.entries, "statements": statements,
            "altered_fields": _by_event(report.altered_fields), **_summary(report)}  # fmt: skip


def _statement(sql: str) -> str:
    """A label for one of reconcile's statements (engine.run), by what it starts with."""
    head = " ".join(sql.split())[:80]
    for prefix, label in (
        ("INSERT INTO expected", "expected_select: each published event keyed and digested per sink"),
        ("UPDATE sink_events SET event_id", "natural key -> event id (UPDATE sink_events)"),
        ("CREATE OR REPLACE TABLE event_status", "EVENT_STATUS"),
        ("UPDATE sink_events SET run_id", "_claim_by_event_id"),
        ("UPDATE dead_letters SET run_id", "_claim_by_event_id"),
    ):
        if head.startswith(prefix):
            return label
    return "other: " + head[:70]


def _by_event(altered: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for a in altered:
        found.setdefault(a["event_id"], []).append(a["field"])
    return found


def emulator_reconcile_child(run: dict[str, Any], endpoint: str) -> dict[str, Any]:
    """reconcile.run.reconcile() of the run for real: the BigQuery rows fetched from the emulator (no topic)."""
    os.environ[HOME_ENV] = run["home"]
    import apache_beam.io.filesystems  # noqa: F401
    import google.cloud.bigquery  # noqa: F401

    from endpoints import Endpoints
    from eventmodel import resources as names
    from reconcile.run import ReconcileTarget, reconcile

    target = ReconcileTarget(output_root=run["output"], project=PROJECT, dataset=names.DATASET,
                             endpoints=Endpoints(bigquery=endpoint), read_dead_letter_topic=False)  # fmt: skip
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


def check_contracts(run: dict[str, Any], built_in: dict[str, Any], flattened: dict[str, Any]) -> None:
    for name, result in ((BUILT_IN, built_in), (FLATTENED, flattened)):
        assert result["exit_code"] == 0, f"the {name} contract did not match: {result['headline']}"
        assert not result["problems"] and not result["unexpected"] and not result["foreign"], result["headline"]
        assert sum(r["expected"] for r in result["by_type"].values()) == run["valid"], name
        assert sum(r["ok"] for r in result["by_type"].values()) == run["valid"], name
        assert sum(r["sent"] for r in result["by_kind"].values()) == run["malformed"], name
        assert sum(r["ok"] for r in result["by_kind"].values()) == run["malformed"], name
    assert built_in["by_type"] == flattened["by_type"], "the two contracts disagree on the per-type counts"
    assert built_in["by_kind"] == flattened["by_kind"], "the two contracts disagree on the per-kind counts"


def check_broken_flattened(broken: dict[str, Any]) -> None:
    result = broken["flattened"]
    assert result["exit_code"] == 1 and result["problems"] == broken["flat_expected"], (
        result["headline"], result["problems"], broken["flat_expected"])  # fmt: skip
    altered = {e: f for e, f in result["altered_fields"].items() if e in broken["flat_fields"]}
    assert altered == broken["flat_fields"], (result["altered_fields"], broken["flat_fields"])


def print_contracts(run: dict[str, Any], contracts: dict[str, Any], broken: dict[str, Any] | None) -> None:
    built_in, flattened = contracts[BUILT_IN], contracts[FLATTENED]
    events = run["messages"]
    ratio = flattened["seconds"] / built_in["seconds"]
    table = Table(title=f"sink contracts: reconcile() of {events:,} events on DuckDB, BigQuery simulated in DuckDB "
                        f"(target: flattened <= {FLAT_TARGET}x built-in)")  # fmt: skip
    for column in ("contract", "wall", "events/s", "x built-in", "peak RSS", ""):
        table.add_column(column, justify="left" if column in ("contract", "") else "right")
    verdict = "PASS" if ratio <= FLAT_TARGET else "FAIL"
    for name, result, mark in (
        (BUILT_IN, built_in, "[dim]reference[/]"),
        (FLATTENED, flattened, f"[{'green' if verdict == 'PASS' else 'red'}]{verdict}[/]"),
    ):
        table.add_row(name, f"{result['seconds']:.1f} s",
                      f"{events / result['seconds']:,.0f}", f"{result['seconds'] / built_in['seconds']:.2f}x",
                      f"{result['peak_mb']:,.0f} MiB", mark)  # fmt: skip
    console.print(table)
    phases = Table(title="where the contract runs' time goes (seconds, from on_step)")
    for column in ("phase", BUILT_IN, FLATTENED, "difference"):
        phases.add_column(column, justify="left" if column == "phase" else "right")
    names = list(dict.fromkeys([*built_in["phases"], *flattened["phases"]]))
    for name in names:
        a, b = built_in["phases"].get(name), flattened["phases"].get(name)
        phases.add_row(name, "" if a is None else f"{a:.2f}", "" if b is None else f"{b:.2f}",
                       f"{(b or 0) - (a or 0):+.2f}")  # fmt: skip
    phases.add_row("[bold]total[/]", f"{built_in['seconds']:.2f}", f"{flattened['seconds']:.2f}",
                   f"{flattened['seconds'] - built_in['seconds']:+.2f}")  # fmt: skip
    console.print(phases)
    detail = Table(title="reconcile's statements by kind (seconds, count), timed around each call")
    for column in ("statement", BUILT_IN, FLATTENED):
        detail.add_column(column, justify="left" if column == "statement" else "right")
    rest = [[0, 0.0], [0, 0.0]]
    for label in dict.fromkeys([*built_in["statements"], *flattened["statements"]]):
        found = [result["statements"].get(label, (0, 0.0)) for result in (built_in, flattened)]
        if max(seconds for _, seconds in found) < 0.1:
            for into, (n, seconds) in zip(rest, found, strict=True):
                into[0] += n
                into[1] += seconds
            continue
        detail.add_row(label, *(f"{seconds:.2f} ({n})" if n else "" for n, seconds in found))
    detail.add_row("the others (each under 0.1 s)", *(f"{seconds:.2f} ({n})" for n, seconds in rest))
    console.print(detail)
    flat = run["flat"]
    console.print(
        f"not counted: building the raw tables of both designs {contracts['build_s']:.1f} s (generator step); storing "
        f"them in DuckDB as BigQuery keeps them: built-in {built_in['store_s']:.1f} s, flattened "
        f"{flattened['store_s']:.1f} s (peak RSS includes them); imports {built_in['import_s']:.1f} s / "
        f"{flattened['import_s']:.1f} s. Flattened GCS tree: {flat['files']:,} JSON-array files "
        f"({flat['gcs_bytes'] / 2**20:,.0f} MiB) beside the built-in's {run['files']:,} JSON-lines files. "
        f"Both: {built_in['headline']}"
    )
    if broken and "flattened" in broken:
        found = broken["flattened"]
        console.print(
            f"flattened detection check ({BROKEN_EVENTS:,} messages, one order_items price moved 1.00 beyond the "
            f"0.005 tolerance, one inventory row deleted): exit {found['exit_code']}, naming "
            + ", ".join(f"{e[:8]}… {p}" for e, p in sorted(found["problems"].items()))
            + "; altered field(s): "
            + ", ".join(f for fields in broken["flat_fields"].values() for f in fields)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="messages in the run (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="50,000 messages")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--no-emulator", action="store_true", help="skip the BigQuery emulator fetch measurement")
    parser.add_argument("--emulator-rows", type=int, default=20_000, help="messages of the emulator-fetch run")
    parser.add_argument("--no-contracts", action="store_true", help="skip the sink-contract runs")
    parser.add_argument("--contracts-only", action="store_true",
                        help="only the sink-contract runs (no baseline, no emulator fetch)")  # fmt: skip
    args = parser.parse_args()
    events = 50_000 if args.quick else args.events
    contracts_on = not args.no_contracts
    classic = not args.contracts_only
    machine = describe()
    console.print(f"[bold]Reconcile benchmark[/] — {machine}")
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as folder:
        with console.status(f"generating a run of {events:,} messages (not measured)"):
            run = generate(Path(folder) / "run", events, args.seed, full_rows=contracts_on,
                           flat=FlatDesign() if contracts_on else None)  # fmt: skip
        console.print(
            f"generated {run['messages']:,} messages ({run['valid']:,} valid, {run['malformed']:,} malformed, "
            f"{run['duplicates']:,} duplicates) -> {run['files']:,} GCS files ({run['gcs_bytes'] / 2**20:,.0f} MiB), "
            f"{run['valid']:,} BigQuery rows, {2 * run['malformed']:,} dead letters, in {run['seconds']:.1f} s "
            "(not measured)"
        )
        contracts = None
        if contracts_on:
            with console.status("raw BigQuery tables of both designs (not measured)"):
                contracts = {"build_s": build_designs(run)}
            for design in (BUILT_IN, FLATTENED):
                with console.status(f"reconcile through the {design} contract (DuckDB, BigQuery simulated)"):
                    contracts[design] = in_child(contract_child, run, design)
            check_contracts(run, contracts[BUILT_IN], contracts[FLATTENED])
        if classic:
            with console.status("reconcile (DuckDB engine)"):
                engine = in_child(reconcile_child, run)
            with console.status("naive baseline"):
                baseline = in_child(baseline_child, run)
            check_clean(run, engine, baseline)
        with console.status("detection check on a broken run"):
            small = generate(Path(folder) / "broken", BROKEN_EVENTS, args.seed + 1, full_rows=contracts_on,
                             flat=FlatDesign() if contracts_on else None)  # fmt: skip
            broken: dict[str, Any] = {}
            if classic:
                expected = break_run(small)
                broken = {"expected": expected, "engine": in_child(reconcile_child, small),
                          "baseline": in_child(baseline_child, small)}  # fmt: skip
            if contracts_on:
                build_designs(small)
                broken["flat_expected"], broken["flat_fields"] = break_flattened(small)
                broken["flattened"] = in_child(contract_child, small, FLATTENED)
        if classic:
            assert broken["engine"]["exit_code"] == 1 and broken["engine"]["problems"] == expected, broken["engine"]
            same(broken["engine"], broken["baseline"])
        if contracts_on:
            check_broken_flattened(broken)
        fetch = None
        if classic and not args.no_emulator:
            with console.status(f"BigQuery emulator fetch ({args.emulator_rows:,} messages)"):
                fetch = emulator_fetch(Path(folder) / "emulator", args.emulator_rows, args.seed + 2)
            assert fetch["real"]["exit_code"] == 0, fetch["real"]["headline"]
            assert fetch["real"]["by_type"] == fetch["preloaded"]["by_type"]
        if classic:
            print_results(Figures(run, engine, baseline), broken, fetch)
        if contracts:
            print_contracts(run, contracts, broken)


if __name__ == "__main__":
    main()
