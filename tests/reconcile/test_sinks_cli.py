"""`workbench sinks show | init | check` as a user runs them (`python -m workbench.cli ...`), against the real
BigQuery emulator: tables made the way tests/foreign_pipelines/flattened.py makes its own (its SCHEMAS and
PARTITIONING, through tables.insert like Beam's CREATE_IF_NEEDED), and a local tree of its JSON-array files."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
import yaml

from reconcile.contract import default_document, json_schema, parse_contract

ROOT = Path(__file__).resolve().parents[2]
FLATTENED = ROOT / "tests" / "foreign_pipelines" / "flattened.py"
PROJECT = "workbench-tests"  # the session emulator's project (tests/conftest.py)

pytestmark = pytest.mark.integration


def _flattened():
    spec = importlib.util.spec_from_file_location("flattened_pipeline", FLATTENED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workbench(tmp_path: Path, *args: str, bigquery: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """`python -m workbench.cli sinks ARGS` with no stack of its own: the emulators it may talk to are named."""
    env = {**{k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}, **(env or {})}
    env.update(PYTHONPATH=str(ROOT), WORKBENCH_HOME=str(tmp_path / "home"), NO_GCE_CHECK="true", COLUMNS="250")
    if bigquery:
        env["BIGQUERY_EMULATOR_HOST"] = bigquery
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "sinks", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    done.text = " ".join((done.stdout + done.stderr).split())  # type: ignore[attr-defined]
    return done


@pytest.fixture
def shop(bigquery_emulator, tmp_path):
    """A dataset with the flattened pipeline's tables (orders partitioned by order_date and requiring a partition
    filter, as a careful shop sets it) and a tree of its files: (dataset, root)."""
    from google.cloud import bigquery

    flat = _flattened()
    dataset = f"shop_{uuid.uuid4().hex[:8]}"
    client = bigquery_emulator.client()
    client.create_dataset(f"{PROJECT}.{dataset}")
    for name, schema in flat.SCHEMAS.items():
        table = bigquery.Table(f"{PROJECT}.{dataset}.{name}", schema=[bigquery.SchemaField.from_api_repr(f)
                                                                      for f in schema["fields"]])  # fmt: skip
        partitioning = flat.PARTITIONING.get(name, {}).get("timePartitioning")
        if partitioning:
            # Set where BigQuery keeps it (the table) and where bqemulator does (timePartitioning, deprecated).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PendingDeprecationWarning)
                table.time_partitioning = bigquery.TimePartitioning(
                    type_=partitioning["type"], field=partitioning["field"], require_partition_filter=True
                )
            table.require_partition_filter = True
        client.create_table(table)
    root = tmp_path / "flat-output"
    events = {
        "order": {"event_type": "order", "order_id": str(uuid.uuid4()), "order_date": "2025-02-08T13:01:00Z"},
        "inventory": {"event_type": "inventory", "inventory_id": str(uuid.uuid4()),
                      "timestamp": "2025-02-08T13:02:00Z"},
        "user_activity": {"event_type": "user_activity", "user_id": str(uuid.uuid4()),
                          "timestamp": "2025-02-08T13:03:00Z"},
    }  # fmt: skip
    for event_type, event in events.items():
        # Placed by processing time (the window the file was written in), minutes after the events' own time.
        path = root / event_type / "2025/02/08/13/09" / f"{event_type}-130910-0-0.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps([event]))
    (root / "_tmp").mkdir()
    (root / "_tmp" / "leftover.json").write_text("[]")  # a file no template places: a warning, not a failure
    yield dataset, root
    client.delete_dataset(f"{PROJECT}.{dataset}", delete_contents=True)
    client.close()


def test_show_prints_the_built_in_contract_with_its_schema_for_editors(tmp_path):
    done = workbench(tmp_path, "show", "--output-root", "gs://bucket/out", "--dataset", "events")
    assert done.returncode == 0, done.text
    first, _, _ = done.stdout.partition("\n")
    assert first.startswith("# yaml-language-server: $schema=") and Path(first.split("=", 1)[1]).is_file(), first
    document = yaml.safe_load(done.stdout)
    assert document == default_document("gs://bucket/out", "events", "backend-events-dead-letter")
    assert parse_contract(document).gcs.root == "gs://bucket/out"
    schema = workbench(tmp_path, "show", "--schema")
    assert schema.returncode == 0 and json.loads(schema.stdout) == json_schema(), schema.text


def test_init_writes_a_contract_that_checks_clean_once_its_todos_are_resolved(shop, bigquery_emulator, tmp_path):
    dataset, root = shop
    out = tmp_path / "shop.sinks.yaml"
    done = workbench(tmp_path, "init", "--dataset", dataset, "--project", PROJECT, "--gcs-root", str(root),
                     "--out", str(out), bigquery=bigquery_emulator.endpoint)  # fmt: skip
    assert done.returncode == 0, done.text
    text = out.read_text()
    document = yaml.safe_load(text)
    tables = {t["table"]: t for t in document["bigquery"]["tables"]}
    assert set(tables) == {"orders", "inventory", "user_activity"}, tables
    orders = tables["orders"]
    assert orders["partition_column"] == "order_date"
    assert orders["columns"]["shipping_address.city"] == "ship_city"
    assert orders["columns"]["total_amount"] == {"column": "total_amount", "stored_as": "float64"}
    child = orders["children"][0]
    assert (child["table"], child["field"], child["order_by"]) == ("order_items", "items", "line_no")
    assert child["parent_key"] == {"order_id": "order_id", "status": "status", "order_date": "order_date"}
    assert tables["user_activity"]["columns"]["metadata.session_id"] == "session_id"
    assert tables["user_activity"]["columns"]["timestamp"] == "event_time"
    assert document["dead_letters"]["table"]["payload"] == "payload"
    assert document["gcs"]["format"] == "json_array" and document["gcs"]["placed_by"] == "processing_time"
    assert document["gcs"]["paths"]["order"] == "{type}/{YYYY}/{MM}/{DD}/{HH}/{mm}/{type}-{*}.json"
    todos = [line for line in text.splitlines() if "# TODO:" in line]
    assert todos and any("processing time" in t for t in todos), text  # placement cannot be known from the tables
    parse_contract(document)  # it loads as written

    out.write_text("\n".join(line for line in text.splitlines() if "# TODO:" not in line) + "\n")  # resolved
    checked = workbench(tmp_path, "check", str(out), "--project", PROJECT, bigquery=bigquery_emulator.endpoint)
    assert checked.returncode == 0, checked.text
    assert f"table {PROJECT}.{dataset}.orders: 10 columns, partitioned by order_date" in checked.text
    assert "warning: 1 of 4 sampled files match no template" in checked.text, checked.text  # _tmp/leftover.json
    assert "fits the live sinks" in checked.text


def test_check_names_a_broken_column_with_its_fix(shop, bigquery_emulator, tmp_path):
    dataset, root = shop
    contract = yaml.safe_load((ROOT / "tests" / "foreign_pipelines" / "flattened.sinks.yaml").read_text())
    contract["bigquery"]["dataset"], contract["gcs"]["root"] = dataset, str(root)
    path = tmp_path / "flattened.sinks.yaml"
    path.write_text(yaml.safe_dump(contract, sort_keys=False))
    clean = workbench(tmp_path, "check", str(path), "--project", PROJECT, bigquery=bigquery_emulator.endpoint)
    assert clean.returncode == 0, clean.text  # the foreign pipeline's own contract fits its own tables

    contract["bigquery"]["tables"][0]["columns"]["shipping_address.city"] = "ship_cty"
    del contract["bigquery"]["tables"][0]["partition_column"]
    path.write_text(yaml.safe_dump(contract, sort_keys=False))
    broken = workbench(tmp_path, "check", str(path), "--project", PROJECT, bigquery=bigquery_emulator.endpoint)
    assert broken.returncode == 2, broken.text
    assert "orders has no column 'ship_cty'" in broken.text and "write ship_city" in broken.text, broken.text
    assert "requires a partition filter on order_date" in broken.text, broken.text
    assert "add partition_column: order_date" in broken.text, broken.text
    assert "2 problem(s)" in broken.text, broken.text


def test_check_shows_a_contract_error_as_it_is(tmp_path):
    path = tmp_path / "bad.sinks.yaml"
    path.write_text("version: 1\nbigquery: {tables: [{table: t, type: order, columns: {order_idd: x}}]}\n")
    done = workbench(tmp_path, "check", str(path))
    assert done.returncode == 2, done.text
    assert "order has no field 'order_idd'" in done.text and "fix: use one of:" in done.text, done.text


def test_init_and_check_read_a_gs_tree_on_the_gcs_emulator(gcs_emulator, bigquery_emulator, tmp_path):
    """Gzipped objects, one event per object in an `event` field, Hive-style hour folders (whole_event.py's layout),
    in the GCS emulator: init guesses the layout from them, and check reads them back (reconcile.sources, through
    google-cloud-storage made for the emulator's endpoint)."""
    import gzip

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    storage_host = os.environ["STORAGE_EMULATOR_HOST"]
    bucket = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": storage_host}).bucket("workbench-test")  # fmt: skip
    times = {"order": "order_date", "inventory": "timestamp", "user_activity": "timestamp"}
    for event_type, time_field in times.items():
        event = {"event_type": event_type, time_field: "2025-02-08T13:59:59Z"}
        record = {
            "event": event,
            "event_id": str(uuid.uuid4()),
            "message_id": "1",
            "publish_time": "2025-02-08T14:00:01Z",
        }
        blob = bucket.blob(f"raw/{event_type}/dt=2025-02-08/hour=13/{event_type}-{uuid.uuid4().hex[:6]}.json.gz")
        blob.upload_from_string(gzip.compress(json.dumps(record).encode()))
    dataset = f"raw_{uuid.uuid4().hex[:8]}"
    client = bigquery_emulator.client()
    client.create_dataset(f"{PROJECT}.{dataset}")
    out = tmp_path / "raw.sinks.yaml"
    env = {"STORAGE_EMULATOR_HOST": storage_host}
    try:
        done = workbench(tmp_path, "init", "--dataset", dataset, "--project", PROJECT, "--gcs-root",
                         f"{gcs_emulator}/raw", "--out", str(out), bigquery=bigquery_emulator.endpoint,
                         env=env)  # fmt: skip
        assert done.returncode == 0, done.text
        gcs = yaml.safe_load(out.read_text())["gcs"]
        assert (gcs["format"], gcs["gzip"], gcs["record"], gcs["placed_by"]) == ("jsonl", True, "event", "event_time")
        assert gcs["paths"]["inventory"] == "{type}/dt={YYYY}-{MM}-{DD}/hour={HH}/{type}-{*}.json.gz"
        checked = workbench(tmp_path, "check", str(out), bigquery=bigquery_emulator.endpoint, env=env)
        assert checked.returncode == 0, checked.text
        assert "3 files sampled; placed by the templates: inventory 1, order 1, user_activity 1" in checked.text

        document = yaml.safe_load(out.read_text())
        document["gcs"]["gzip"] = False
        out.write_text(yaml.safe_dump(document))
        broken = workbench(tmp_path, "check", str(out), bigquery=bigquery_emulator.endpoint, env=env)
        assert broken.returncode == 2 and "write gzip: true" in broken.text, broken.text
    finally:
        client.delete_dataset(f"{PROJECT}.{dataset}", delete_contents=True)
        client.close()


def test_check_says_when_the_emulator_it_was_pointed_at_is_not_there(tmp_path):
    contract = tmp_path / "c.yaml"
    contract.write_text("version: 1\nbigquery: {dataset: shop, tables: [{table: t, type: inventory, columns: "
                        "{inventory_id: i, product_id: p, warehouse_id: w, quantity_change: q, reason: r, "
                        "timestamp: ts}}]}\n")  # fmt: skip
    done = workbench(tmp_path, "check", str(contract), bigquery="http://127.0.0.1:9")  # nothing listens on port 9
    assert done.returncode == 2, done.text
    assert "no BigQuery emulator answers at http://127.0.0.1:9" in done.text and "workbench up" in done.text
