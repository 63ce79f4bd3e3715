"""Three Beam pipelines written from scratch as users write them (flattened.py, whole_event.py, buggy.py), each run
unchanged through `workbench exec` on the local stack: what landed in each design's own shape, and for the buggy
one, that each of its bugs really happened. Reconcile's verdicts on the same runs (with each `*.sinks.yaml`) use
the fixtures of conftest.py.

The fast tests check the pipelines' pure parts against the generator's catalogue and the import rule (nothing of
this repository); the slow ones run the pipelines.
"""

from __future__ import annotations

import ast
import base64
import collections
import gzip
import hashlib
import importlib.util
import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from foreign_support import BUGGY_DROPPED_KINDS, HERE, LOCAL_TZ
from stack_support import BUCKET

PIPELINES = ("flattened", "whole_event", "buggy")


def slow_run(test):
    """A test of a pipeline run: the session's stack and the run's fixture may start within its time."""
    return pytest.mark.slow(pytest.mark.integration(pytest.mark.timeout(900)(test)))


KOLKATA = timedelta(hours=5, minutes=30)


def load(name: str):
    """A pipeline module by its file, as `python X.py` would load it (not as a package of this repository)."""
    spec = importlib.util.spec_from_file_location(f"foreign_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# ---------------------------------------------------------------- fast: the pipelines' own parts


@pytest.mark.parametrize("name", PIPELINES)
def test_pipelines_import_only_beam_google_and_the_standard_library(name):
    tree = ast.parse((HERE / f"{name}.py").read_text())
    roots = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    roots |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    foreign = {
        r for r in roots if r not in sys.stdlib_module_names and r not in ("apache_beam", "google", "__future__")
    }
    assert not foreign, f"{name}.py imports {foreign}"


def catalogue(count: int = 6000, seed: int = 5):
    from generator.stream import EventStream, GeneratorConfig

    config = GeneratorConfig(seed=seed, malformed_rate=0.5, customers=100, products=50, warehouses=3, users=100)
    return EventStream(config, "foreign-catalogue").take(count)


def test_flattened_validator_accepts_exactly_the_valid_events():
    flattened = load("flattened")
    wrong = collections.Counter()
    for m in catalogue():
        try:
            flattened.validate(m.data)
            accepted = True
        except flattened.BadEvent:
            accepted = False
        if accepted != (m.expected != "dead_letter"):
            wrong[m.kind or m.expected] += 1
    assert not wrong


def test_whole_event_spec_accepts_exactly_the_valid_events():
    whole_event = load("whole_event")
    wrong = collections.Counter()
    for m in catalogue(seed=6):
        kind, _ = whole_event.check(m.data)
        if (kind is not None) != (m.expected != "dead_letter"):
            wrong[m.kind or m.expected] += 1
    assert not wrong


def test_flattened_item_rows_name_their_parent_event():
    flattened = load("flattened")
    order = next(json.loads(m.data) for m in catalogue(200) if m.expected == "order")
    rows = flattened.item_rows(order)
    assert [r["line_no"] for r in rows] == list(range(1, len(order["items"]) + 1))
    parent = {(r["order_id"], r["status"], r["order_date"]) for r in rows}
    assert parent == {(order["order_id"], order["status"], flattened.utc_text(order["order_date"]))}


def test_flattened_dead_letter_keeps_bytes_that_are_not_utf8():
    flattened = load("flattened")
    row = flattened.dead_letter_row(b"\xff\xfe{", "not_utf8", "x")
    assert row["payload_encoding"] == "base64" and base64.b64decode(row["payload"]) == b"\xff\xfe{"
    assert flattened.dead_letter_row(b"{", "bad_json", "x")["payload"] == "{"


def test_buggy_file_names_collide_within_a_second_and_follow_local_time(monkeypatch):
    buggy = load("buggy")
    monkeypatch.setenv("TZ", LOCAL_TZ)
    time.tzset()
    try:
        first = {"event_type": "inventory", "timestamp": "2025-02-08T13:09:01.123Z"}
        second = {**first, "timestamp": "2025-02-08T13:09:01.987Z"}
        assert buggy.file_path("/out", first) == buggy.file_path("/out", second)
        assert buggy.file_path("/out", first) == "/out/inventory/2025/02/08/18/39/inventory_20250208183901.json"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert buggy.clean({"event_type": "order", "items": [{"price": 19.99}]})["items"][0]["price"] == 20.0


# ---------------------------------------------------------------- slow: the runs


def table_rows(run, table: str) -> list[dict]:
    with run.stack.bigquery() as client:
        return [dict(r) for r in client.query(f"SELECT * FROM `{run.dataset}.{table}`").result()]


def digests(rows) -> collections.Counter:
    return collections.Counter(r["payload_digest"] for r in rows)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def local_files(root: str, pattern: str = "*.json") -> list[Path]:
    return sorted(p for p in Path(root).rglob(pattern) if p.is_file())


@slow_run
def test_flattened_lands_one_row_per_event_in_each_table(flattened_run):
    run = flattened_run
    assert "acknowledged" in run.pipeline.text
    orders, items = table_rows(run, "orders"), table_rows(run, "order_items")
    inventory, activity = table_rows(run, "inventory"), table_rows(run, "user_activity")
    # Deduplicated by natural key: one row per distinct published event, duplicates written once.
    assert len(orders) == len(run.expected("order")) > 0
    assert len(inventory) == len(run.expected("inventory")) > 0
    assert len(activity) == len(run.expected("user_activity")) > 0
    assert len(run.expected("order", with_duplicates=True)) + len(run.expected("inventory", True)) + len(
        run.expected("user_activity", True)
    ) > len(orders) + len(inventory) + len(activity), "the run should have sent duplicates"
    keys = [(r["order_id"], r["status"], r["order_date"]) for r in orders]
    assert len(set(keys)) == len(keys)
    assert all(r["ship_street"] and r["ship_city"] and r["ship_country"] for r in orders)
    assert all(r["session_id"] and r["platform"] for r in activity)
    # Each item row finds its parent event, with lines 1..item_count.
    lines = collections.defaultdict(list)
    for item in items:
        lines[(item["order_id"], item["status"], item["order_date"])].append(item["line_no"])
    assert {k: sorted(v) for k, v in lines.items()} == {
        (r["order_id"], r["status"], r["order_date"]): list(range(1, r["item_count"] + 1)) for r in orders
    }
    assert not {c for r in orders + items + inventory + activity for c in r if "event_id" in c}


@slow_run
def test_flattened_dead_letters_hold_each_malformed_payload_exactly(flattened_run):
    run = flattened_run
    rows = table_rows(run, "dead_letters")
    published = run.expected("dead_letter")
    assert len(rows) == len(published) > 0
    payloads = [base64.b64decode(r["payload"]) if r["payload_encoding"] == "base64" else r["payload"].encode()
                for r in rows]  # fmt: skip
    assert collections.Counter(md5(p) for p in payloads) == digests(published)
    assert any(r["payload_encoding"] == "base64" for r in rows)  # the bodies that are not UTF-8
    assert all(r["reason"] and r["error"] for r in rows)


@slow_run
def test_flattened_files_are_json_arrays_in_processing_time_folders(flattened_run):
    run = flattened_run
    files = local_files(run.output_root)
    assert files and not [p for p in Path(run.output_root).rglob("*") if p.is_file() and p.suffix != ".json"]
    counts = collections.Counter()
    for path in files:
        events = json.loads(path.read_bytes())
        assert isinstance(events, list) and events
        kind = path.relative_to(run.output_root).parts[0]
        assert {e["event_type"] for e in events} == {kind}
        counts[kind] += len(events)
        folder = datetime.strptime("/".join(path.relative_to(run.output_root).parts[1:6]), "%Y/%m/%d/%H/%M")
        written = datetime.fromtimestamp(path.stat().st_mtime, UTC).replace(tzinfo=None)
        assert timedelta(0) <= written - folder < timedelta(minutes=2), path  # the window it was processed in
    assert counts == {k: len(run.expected(k)) for k in ("order", "inventory", "user_activity")}


@slow_run
def test_whole_event_keeps_every_copy_in_its_table(whole_event_run):
    run = whole_event_run
    for kind, table in (("order", "order_events"), ("inventory", "inventory_events"),
                        ("user_activity", "user_activity_events")):  # fmt: skip
        rows = table_rows(run, table)
        published = run.expected(kind, with_duplicates=True)
        # At least once: every copy of a re-sent event is a row of its own, under the event's id.
        assert collections.Counter(r["event_id"] for r in rows) == collections.Counter(p["event_id"] for p in published)
        for row in rows:
            event = json.loads(row["event_json"])
            assert event["event_type"] == kind and row["event_type"] == kind
            assert row["event_time"] == utc(event["order_date" if kind == "order" else "timestamp"])
    assert any(r["duplicate"] for r in run.published)


@slow_run
def test_whole_event_files_are_gzipped_objects_by_event_hour(whole_event_run):
    run = whole_event_run
    bucket = run.stack.storage().bucket(BUCKET)
    blobs = list(bucket.list_blobs(prefix="raw/"))
    assert blobs and all(b.name.endswith(".json.gz") for b in blobs)
    copies = collections.Counter()
    for blob in blobs:
        record = json.loads(gzip.decompress(blob.download_as_bytes()))
        event, kind = record["event"], blob.name.split("/")[1]
        assert event["event_type"] == kind and record["attributes"]["run_id"] == run.run_id
        at = utc(event["order_date" if kind == "order" else "timestamp"])
        assert blob.name.startswith(f"raw/{kind}/dt={at:%Y-%m-%d}/hour={at:%H}/{kind}-")
        copies[record["event_id"]] += 1
    valid = [r for r in run.published if r["expected"] != "dead_letter"]
    assert copies == collections.Counter(r["event_id"] for r in valid)


@slow_run
def test_whole_event_dead_letters_are_files_under_their_prefix(whole_event_run):
    run = whole_event_run
    blobs = list(run.stack.storage().bucket(BUCKET).list_blobs(prefix="rejected/"))
    published = run.expected("dead_letter")
    assert len(blobs) == len(published) > 0
    records = [json.loads(b.download_as_bytes()) for b in blobs]
    assert collections.Counter(md5(base64.b64decode(r["payload_base64"])) for r in records) == digests(published)
    assert all(r["reason"] for r in records)


def buggy_file_events(run) -> list[tuple[Path, dict]]:
    """The events the buggy pipeline's files hold. Two writers of one second may run at once (the DirectRunner runs
    bundles in parallel) and leave a torn tail behind the survivor's line: such a tail is no event."""
    found = []
    for path in local_files(run.output_root):
        for line in path.read_text().splitlines():
            try:
                found.append((path, json.loads(line)))
            except ValueError:
                continue
    return found


@slow_run
def test_buggy_drops_what_is_not_json_without_a_trace(buggy_run):
    run = buggy_run
    malformed = run.expected("dead_letter")
    dropped = [r for r in malformed if r["kind"] in BUGGY_DROPPED_KINDS]
    assert dropped and len(dropped) < len(malformed)
    bad = table_rows(run, "bad_events")
    assert len(bad) == len(malformed) - len(dropped)  # only the unknown event types reached bad_events
    kept = {md5(r["payload"].encode()) for r in bad}
    assert not kept & {r["payload_digest"] for r in dropped}


@slow_run
def test_buggy_files_of_the_same_second_overwrite_each_other(buggy_run):
    run = buggy_run
    in_files = buggy_file_events(run)
    valid = [r for r in run.published if r["expected"] != "dead_letter"]
    assert 0 < len(in_files) < len({r["event_id"] for r in valid})
    # One file per (type, second of the event): exactly what survives of each second.
    seconds = {(r["expected"], r["event_time"][:19]) for r in valid}
    assert len(local_files(run.output_root)) == len(seconds)
    assert len(in_files) == len(seconds)  # one survivor per second


@slow_run
def test_buggy_folders_are_shifted_by_the_local_time_zone(buggy_run):
    run = buggy_run
    for path, event in buggy_file_events(run):
        at = utc(event["order_date" if event["event_type"] == "order" else "timestamp"])
        folder = datetime.strptime("/".join(path.relative_to(run.output_root).parts[1:6]), "%Y/%m/%d/%H/%M")
        assert folder == (at + KOLKATA).replace(tzinfo=None, second=0, microsecond=0), path
        assert folder != at.replace(tzinfo=None, second=0, microsecond=0)


@slow_run
def test_buggy_rounds_prices_to_one_decimal(buggy_run):
    from generator.universe import build_universe

    run = buggy_run
    prices = {p.product_id: p.price for p in build_universe(seed=13).products}  # what publish --seed 13 sent
    lines = [item for row in table_rows(run, "orders") for item in row["items"]]
    lines += [item for _, e in buggy_file_events(run) if e["event_type"] == "order" for item in e["items"]]
    assert lines
    assert all(item["price"] == round(prices[item["product_id"]], 1) for item in lines)
    assert sum(item["price"] != prices[item["product_id"]] for item in lines) > len(lines) // 2


@slow_run
def test_buggy_keeps_duplicates(buggy_run):
    run = buggy_run
    published = [r for r in run.published if r["expected"] != "dead_letter"]
    assert len(published) > len({r["event_id"] for r in published}), "the run should have sent duplicates"
    keys = collections.Counter()
    for row in table_rows(run, "orders"):
        keys[(row["order_id"], row["status"], row["order_date"])] += 1
    for row in table_rows(run, "inventory"):
        keys[(row["inventory_id"],)] += 1
    for row in table_rows(run, "user_activity"):
        keys[(row["user_id"], row["metadata"]["session_id"], row["activity_type"], row["timestamp"])] += 1
    # Every copy sent is a row: the contract's "deduplicated" is not what happens.
    assert sum(keys.values()) == len(published)
    assert sorted(n for n in keys.values() if n > 1) == sorted(
        n for n in collections.Counter(r["event_id"] for r in published).values() if n > 1
    )


def test_contracts_load_with_reconciles_loader():
    contract = pytest.importorskip("reconcile.contract")
    for name in PIPELINES:
        loaded = contract.load_contract(HERE / f"{name}.sinks.yaml")
        assert loaded is not None


def template_regex(template: str) -> re.Pattern:
    tokens = {"YYYY": r"\d{4}", "MM": r"\d\d", "DD": r"\d\d", "HH": r"\d\d", "mm": r"\d\d", "ss": r"\d\d",
              "*": r"[^/]+"}  # fmt: skip
    parts = re.split(r"\{([^{}]*)\}", template)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else tokens.get(p, f"(?P<{p}>[^/]+)")
                              for i, p in enumerate(parts)))  # fmt: skip


def sample_events() -> dict[str, dict]:
    found = {}
    for m in catalogue(300):
        if m.expected != "dead_letter":
            found.setdefault(m.expected, json.loads(m.data))
    return found


def test_each_contract_names_the_pipelines_own_columns_and_paths():
    """The contracts as committed against the pipelines' own schemas and path functions: a renamed column or a
    changed file name in a pipeline fails here, without a stack."""
    import yaml

    events = sample_events()
    flattened, whole_event, buggy = load("flattened"), load("whole_event"), load("buggy")
    columns_of = {
        "flattened": {t: {f["name"] for f in s["fields"]} for t, s in flattened.SCHEMAS.items()},
        "whole_event": {t: {f["name"] for f in whole_event.SCHEMA["fields"]} for t in whole_event.TABLES.values()},
        "buggy": {t: {f["name"] for f in fields} for t, fields in buggy.SCHEMAS.items()},
    }
    window_ = type("W", (), {"start": datetime(2025, 2, 8, 13, 9, tzinfo=UTC).timestamp()})()
    pane = type("P", (), {"index": 0})()
    message = type("M", (), {"message_id": "1234", "attributes": {}, "publish_time": None})()
    path_of = {
        "flattened": lambda kind, e: flattened.window_file_name(window_, pane, 0, 1, "", kind),
        "whole_event": lambda kind, e: whole_event.event_path("", kind, e, message.message_id).lstrip("/"),
        "buggy": lambda kind, e: buggy.file_path("", e).lstrip("/"),
    }
    for name in PIPELINES:
        contract = yaml.safe_load((HERE / f"{name}.sinks.yaml").read_text())
        tables = columns_of[name]
        for table in contract["bigquery"]["tables"]:
            named = {c if isinstance(c, str) else c["column"] for c in table.get("columns", {}).values()}
            named |= {v for v in table.get("metadata", {}).values() if v}
            named |= {table["event_column"]} if table.get("event_column") else set()
            assert named <= tables[table["table"]], (name, table["table"], named - tables[table["table"]])
            for child in table.get("children", []):
                child_named = set(child["parent_key"].values()) | {child["order_by"]}
                child_named |= {c if isinstance(c, str) else c["column"] for c in child["columns"].values()}
                assert child_named <= tables[child["table"]], (name, child["table"])
        dead = contract["dead_letters"].get("table")
        if dead:
            named = {v for k, v in dead.items() if k not in ("table", "partition_column", "payload_cut_bytes")}
            assert named <= tables[dead["table"]], (name, dead)
        for kind, template in contract["gcs"]["paths"].items():
            path = path_of[name](kind, events[kind])
            assert template_regex(template.replace("{type}", kind)).fullmatch(path), (name, template, path)
