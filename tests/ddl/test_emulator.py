"""The data model on a real BigQuery emulator process (bqemulator): the DDL applies, rows built by
eventmodel.rows insert, and every view gives the right answer on a small known dataset with duplicates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from ddl_helpers import OPS_DIR, PROJECT
from events import MINUTE, T0, activity, inventory, order, uid
from google.api_core.retry import Retry

from ddl.apply import apply_ddl, render_file
from ddl.model import partition_rules
from eventmodel import reasons
from eventmodel import rows as R
from eventmodel.schema import EVENT_TYPES
from eventmodel.validate import Accepted, validate

pytestmark = pytest.mark.integration

# The emulator answers some bad requests with HTTP 500, which the default policy retries for minutes.
FAST = Retry(initial=0.2, maximum=1.0, deadline=10.0)


def query(client, sql: str) -> list[dict]:
    return [dict(row) for row in client.query(sql, job_retry=None, retry=FAST).result(timeout=60)]


def insert(client, dataset: str, table: str, rows: list[dict]) -> None:
    if rows:
        errors = client.insert_rows_json(f"{PROJECT}.{dataset}.{table}", rows, retry=FAST)
        assert errors == [], errors[:3]


def every_partition(table: str) -> str:
    """A WHERE that keeps every row and still names the partitioning column: BigQuery refuses a read of
    user_activity (require_partition_filter) without one, and so does the suite's strict mode."""
    column = partition_rules().get(table)
    return f" WHERE {column} >= TIMESTAMP '1970-01-01'" if column else ""


_message_ids = iter(range(1, 1_000_000))


def row(accepted: Accepted, event_id: str | None = None, ingest_offset_s: int = 0) -> dict:
    """A row as the pipeline would build it: a fresh Pub/Sub message id, the event_id attribute when given."""
    attributes = {"event_id": event_id, "run_id": "ddl-test"} if event_id else {}
    return R.event_row(
        accepted,
        message_id=f"m{next(_message_ids)}",
        publish_time=accepted.event_time + timedelta(seconds=1),
        attributes=attributes,
        ingest_time=accepted.event_time + timedelta(seconds=2 + ingest_offset_s),
    )


def test_the_ddl_applies_again_without_change(bq_emulator, bq_client, dataset):
    again = apply_ddl(project=PROJECT, dataset=dataset, emulator=bq_emulator.host_port)
    assert len(again.applied) == len(again.statements) and not again.skipped
    tables = {t.table_id for t in bq_client.list_tables(f"{PROJECT}.{dataset}")}
    assert {*R.TABLES.values(), R.DEAD_LETTER_TABLE, *R.HISTORY_TABLES.values()} <= tables
    assert {"orders_current", "order_status_history", "stock_levels", "user_sessions"} <= tables


def test_rows_from_generated_events_insert(bq_client, dataset):
    from generator.stream import EventStream, GeneratorConfig

    stream = EventStream(GeneratorConfig(seed=11, malformed_rate=0.2, duplicate_rate=0.1), run_id="ddl-test")
    by_table: dict[str, list[dict]] = {}
    event_ids: dict[str, set[str]] = {t: set() for t in EVENT_TYPES}
    for n, message in enumerate(stream.take(240)):
        result = validate(message.data)
        if isinstance(result, Accepted):
            built = R.event_row(
                result, message_id=f"g{n}", publish_time=datetime.now(UTC), attributes=message.attributes
            )
            by_table.setdefault(R.table_of(result.event_type), []).append(built)
            event_ids[result.event_type].add(built["event_id"])
        else:
            built = R.dead_letter_row(
                message.data,
                reason=result.reason,
                detail=result.detail,
                stage="validate",
                message_id=f"g{n}",
                publish_time=datetime.now(UTC),
                attributes=message.attributes,
            )
            by_table.setdefault(R.DEAD_LETTER_TABLE, []).append(built)
    assert set(by_table) == {*R.TABLES.values(), R.DEAD_LETTER_TABLE}
    for table, rows in by_table.items():
        insert(bq_client, dataset, table, rows)
    for table, rows in by_table.items():
        [count] = query(bq_client, f"SELECT COUNT(*) AS n FROM `{PROJECT}.{dataset}.{table}`{every_partition(table)}")
        assert count["n"] == len(rows), table
    # Duplicates were sent; the dedup views see each event once.
    [orders] = query(bq_client, f"SELECT COUNT(*) AS n FROM `{PROJECT}.{dataset}.orders_deduped`")
    assert orders["n"] == len(event_ids["order"]) < len(by_table["orders"]) + 1
    [letters] = query(
        bq_client,
        f"SELECT COUNTIF(payload IS NULL) AS missing, COUNT(DISTINCT reason) AS reasons "
        f"FROM `{PROJECT}.{dataset}.dead_letters`",
    )
    assert letters["missing"] == 0 and letters["reasons"] > 3


def test_an_order_after_four_status_events(bq_client, dataset):
    oid = uid("order-1")
    pending, processing, shipped, delivered = (
        order(oid, status, T0 + i * 30 * MINUTE)
        for i, status in enumerate(("pending", "processing", "shipped", "delivered"))
    )
    rows = [
        row(pending, "e-pending"),
        row(processing, "e-processing"),
        row(processing, "e-processing", ingest_offset_s=60),  # a Pub/Sub redelivery: same event_id
        row(shipped, "e-shipped"),
        row(shipped, "e-shipped-retry"),  # a producer retry that got a new event_id
        row(delivered, "e-delivered"),
        row(order(uid("order-2"), "pending", T0), "e-other"),
    ]
    insert(bq_client, dataset, "orders", rows)

    current = query(bq_client, f"SELECT * FROM `{PROJECT}.{dataset}.orders_current` WHERE order_id = '{oid}'")
    assert len(current) == 1
    assert current[0]["status"] == "delivered"
    assert current[0]["status_since"] == T0 + 90 * MINUTE
    assert current[0]["placed_at"] == T0
    assert current[0]["status_events"] == 5  # the redelivery is gone; the retry had its own event_id
    assert current[0]["total_amount"] == Decimal("190.08")  # exact (the emulator shows it with scale 3)

    history = query(
        bq_client,
        f"SELECT status, valid_from, valid_to, is_current FROM `{PROJECT}.{dataset}.order_status_history` "
        f"WHERE order_id = '{oid}' ORDER BY valid_from",
    )
    assert [(h["status"], h["valid_from"], h["valid_to"], h["is_current"]) for h in history] == [
        ("pending", T0, T0 + 30 * MINUTE, False),
        ("processing", T0 + 30 * MINUTE, T0 + 60 * MINUTE, False),
        ("shipped", T0 + 60 * MINUTE, T0 + 90 * MINUTE, False),
        ("delivered", T0 + 90 * MINUTE, None, True),
    ]


def test_stock_after_restock_sale_return_damage(bq_client, dataset):
    moves = [
        inventory("lamp", "berlin", 50, "restock", T0, "m1"),
        inventory("lamp", "berlin", -3, "sale", T0 + MINUTE, "m2"),
        inventory("lamp", "berlin", 1, "return", T0 + 2 * MINUTE, "m3"),
        inventory("lamp", "berlin", -2, "damage", T0 + 3 * MINUTE, "m4"),
        inventory("lamp", "paris", 7, "restock", T0, "m5"),
    ]
    rows = [row(m, f"inv-{i}") for i, m in enumerate(moves)]
    rows.append(row(moves[1], "inv-1", ingest_offset_s=30))  # the sale delivered twice
    insert(bq_client, dataset, "inventory", rows)
    levels = query(
        bq_client,
        f"SELECT * FROM `{PROJECT}.{dataset}.stock_levels` WHERE product_id = '{uid('lamp')}'",
    )
    by_warehouse = {level["warehouse_id"]: level for level in levels}
    berlin = by_warehouse[uid("berlin")]
    assert (berlin["quantity_on_hand"], berlin["units_in"], berlin["units_out"], berlin["movements"]) == (46, 51, 5, 4)
    assert berlin["last_movement_at"] == T0 + 3 * MINUTE
    assert by_warehouse[uid("paris")]["quantity_on_hand"] == 7


def test_a_session_of_six_activities(bq_client, dataset):
    # user_sessions covers the last 30 days, so this session happened an hour ago.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    kinds = ("login", "view_product", "view_product", "add_to_cart", "remove_from_cart", "logout")
    events = [activity("session-1", kind, start + i * MINUTE) for i, kind in enumerate(kinds)]
    rows = [row(e, f"act-{i}") for i, e in enumerate(events)]
    rows.append(row(events[3], "act-3", ingest_offset_s=5))  # the add_to_cart delivered twice
    rows.append(row(activity("session-2", "login", start, platform="web"), "act-other"))
    insert(bq_client, dataset, "user_activity", rows)

    [session] = query(
        bq_client, f"SELECT * FROM `{PROJECT}.{dataset}.user_sessions` WHERE session_id = '{uid('session-1')}'"
    )
    assert session["session_start"] == start
    assert session["session_end"] == start + 5 * MINUTE
    assert session["duration_seconds"] == 300
    assert (session["activities"], session["product_views"], session["cart_adds"], session["cart_removes"]) == (
        6,
        2,
        1,
        1,
    )
    assert session["platform"] == "mobile" and session["user_id"] == uid("user")

    day = start.date().isoformat()
    ranged = query(
        bq_client,
        f"SELECT session_id, platform FROM `{PROJECT}.{dataset}.user_sessions_between`(DATE '{day}', DATE '{day}') "
        "ORDER BY platform",
    )
    assert [(s["session_id"], s["platform"]) for s in ranged] == [
        (uid("session-1"), "mobile"),
        (uid("session-2"), "web"),
    ]
    before = (start - timedelta(days=3)).date().isoformat()
    assert (
        query(bq_client, f"SELECT * FROM `{PROJECT}.{dataset}.user_sessions_between`(DATE '{before}', DATE '{before}')")
        == []
    )


def _history(accepted: Accepted) -> dict:
    """A landing-table row: the event's own columns only, as LOAD DATA would put them from the S3 JSON."""
    built = R.event_row(accepted, message_id="unused", publish_time=None)
    return {k: v for k, v in built.items() if k not in R.METADATA_COLUMNS}


def test_history_backfill_lands_once_beside_streamed_events(bq_client, dataset):
    streamed = order(uid("order-h1"), "pending", T0)
    old = order(uid("order-h2"), "delivered", T0 - timedelta(days=400))
    insert(bq_client, dataset, "orders", [row(streamed, "e-streamed")])
    insert(bq_client, dataset, "history_orders", [_history(streamed), _history(old), _history(old)])
    moved = inventory("lamp", "berlin", 5, "restock", T0 - timedelta(days=30), "hist-move")
    insert(bq_client, dataset, "history_inventory", [_history(moved)])
    script = render_file(OPS_DIR / "history_merge.sql", project=PROJECT, dataset=dataset)

    for _ in range(2):  # a rerun changes nothing
        query(bq_client, script)
        insert(bq_client, dataset, "history_orders", [_history(old)])  # the same history loaded again
        query(bq_client, script)
        rows = query(
            bq_client,
            f"SELECT order_id, event_id, message_id, run_id FROM `{PROJECT}.{dataset}.orders` ORDER BY order_date",
        )
        assert [r["order_id"] for r in rows] == [uid("order-h2"), uid("order-h1")]
        backfilled = rows[0]
        assert re.fullmatch("[0-9a-f]{64}", backfilled["event_id"]) and backfilled["message_id"] is None
        assert backfilled["run_id"].startswith("s3-backfill-")
        assert rows[1]["event_id"] == "e-streamed"
        [stock] = query(bq_client, f"SELECT quantity_on_hand FROM `{PROJECT}.{dataset}.stock_levels`")
        assert stock["quantity_on_hand"] == 5
    for table in R.HISTORY_TABLES.values():
        [left] = query(bq_client, f"SELECT COUNT(*) AS n FROM `{PROJECT}.{dataset}.{table}`")
        assert left["n"] == 0, table


def test_time_travel_and_snapshots(bq_client, dataset):
    """FOR SYSTEM_TIME AS OF and a snapshot/clone, as ddl/ops/time_travel.sql uses them (simple forms the
    emulator runs; the scheduled IF NOT EXISTS ... OPTIONS form is BigQuery-only)."""
    import time

    insert(bq_client, dataset, "orders", [row(order(uid("tt-1"), "pending", T0), "tt-1")])
    time.sleep(1.1)  # the emulator's clock resolution for its write snapshots
    before = datetime.now(UTC)
    time.sleep(1.1)
    insert(bq_client, dataset, "orders", [row(order(uid("tt-2"), "pending", T0), "tt-2")])
    table = f"`{PROJECT}.{dataset}.orders`"
    [then] = query(
        bq_client, f"SELECT COUNT(*) AS n FROM {table} FOR SYSTEM_TIME AS OF TIMESTAMP '{before.isoformat()}'"
    )
    [now] = query(bq_client, f"SELECT COUNT(*) AS n FROM {table}")
    assert (then["n"], now["n"]) == (1, 2)
    query(bq_client, f"CREATE SNAPSHOT TABLE `{PROJECT}.{dataset}_snapshots.orders_today` CLONE {table}")
    insert(bq_client, dataset, "orders", [row(order(uid("tt-3"), "pending", T0), "tt-3")])
    [kept] = query(bq_client, f"SELECT COUNT(*) AS n FROM `{PROJECT}.{dataset}_snapshots.orders_today`")
    assert kept["n"] == 2  # the snapshot does not see later writes


def test_history_rows_with_nulls_become_dead_letters_once(bq_client, dataset):
    """A NULL in a required field neither fails the MERGE nor lands in a live table: the row becomes a dead
    letter (NULL_FIELD), and loading and merging the same history again adds nothing anywhere."""
    good_order = _history(order(uid("order-n1"), "pending", T0))
    no_customer = {**_history(order(uid("order-n2"), "pending", T0)), "customer_id": None}  # a non-key field
    no_status = {**_history(order(uid("order-n3"), "pending", T0)), "status": None}  # part of the natural key
    good_visit = _history(activity("session-n1", "login", T0))
    no_session = _history(activity("session-n2", "login", T0 + MINUTE))
    no_session["metadata"] = {**no_session["metadata"], "session_id": None}  # a key inside a STRUCT
    no_product = {**_history(inventory("lamp", "berlin", 5, "restock", T0, "n-move")), "product_id": None}
    script = render_file(OPS_DIR / "history_merge.sql", project=PROJECT, dataset=dataset)

    def count(table: str) -> int:
        sql = f"SELECT COUNT(*) AS n FROM `{PROJECT}.{dataset}.{table}`{every_partition(table)}"
        return query(bq_client, sql)[0]["n"]

    def counts() -> dict[str, int]:
        return {table: count(table) for table in (*R.TABLES.values(), R.DEAD_LETTER_TABLE)}

    for _ in range(2):  # the second round loads the same history again
        insert(bq_client, dataset, "history_orders", [good_order, no_customer, no_status])
        insert(bq_client, dataset, "history_user_activity", [good_visit, no_session])
        insert(bq_client, dataset, "history_inventory", [no_product])
        query(bq_client, script)
        assert counts() == {"orders": 1, "inventory": 0, "user_activity": 1, "dead_letters": 4}
        query(bq_client, script)  # a rerun with the landing tables already emptied
        assert counts() == {"orders": 1, "inventory": 0, "user_activity": 1, "dead_letters": 4}

    letters = query(
        bq_client,
        f"SELECT reason, stage, event_type, detail, payload, run_id FROM `{PROJECT}.{dataset}.dead_letters` "
        "ORDER BY event_type, detail",
    )
    assert {(d["reason"], d["stage"]) for d in letters} == {(reasons.NULL_FIELD, "backfill")}
    assert [(d["event_type"], d["detail"].split(": ", 1)[1]) for d in letters] == [
        ("inventory", "product_id"),
        ("order", "customer_id"),
        ("order", "status"),
        ("user_activity", "metadata.session_id"),
    ]
    payload = orjson.loads(letters[1]["payload"])
    assert payload["order_id"] == uid("order-n2") and payload["customer_id"] is None  # the landed row, as JSON
    assert all(d["run_id"].startswith("s3-backfill-") for d in letters)
