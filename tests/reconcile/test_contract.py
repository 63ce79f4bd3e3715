"""Sink contracts (reconcile/contract.py): the file's checks, the built-in contract, path templates, and the
verdicts that depend on the contract alone (identity collisions, malformed events a pipeline may drop, copies a
sink cannot tell apart), reconciled on DuckDB from a hand-made run and a GCS tree (no emulator)."""

from __future__ import annotations

import collections
import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import yaml

from eventmodel.canonical import canonical_digest
from eventmodel.history import natural_key
from generator.stream import DEAD_LETTER, EventStream, GeneratorConfig
from publisher.manifest import EVENT_COLUMNS, payload_digest, write_manifest
from reconcile import run as R
from reconcile.contract import (
    ContractError,
    PathTemplate,
    default_contract,
    default_document,
    json_schema,
    load_contract,
    parse_contract,
)


def contract(**changes) -> dict:
    document = {"version": 1, "bigquery": {"tables": [{"table": "orders", "type": "order", "columns": {
        "order_id": "order_id", "customer_id": "customer_id", "order_date": "order_date", "status": "status",
        "items": "items", "shipping_address": "shipping_address", "total_amount": "total_amount"}}]}}  # fmt: skip
    document.update(changes)
    return document


# ----------------------------------------------------------------------------------------- the file's checks


def test_the_built_in_contract_is_a_valid_contract_file_and_reads_back_the_same():
    import jsonschema

    document = default_document("./output", "events", "backend-events-dead-letter")
    jsonschema.Draft202012Validator(json_schema()).validate(document)
    again = parse_contract(yaml.safe_load(yaml.safe_dump(document)), source="built-in")
    assert again == default_contract("./output", "events", "backend-events-dead-letter")
    assert not again.needs_published_events()  # our pipeline carries event ids: the manifest's digests suffice


def test_the_shipped_schema_is_a_valid_json_schema():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json_schema())


@pytest.mark.parametrize(
    ("document", "said", "fix"),
    [
        ({"version": 2}, "at version", "sink_contract.schema.json"),
        (contract(duplicates="sometimes"), "at duplicates", "sink_contract.schema.json"),
        (contract(bigquery={"tables": [{"table": "t", "type": "order", "columns": {"order_no": "x"}}]}),
         "order has no field 'order_no'", "use one of"),
        (contract(bigquery={"tables": [{"table": "t", "type": "order", "columns": {"order_id": "order_id"}}]}),
         "neither kept in a column nor declared omitted", "omit"),
        (contract(bigquery={"tables": [{"table": "t", "type": "inventory", "columns": {"product_id": "p"},
                                        "omit": ["inventory_id", "warehouse_id", "quantity_change", "reason",
                                                 "timestamp"]}]}),
         "found by the natural key of inventory (inventory_id), but it keeps no column for inventory_id", "metadata"),
        (contract(bigquery={"tables": [{"table": "t", "type": "order", "columns": {"status": {"column": "s",
                                                                                             "truncate": "day"}}}]}),
         "truncate applies to times", "remove truncate"),
    ],
    ids=["version", "enum", "unknown-field", "field-lost", "key-not-kept", "truncate-a-text"],
)  # fmt: skip
def test_a_contract_that_cannot_be_used_says_where_and_what_to_write(document, said, fix):
    with pytest.raises(ContractError) as caught:
        parse_contract(document, source="my.sinks.yaml")
    assert said in caught.value.message and caught.value.message.startswith("my.sinks.yaml")
    assert fix in caught.value.fix


def test_a_child_table_must_find_its_parent_event():
    document = contract()
    table = document["bigquery"]["tables"][0]
    del table["columns"]["items"]
    table["children"] = [{"table": "order_items", "field": "items", "parent_key": {"order_id": "order_id"},
                          "columns": {"product_id": "product_id"}}]  # fmt: skip
    with pytest.raises(ContractError, match="does not identify one order event"):
        parse_contract(document)
    table["children"][0]["parent_key"].update(status="status", order_date="order_date")
    assert parse_contract(document).tables[0].children[0].table == "order_items"


def test_a_yaml_error_names_the_line(tmp_path):
    path = tmp_path / "bad.sinks.yaml"
    path.write_text("version: 1\nbigquery:\n  tables: [\n")
    with pytest.raises(ContractError, match=r"bad.sinks.yaml is not YAML \(line \d+"):
        load_contract(path)


# ------------------------------------------------------------------------------------------ path templates


def test_a_path_template_reads_the_place_and_checks_its_repeats():
    t = PathTemplate("{type}/{YYYY}/{MM}/{DD}/{HH}/{mm}/{type}_{YYYY}{MM}{DD}{HH}{mm}{NNNN}.json")
    assert t.match("order/2025/02/08/13/09/order_2025020813090001.json", "order") == ("202502081309", True)
    assert t.match("order/2025/02/08/13/09/order_20250208130912345.json", "order") == ("202502081309", True)
    assert t.match("order/2025/02/08/13/09/order_2025020813100001.json", "order") == ("202502081309", False)
    assert t.match("inventory/2025/02/08/13/09/inventory_2025020813090001.json", "order") is None
    hive = PathTemplate("{type}/dt={YYYY}-{MM}-{DD}/hour={HH}/{type}-{*}.json.gz")
    assert hive.match("order/dt=2025-02-08/hour=13/order-a1b2.json.gz", "order") == ("2025020813", True)
    assert hive.time_format == "%Y%m%d%H" and hive.folder("order") == "order/"


# ------------------------------------------------------------------------------------ verdicts on DuckDB

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RUN = "20261201-120000-ctct"


def _events(count: int) -> list[tuple[str, dict]]:
    stream = EventStream(GeneratorConfig(seed=5, malformed_rate=0.0, duplicate_rate=0.0), run_id=RUN)
    return [(m.event_id, orjson.loads(m.data)) for m in stream.take(count * 3) if m.expected == "inventory"][:count]


def _write_run(rows: list[dict]) -> None:
    write_manifest(RUN, {"run_id": RUN, "manifest_version": 4, "status": "completed", "started_at": T0.isoformat(),
                         "finished_at": (T0 + timedelta(minutes=1)).isoformat(), "target": {"kind": "pubsub"},
                         "totals": {"sent": len(rows), "published": len(rows)}})  # fmt: skip
    with (R.run_dir(RUN) / "events-0.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, EVENT_COLUMNS)
        writer.writeheader()
        writer.writerows({c: r.get(c, "") for c in EVENT_COLUMNS} for r in rows)


def _sent(event_id: str, event: dict | None = None, data: bytes | None = None, **extra) -> dict:
    data = data if data is not None else orjson.dumps(event)
    valid = event is not None
    return {"event_id": event_id, "expected": "inventory" if valid else DEAD_LETTER, "event_type": "inventory",
            "event_time": event["timestamp"] if valid else "", "outcome": "published", "message_id": event_id,
            "payload_digest": payload_digest(data), "canonical_digest": canonical_digest("inventory", event)
            if valid else "", "event": data.decode() if valid else "", **extra}  # fmt: skip


def _tree(root: Path, events: list[dict]) -> None:
    """One JSON array per minute, a pipeline of the user's: inventory/<YYYY>/<MM>/<DD>/<HH>/<mm>.json."""
    by_minute = collections.defaultdict(list)
    for e in events:
        by_minute[e["timestamp"][:16]].append(e)
    for minute, found in by_minute.items():
        path = root / "inventory" / minute[:4] / minute[5:7] / minute[8:10] / minute[11:13] / f"{minute[14:16]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found))


def _gcs_contract(tmp_path: Path, **changes) -> str:
    document = {"version": 1, "name": "arrays by minute", "gcs": {
        "root": str(tmp_path / "out"), "format": "json_array", "record": "",
        "paths": {"inventory": "inventory/{YYYY}/{MM}/{DD}/{HH}/{mm}.json"}, "placed_by": "event_time"},
        **changes}  # fmt: skip
    path = tmp_path / "arrays.sinks.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def _reconcile(tmp_path: Path, **changes):
    target = R.ReconcileTarget(output_root=str(tmp_path / "out"), dataset=None, read_dead_letter_topic=False,
                               project="contract-tests", sinks=_gcs_contract(tmp_path, **changes))  # fmt: skip
    return R.reconcile(RUN, target)


def test_a_pipeline_of_json_arrays_without_ids_reconciles_by_natural_key(home):
    events = _events(6)
    _write_run([_sent(i, e) for i, e in events])
    _tree(home / "out", [e for _, e in events])
    report = _reconcile(home)
    assert report.exit_code == 0, report.problems
    assert {e["entry"]: (e["expected"], e["held"]) for e in report.entries}["gcs:inventory"] == (6, 6)
    # Broken: an element altered is named, field and values; one dropped is missing.
    changed = [dict(e) for _, e in events]
    changed[0]["quantity_change"] = changed[0]["quantity_change"] + (1 if changed[0]["quantity_change"] > 0 else -1)
    kept = changed[:-1]
    for path in (home / "out").rglob("*.json"):
        path.unlink()
    _tree(home / "out", kept)
    broken = _reconcile(home)
    # quantity_change is not part of inventory's natural key (inventory_id): the copy is still found, and altered.
    assert {p["event_id"]: p["problem"] for p in broken.problems} == {events[0][0]: "altered",
                                                                      events[-1][0]: "missing"}  # fmt: skip
    assert [(f["field"], f["published"], f["held"]) for f in broken.altered_fields] == [
        ("quantity_change", str(events[0][1]["quantity_change"]), str(changed[0]["quantity_change"]))
    ]


def test_two_published_events_with_one_natural_key_are_a_collision_never_merged(home):
    (a_id, a), (b_id, b) = _events(2)
    b = {**b, "inventory_id": a["inventory_id"]}  # two events, one key (inventory_id)
    _write_run([_sent(a_id, a), _sent(b_id, b)])
    _tree(home / "out", [a, b])
    report = _reconcile(home)
    assert report.exit_code == 1
    assert {p["event_id"]: p["problem"] for p in report.problems} == {a_id: "collision", b_id: "collision"}


def test_the_generator_never_sends_two_events_with_one_natural_key_in_a_run():
    keys = collections.defaultdict(set)
    config = GeneratorConfig(seed=3, late_rate=0.3, duplicate_rate=0.1, malformed_rate=0.05)
    for m in EventStream(config, run_id="keys").take(30_000):
        if m.expected != DEAD_LETTER:
            keys[(m.expected, natural_key(m.expected, orjson.loads(m.data)))].add(m.event_id)
    assert len(keys) > 25_000
    assert not [k for k, ids in keys.items() if len(ids) > 1]


def test_a_malformed_event_a_pipeline_may_drop_passes_only_when_the_contract_says_so(home):
    events = _events(2)
    junk = b"{not json"
    _write_run([*(_sent(i, e) for i, e in events), _sent("bad-1", data=junk, kind="cut_off_write",
                                                        reason="INVALID_JSON")])  # fmt: skip
    _tree(home / "out", [e for _, e in events])
    assert {p["problem"] for p in _reconcile(home).problems} == {"missing"}
    assert _reconcile(home, malformed="dropped_ok").exit_code == 0


def test_copies_a_sink_cannot_tell_apart_fail_only_a_deduplicating_contract(home):
    events = _events(2)
    _write_run([_sent(i, e) for i, e in events])
    _tree(home / "out", [e for _, e in events] + [events[0][1]])  # the first event twice
    assert {p["event_id"]: p["problem"] for p in _reconcile(home).problems} == {events[0][0]: "duplicated"}
    assert _reconcile(home, duplicates="at_least_once").exit_code == 0


def test_a_child_joined_on_a_field_its_parent_does_not_keep_is_refused():
    document = contract()
    table = document["bigquery"]["tables"][0]
    del table["columns"]["items"], table["columns"]["status"]
    table["omit"] = ["status"]
    key = {"order_id": "order_id", "status": "status", "order_date": "order_date"}
    table["children"] = [{"table": "order_items", "field": "items", "columns": {"product_id": "product_id"},
                          "parent_key": key}]  # fmt: skip
    with pytest.raises(ContractError, match="parent key names status, which the table orders keeps in no column"):
        parse_contract(document)


def test_an_event_published_twice_and_held_once_is_not_a_duplicate(home):
    events = _events(2)
    (first_id, first), second = events
    _write_run([_sent(first_id, first), _sent(first_id, first, duplicate="1"), _sent(*second)])  # a re-send
    _tree(home / "out", [e for _, e in events])
    report = _reconcile(home)
    assert report.exit_code == 0, report.problems
    assert {e["entry"]: e["rows"] for e in report.entries}["gcs:inventory"] == 2


def test_a_history_run_cannot_be_found_by_natural_key(home):
    events = _events(1)
    _write_run([_sent(i, e) for i, e in events])
    manifest = json.loads((R.run_dir(RUN) / "manifest.json").read_text())
    write_manifest(RUN, {**manifest, "target": {"kind": "s3"}})
    with pytest.raises(R.ReconcileError, match="history written to S3") as caught:
        _reconcile(home)
    assert "leave out --sinks" in caught.value.fix
