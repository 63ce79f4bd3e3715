"""reconcile.contract_check: a sink contract against already-fetched table schemas and a sample of the files, with
no emulator: each problem names its place in the file and the fix."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
import yaml

from ddl.model import parse_model
from eventmodel.schema import field_paths
from reconcile.contract import Column, Value, default_contract, load_contract, parse_contract
from reconcile.contract_check import (
    BqColumn,
    BqTable,
    bigquery_problems,
    column_problems,
    format_problems,
    partition_problems,
    path_problems,
    place_sample,
    table_info,
    tables_named,
)

ROOT = Path(__file__).resolve().parents[2]
FLATTENED = ROOT / "tests" / "foreign_pipelines" / "flattened.sinks.yaml"
S = BqColumn


def _ddl_column(column) -> BqColumn:
    text = column.type
    repeated = text.startswith("ARRAY<")
    kind = "STRUCT" if column.fields else re.sub(r"<.*", "", text)
    return BqColumn(column.name, kind, repeated, tuple(_ddl_column(c) for c in column.fields))


def ddl_tables() -> dict[str, BqTable]:
    """This project's own tables as ddl/ declares them (bqemulator keeps no partitioning column of a DDL table)."""
    return {
        name: BqTable(name, tuple(_ddl_column(c) for c in t.columns), t.partition_column,
                      t.options.get("require_partition_filter") == "TRUE", False, bool(t.partition_column))
        for name, t in parse_model().items() if t.kind == "table" and t.columns
    }  # fmt: skip


def flattened_tables() -> dict[str, BqTable]:
    """The tables tests/foreign_pipelines/flattened.py creates, as table_info reads them from google's Table."""
    from google.cloud import bigquery

    text = (ROOT / "tests" / "foreign_pipelines" / "flattened.py").read_text()
    schemas = {}
    for name, body in re.findall(r'"(\w+)": _schema\(\s*(.*?)\)', text, re.DOTALL):
        fields = re.findall(r'"(\w+):(\w+)"', body)
        schemas[name] = [bigquery.SchemaField(n, t) for n, t in fields]
    found = {}
    for name, schema in schemas.items():
        table = bigquery.Table(f"p.shop.{name}", schema=schema)
        if name == "orders":
            table.time_partitioning = bigquery.TimePartitioning(field="order_date")
        found[name] = table_info(table)
    return found


def test_table_info_reads_standard_types_nested_members_and_partitioning():
    from google.cloud import bigquery

    table = bigquery.Table("p.d.t", schema=[
        bigquery.SchemaField("price", "FLOAT"), bigquery.SchemaField("n", "INTEGER"),
        bigquery.SchemaField("items", "RECORD", mode="REPEATED", fields=[bigquery.SchemaField("q", "INTEGER")]),
    ])  # fmt: skip
    table.time_partitioning = bigquery.TimePartitioning(field="ts")
    table.require_partition_filter = True
    info = table_info(table)
    assert [c.spelled for c in info.columns] == ["FLOAT64", "INT64", "ARRAY<STRUCT<q>>"]
    assert info.columns[2].fields == (BqColumn("q", "INT64"),)
    assert (info.partition_field, info.require_partition_filter, info.time_partitioned) == ("ts", True, True)


def test_the_built_in_contract_fits_this_projects_own_tables():
    contract = default_contract()
    assert bigquery_problems(contract, ddl_tables(), "events") == []


def test_the_flattened_pipelines_contract_fits_its_tables():
    contract = load_contract(FLATTENED)
    tables = flattened_tables()
    assert set(tables_named(contract)) <= set(tables)
    assert bigquery_problems(contract, tables, "shop") == []


ORDER = field_paths("order")


@pytest.mark.parametrize(
    ("path", "column", "stored_as", "fix"),
    [
        ("total_amount", S("total_amount", "FLOAT64"), None, "stored_as: float64}"),
        ("total_amount", S("total_amount", "STRING"), None, "stored_as: string}"),
        ("total_amount", S("total_amount", "NUMERIC"), "float64", "write stored_as: numeric (or leave stored_as out)"),
        ("order_date", S("order_date", "STRING"), None, "{column: order_date, stored_as: string}"),
        ("order_date", S("order_date", "DATE"), "datetime", "write stored_as: date"),
        ("order_date", S("order_date", "DATETIME"), None, "stored_as: datetime}"),
        ("order_date", S("order_date", "INT64"), None, "map order_date to a column of one of those types"),
        ("order_id", S("order_id", "INT64"), None, "map order_id to a column of one of those types"),
        ("items", S("items", "STRUCT", False, (S("product_id", "STRING"),)), None, "map items to a column"),
        ("items", S("items", "STRUCT", True, (S("product_id", "STRING"),)), None, "rename the STRUCT members"),
        ("shipping_address", S("shipping_address", "JSON"), None, "map shipping_address to a column"),
    ],
)
def test_a_column_that_does_not_read_back_as_its_field_is_a_problem_with_the_fix(path, column, stored_as, fix):
    table = BqTable("orders", (column,))
    problems = column_problems(f"bigquery/tables/0 (orders)/columns/{path}", ORDER[path], table,
                               Column(column.name, Value(stored_as)))  # fmt: skip
    assert len(problems) == 1 and fix in problems[0].fix, problems
    assert problems[0].where.endswith(f"/columns/{path}")


@pytest.mark.parametrize(
    ("path", "column", "stored_as"),
    [
        ("total_amount", S("t", "FLOAT64"), "float64"),
        ("total_amount", S("t", "NUMERIC"), None),
        ("total_amount", S("t", "NUMERIC"), "numeric"),
        ("total_amount", S("t", "BIGNUMERIC"), "numeric"),
        ("total_amount", S("t", "INT64"), "int64"),
        ("order_date", S("t", "TIMESTAMP"), None),
        ("order_date", S("t", "STRING"), "string"),
        ("order_date", S("t", "DATE"), "date"),
        ("items.quantity", S("t", "INT64"), None),
        ("items.quantity", S("t", "FLOAT64"), "float64"),
        ("status", S("t", "STRING"), None),
        ("shipping_address", S("t", "STRUCT", False, (S("street", "STRING"), S("city", "STRING"),
                                                     S("country", "STRING"))), "struct"),
        ("items", S("t", "STRUCT", True, tuple(S(n, "STRING") for n in ("product_id", "product_name", "quantity",
                                                                         "price"))), None),
    ],
)  # fmt: skip
def test_a_column_that_reads_back_as_its_field_is_no_problem(path, column, stored_as):
    table = BqTable("orders", (column,))
    assert column_problems(f"x/{path}", ORDER[path], table, Column("t", Value(stored_as))) == []


def test_a_missing_column_or_table_suggests_the_closest_name():
    contract = load_contract(FLATTENED)
    tables = flattened_tables()
    document = yaml.safe_load(FLATTENED.read_text())
    document["bigquery"]["tables"][0]["columns"]["shipping_address.city"] = "ship_cty"
    document["bigquery"]["tables"][2]["table"] = "user_activty"
    problems = bigquery_problems(parse_contract(document), tables, "shop")
    assert [(p.where, p.fix) for p in problems] == [
        ("bigquery/tables/0 (orders)/columns/shipping_address.city", "write ship_city"),
        ("bigquery/tables/2 (user_activty)", "write table: user_activity"),
    ]
    assert "orders has no column 'ship_cty' (field shipping_address.city, a string)" in problems[0].message
    assert (
        bigquery_problems(contract, {**tables, "order_items": None}, "shop")[0].message == "no table shop.order_items"
    )


def test_partitioning():
    orders = BqTable("orders", (S("order_date", "TIMESTAMP"), S("day", "DATE"), S("n", "INT64")), "order_date",
                     True, False, True)  # fmt: skip
    refused = partition_problems("w", orders, None, None)
    assert [(p.fix, p.warning) for p in refused] == [("add partition_column: order_date", False)]
    assert "BigQuery refuses the read" in refused[0].message
    assert partition_problems("w", orders, "order_date", None) == []
    assert partition_problems("w", orders, "day", None)[0].fix == "write partition_column: order_date"
    unrequired = BqTable("t", orders.columns, "order_date", False, False, True)
    assert [(p.fix, p.warning) for p in partition_problems("w", unrequired, None, None)] == [
        ("add partition_column: order_date", True)
    ]
    unpartitioned = BqTable("t", orders.columns)
    assert partition_problems("w", unpartitioned, None, None) == []
    assert partition_problems("w", unpartitioned, "order_date", None)[0].warning
    by_day = BqTable("t", orders.columns, "day", False, False, True)
    assert partition_problems("w", by_day, "day", "date") == []  # mapped as a date: DATE literals
    assert "bounds it with TIMESTAMP values" in partition_problems("w", by_day, "day", None)[0].message
    by_int = BqTable("t", orders.columns, "n", False, False, True)
    assert "partition the table by a TIMESTAMP" in partition_problems("w", by_int, "n", None)[0].fix
    # bqemulator keeps no partitioning column of a DDL table; ingestion time has none either.
    columnless = BqTable("t", orders.columns, None, True, False, True)
    assert partition_problems("w", columnless, "order_date", None)[0].warning
    assert not partition_problems("w", columnless, None, None)[0].warning


def test_event_column_metadata_children_and_dead_letters():
    document = yaml.safe_load(FLATTENED.read_text())
    orders = document["bigquery"]["tables"][0]
    orders["metadata"]["landed_time"] = "ship_city"  # a STRING
    orders["children"][0]["order_by"] = "line"
    orders["children"][0]["parent_key"]["order_date"] = "status"  # STRING against the parent's TIMESTAMP
    document["bigquery"]["tables"][1].update(event_column="quantity_change", omit=["event_type"])
    document["dead_letters"]["table"]["payload"] = "received_at"
    document["dead_letters"]["table"]["reason"] = "why"
    problems = {p.where: p for p in bigquery_problems(parse_contract(document), flattened_tables(), "shop")}
    assert set(problems) == {
        "bigquery/tables/0 (orders)/metadata/landed_time",
        "bigquery/tables/0 (orders)/children/0 (order_items)/order_by",
        "bigquery/tables/0 (orders)/children/0 (order_items)/parent_key/order_date",
        "bigquery/tables/1 (inventory)/event_column",
        "dead_letters/table (dead_letters)/payload",
        "dead_letters/table (dead_letters)/reason",
    }, problems
    assert "reads landed_time as TIMESTAMP" in problems["bigquery/tables/0 (orders)/metadata/landed_time"].message
    assert "read from JSON or STRING" in problems["bigquery/tables/1 (inventory)/event_column"].message
    assert "read from STRING or BYTES" in problems["dead_letters/table (dead_letters)/payload"].message
    assert "same type in both tables" in problems[
        "bigquery/tables/0 (orders)/children/0 (order_items)/parent_key/order_date"].fix  # fmt: skip


# ------------------------------------------------------------------------------------------------------ GCS

FLAT_FILE = "order/2025/02/08/13/09/order-130910-0-0.json"


def test_path_templates_against_a_sample_of_the_tree():
    gcs = load_contract(FLATTENED).gcs
    placed = place_sample(gcs, [FLAT_FILE, "inventory/2025/02/08/13/09/inventory-1.json", "_SUCCESS"])
    assert placed.placed == {"order": [FLAT_FILE], "inventory": ["inventory/2025/02/08/13/09/inventory-1.json"]}
    [warning] = path_problems(gcs, placed)
    assert (
        warning.warning
        and "1 of 3 sampled files match no template" in warning.message
        and "_SUCCESS" in warning.message
    )

    builtin = default_contract().gcs
    [none] = path_problems(builtin, place_sample(builtin, [FLAT_FILE]))
    assert not none.warning and "none of the 1 sampled files" in none.message
    assert "'{type}/{YYYY}/{MM}/{DD}/{HH}/{mm}/{type}-{*}.json'" in none.fix
    [empty] = path_problems(builtin, place_sample(builtin, []))
    assert empty.warning and "no files under ./output" in empty.message


def test_buggy_second_names_and_the_built_in_names_are_placed_by_their_own_templates():
    buggy = load_contract(ROOT / "tests" / "foreign_pipelines" / "buggy.sinks.yaml").gcs
    ours = default_contract().gcs
    assert place_sample(buggy, ["order/2025/02/08/13/09/order_20250208130959.json"]).placed
    assert place_sample(ours, ["order/2025/02/08/13/09/order_2025020813090001.json"]).placed
    assert not place_sample(ours, ["order/2025/02/08/13/09/order_20250208130959.json"]).placed


EVENT = {"event_type": "order", "order_id": "o"}


@pytest.mark.parametrize(
    ("body", "fixes"),
    [
        (json.dumps([EVENT]).encode(), []),
        ((json.dumps(EVENT) + "\n" + json.dumps(EVENT)).encode(), ["write format: jsonl"]),
        (gzip.compress(json.dumps([EVENT]).encode()), ["write gzip: true"]),
        (json.dumps([{"event": EVENT}]).encode(), ["write record: event"]),
        (b"not json at all", ["check gcs/root and the path templates: they should place event files only"]),
    ],
    ids=["fits", "json-lines", "gzipped", "event-in-a-field", "not-json"],
)
def test_a_sampled_file_fits_the_format_gzip_and_record(body, fixes):
    gcs = load_contract(FLATTENED).gcs  # json_array, not gzipped, the record is the event
    assert [p.fix for p in format_problems(gcs, FLAT_FILE, body)] == fixes


def test_a_one_line_object_fits_json_lines_and_json_object_and_metadata_is_looked_for():
    builtin = default_contract().gcs  # jsonl, record: event, metadata event_id ... attributes.run_id
    line = {"event": EVENT, "event_id": "e", "message_id": "m", "publish_time": "t", "attributes": {"run_id": "r"}}
    assert format_problems(builtin, "f", json.dumps(line).encode()) == []
    del line["attributes"]
    [missing] = format_problems(builtin, "f", json.dumps(line).encode())
    assert missing.where == "gcs/metadata/run_id" and "have no attributes.run_id" in missing.message
