"""The canonical form (eventmodel.canonical): one meaning of "the same event", held equal between Python and SQL.

Python digests (what the publisher records) must equal the SQL digests computed over the GCS lines in DuckDB
and over BigQuery rows in the BigQuery emulator, for every generated event; and any change to any field must
change the digest.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import orjson
import pytest

from eventmodel import rows
from eventmodel.canonical import canonical_digest, canonical_sql, canonical_text
from eventmodel.schema import EVENT_TYPES, SCHEMAS
from eventmodel.validate import Accepted, validate
from generator.stream import DEAD_LETTER, EventStream, GeneratorConfig
from reconcile.engine import DuckDBEngine
from reconcile.queries import partition_bound


def valid_events(count: int = 600, seed: int = 5) -> list[tuple[str, dict]]:
    """`count` messages' valid events, and one order of a million and more: NUMERIC past DuckDB's DECIMAL(18,3)
    once scaled to 10^-9 units (the canonical form's)."""
    stream = EventStream(GeneratorConfig(seed=seed, late_rate=0.1, out_of_order_rate=0.1), run_id="canon")
    events = [(m.event_type, orjson.loads(m.data)) for m in stream.take(count) if m.expected != DEAD_LETTER]
    big = dict(next(e for t, e in events if t == "order"))
    big["items"] = [{**big["items"][0], "quantity": 2, "price": 617283.95}]
    big["total_amount"] = 1234567.9
    return [*events, ("order", big)]


def leaf_paths(event: dict, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for key, value in event.items():
        if isinstance(value, dict):
            paths += leaf_paths(value, (*prefix, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                paths += leaf_paths(item, (*prefix, key, i))
        else:
            paths.append((*prefix, key))
    return paths


def changed(event: dict, path: tuple) -> dict:
    copied = copy.deepcopy(event)
    target = copied
    for step in path[:-1]:
        target = target[step]
    value = target[path[-1]]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        target[path[-1]] = "x"
    elif isinstance(value, str) and value.endswith("Z"):
        target[path[-1]] = value[:-2] + ("1Z" if value[-2] != "1" else "2Z")  # one unit of the last digit
    elif isinstance(value, str):
        target[path[-1]] = value + "x"
    else:
        target[path[-1]] = value + 1
    return copied


def test_the_digest_ignores_encoding_and_notices_every_field():
    for event_type, event in valid_events(300):
        digest = canonical_digest(event_type, event)
        reordered = dict(reversed(list(event.items())))
        assert canonical_digest(event_type, orjson.loads(orjson.dumps(reordered))) == digest
        for path in leaf_paths(event):
            assert canonical_digest(event_type, changed(event, path)) != digest, (event_type, path)


def test_the_type_mapping_is_the_documented_one():
    base = {"event_type": "inventory", "inventory_id": "i", "product_id": "p", "warehouse_id": "w",
            "quantity_change": 5, "reason": "restock", "timestamp": "2025-02-08T13:09:01.5Z"}  # fmt: skip
    same_time = dict(base, timestamp="2025-02-08T15:09:01.500000+02:00")
    assert canonical_digest("inventory", base) == canonical_digest("inventory", same_time)
    assert canonical_text("inventory", base).endswith("\x1f1739020141500000")
    missing, empty = dict(base, reason=None), dict(base, reason="")
    assert canonical_digest("inventory", missing) != canonical_digest("inventory", empty)
    order_price = {"items": [{"price": 16}], "total_amount": 16.0}
    float_price = {"items": [{"price": 16.0}], "total_amount": 16}
    assert canonical_text("order", order_price) == canonical_text("order", float_price)
    assert canonical_text("order", {"total_amount": 28.49}).count("28490000000") == 1


def test_python_and_duckdb_agree_on_gcs_lines(tmp_path):
    events = valid_events()
    engine = DuckDBEngine()
    try:
        for event_type in EVENT_TYPES:
            mine = [(i, e) for i, (t, e) in enumerate(events) if t == event_type]
            path = tmp_path / f"{event_type}.json"
            path.write_bytes(
                b"".join(
                    orjson.dumps({"event_id": f"e{i}", "message_id": str(i), "publish_time": None,
                                  "attributes": {"run_id": "canon"}, "event": e}) + b"\n"
                    for i, e in mine
                )
            )  # fmt: skip
            engine.load_files(
                [{"path": str(path), "uri": str(path), "container_type": event_type, "container_minute": "x",
                  "name_ok": True, "updated": None}]
            )  # fmt: skip
            engine.load_gcs_lines(event_type, [str(path)], "TRUE")
        found = {r["event_id"]: r["canonical_digest"] for r in engine.run("SELECT * FROM sink_events")}
    finally:
        engine.close()
    assert len(found) == len(events)
    for i, (event_type, event) in enumerate(events):
        assert found[f"e{i}"] == canonical_digest(event_type, event), (event_type, event)


@pytest.mark.integration
def test_python_and_bigquery_agree_on_rows(bigquery_emulator):
    from ddl.apply import apply_ddl

    project, dataset = "canonical-it", "events"
    apply_ddl(project=project, dataset=dataset, emulator=bigquery_emulator.host_port)
    client = bigquery_emulator.client()
    events = valid_events(400, seed=6)
    expected = {}
    for i, (event_type, event) in enumerate(events):
        accepted = validate(orjson.dumps(event))
        assert isinstance(accepted, Accepted)
        row = rows.event_row(accepted, message_id=str(i), publish_time=None, attributes={"event_id": f"e{i}"})
        errors = client.insert_rows_json(f"{project}.{dataset}.{rows.table_of(event_type)}", [row])
        assert not errors, errors
        expected[f"e{i}"] = canonical_digest(event_type, event)
    found = {}
    for event_type in EVENT_TYPES:
        table = f"`{project}.{dataset}.{rows.table_of(event_type)}`"
        # Every read of user_activity names its partition column (require_partition_filter; strict mode checks).
        every_time = partition_bound(event_type, (datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)))
        sql = f"SELECT event_id, {canonical_sql(event_type)} AS d FROM {table} WHERE {every_time}"
        for r in client.query(sql).result():
            found[r["event_id"]] = r["d"]
    assert found == expected


def test_every_schema_field_reaches_the_sql():
    for event_type, fields in SCHEMAS.items():
        sql = canonical_sql(event_type)
        for f in fields:
            assert f.name in sql, (event_type, f.name)


def test_a_tree_of_more_files_than_one_read_takes_is_read_whole(tmp_path, monkeypatch):
    """DuckDB reads the files in slices (engine.FILES_PER_READ, which bounds its memory): every line of every
    slice arrives, none twice."""
    from reconcile import engine as engines

    monkeypatch.setattr(engines, "FILES_PER_READ", 2)
    orders = [e for t, e in valid_events() if t == "order"][:5]
    engine = DuckDBEngine()
    try:
        paths = []
        for i, event in enumerate(orders):
            path = tmp_path / f"order-{i}.json"
            line = {"event_id": f"e{i}", "message_id": str(i), "publish_time": None, "attributes": {}, "event": event}
            path.write_bytes(orjson.dumps(line) + b"\n")
            paths.append(str(path))
        engine.load_files([{"path": p, "uri": p, "container_type": "order", "container_minute": "x", "name_ok": True,
                            "updated": None} for p in paths])  # fmt: skip
        engine.load_gcs_lines("order", paths, "TRUE")
        found = sorted(r["event_id"] for r in engine.run("SELECT event_id FROM sink_events"))
    finally:
        engine.close()
    assert found == [f"e{i}" for i in range(len(orders))]
