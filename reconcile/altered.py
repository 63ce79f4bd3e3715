"""Which field was altered: for each event a sink holds changed, the fields that differ, published value beside
the sink's.

The comparison itself only compares digests (reconcile.queries EVENT_STATUS), which keeps a million-event
reconcile fast. Once it has found the altered events, their copies are read again, field by field: the published
event from the manifest's `event` column and each sink's copy from where it lies, both through the canonical parts
of eventmodel.canonical under that sink's declared conversions, so a difference shown here is exactly one the
digest saw. At most MAX_EVENTS events are explained (the report says when there were more).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from eventmodel.canonical import FIELD_SEPARATOR, NULL_MARK, RECORD_SEPARATOR, part_paths
from eventmodel.schema import EVENT_TYPES, Field, field_paths
from reconcile import contract_sql
from reconcile.contract import Contract, GcsSink, TableSink
from reconcile.engine import Engine

MAX_EVENTS = 5_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def human(field: Field, text: str | None) -> str | None:
    """A canonical part as people read it: times as RFC 3339, numbers as decimals, the rest as it is."""
    if text is None or text == NULL_MARK:
        return None
    try:
        if field.kind == "timestamp":
            moment = _EPOCH + timedelta(microseconds=int(text))
            return moment.isoformat().replace("+00:00", "Z")
        if field.kind == "number":
            return str((Decimal(int(text)) / Decimal(10**9)).normalize())
    except (ValueError, ArithmeticError, OverflowError):
        return text
    return text


def differences(event_type: str, published: list[str | None], held: list[str | None]) -> list[dict[str, Any]]:
    """The fields whose canonical parts differ: [{field, published, held}], records compared element by element
    and member by member (items[1].price)."""
    known = field_paths(event_type)
    found = []
    for path, mine, theirs in zip(part_paths(event_type), published, held, strict=True):
        if mine == theirs:
            continue
        field = known[path]
        if field.kind != "records":
            found.append({"field": path, "published": human(field, mine), "held": human(field, theirs)})
            continue
        a = (mine or "").split(RECORD_SEPARATOR) if mine else []
        b = (theirs or "").split(RECORD_SEPARATOR) if theirs else []
        if len(a) != len(b):
            found.append({"field": f"{path} (count)", "published": str(len(a)), "held": str(len(b))})
            continue
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            for member, u, v in zip(field.fields, x.split(FIELD_SEPARATOR), y.split(FIELD_SEPARATOR), strict=False):
                if u != v:
                    found.append({"field": f"{path}[{index}].{member.name}", "published": human(member, u),
                                  "held": human(member, v)})  # fmt: skip
    return found


def altered_fields(engine: Engine, contract: Contract, run_id: str, csvs: list[Path], event_times: tuple,
                   bigquery: Any = None, project: str | None = None) -> tuple[list[dict], list[str]]:  # fmt: skip
    """[{event_id, event_type, sink, field, published, held}] for the altered events of the run (after
    EVENT_STATUS), and notes on what could not be explained. `bigquery`: the reconcile's BigQuerySession."""
    t = engine.tables
    rows = engine.run(
        f"SELECT event_id, event_type FROM {t['event_status']} WHERE expected != 'dead_letter' "
        f"AND gcs_altered + bigquery_altered > 0 ORDER BY event_id LIMIT {MAX_EVENTS + 1}"
    )
    if not rows:
        return [], []
    notes = []
    if len(rows) > MAX_EVENTS:
        notes.append(f"which field was altered: shown for the first {MAX_EVENTS:,} altered events only")
        rows = rows[:MAX_EVENTS]
    if not engine.run(f"SELECT 1 AS found FROM {t['published']} WHERE run_id = '{run_id}' LIMIT 1"):
        try:
            engine.load_published({run_id: csvs})
        except Exception:  # a version 3 manifest has no `event` column: nothing to set beside the copies
            return [], ["which field was altered: this run's manifest keeps no published events (version 3)"]
    wanted: dict[str, list[str]] = {}
    for r in rows:
        wanted.setdefault(r["event_type"], []).append(r["event_id"])
    found: list[dict[str, Any]] = []
    for event_type in EVENT_TYPES:
        ids = wanted.get(event_type)
        if not ids:
            continue
        sinks: list[TableSink | GcsSink] = [s for s in contract.tables if s.event_type == event_type]
        if contract.gcs:
            sinks.insert(0, contract.gcs)
        for sink in sinks:
            published = _published_parts(engine, contract, sink, event_type, ids, run_id)
            keys = [p["key_digest"] for p in published.values()]
            by_key = {p["key_digest"]: e for e, p in published.items()}
            held = _held_parts(engine, contract, sink, event_type, ids, keys, event_times, bigquery, project, notes)
            entry = contract_sql.entry_of(sink, event_type)
            for copy in held:
                event_id = copy["event_id"] if sink.by_event_id else by_key.get(copy["key_digest"])
                mine = published.get(event_id)
                if mine is None:
                    continue
                n = len(part_paths(event_type))
                for diff in differences(event_type, [mine[f"part{i}"] for i in range(n)],
                                        [copy[f"part{i}"] for i in range(n)]):  # fmt: skip
                    found.append({"event_id": event_id, "event_type": event_type, "sink": entry, **diff})
    return found, notes


def _published_parts(engine: Engine, contract: Contract, sink: Any, event_type: str, ids: list[str],
                     run_id: str) -> dict[str, dict[str, Any]]:  # fmt: skip
    typed = f"({engine.typed_published(event_type)})"
    select = contract_sql.parts_select(sink, contract, event_type, typed, engine.arrays, ids, [], by_key=False)
    return {r["event_id"]: r for r in engine.run(f"{select} AND l.run_id = '{run_id}'")}


def _held_parts(engine: Engine, contract: Contract, sink: Any, event_type: str, ids: list[str], keys: list[str],
                event_times: tuple, bigquery: Any, project: str | None, notes: list[str]) -> list[dict]:  # fmt: skip
    if isinstance(sink, GcsSink):
        t = engine.tables
        entry = sink.entry(event_type)
        in_list = ", ".join(f"'{i}'" for i in ids)
        paths = [r["location"] for r in engine.run(
            f"SELECT DISTINCT location FROM {t['sink_events']} WHERE entry = '{entry}' AND event_id IN ({in_list})"
        )]  # fmt: skip
        paths = [p for p in paths if p and "://" not in p and Path(p).exists()]
        if not paths:
            return []
        parts = engine.gcs_parts(sink, contract, event_type, paths, ids, keys)
        if parts is None:
            notes.append("which field was altered: not read again from GCS on the BigQuery engine")
            return []
        return parts
    if bigquery is None:
        return []
    sql = contract_sql.table_parts_select(
        sink, contract, lambda name: f"`{project}.{contract.dataset}.{name}`", event_times, ids, keys
    )
    return [dict(r) for r in bigquery.client.query(sql, location=bigquery.location).result()]
