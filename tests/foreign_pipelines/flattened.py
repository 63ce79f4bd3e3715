"""A shop-events pipeline with a flattened (star) BigQuery design, written the way a user writes one.

It knows nothing of the Event Workbench: it reads the subscription, validates each message itself, and writes
- BigQuery (STREAMING_INSERTS, tables created with CREATE_IF_NEEDED):
  `orders` (shipping address flattened into ship_* columns), `order_items` (one row per line, keyed by
  order_id + status + order_date, which together name the order's status event, with a 1-based line_no),
  `inventory`, `user_activity` (metadata flattened into session_id and platform), and `dead_letters`
  (payload STRING, reason, error). No event id anywhere: an event is known by its natural key, and an event
  seen again within 10 minutes under the same key is written once (DeduplicatePerKey). The 10 minutes are Beam's
  event time, which for a Pub/Sub read without timestamp_attribute is the publish time, not the event's own.
- files: one JSON array per event type and 10-second window of *processing* time, under
  OUTPUT/<type>/YYYY/MM/DD/HH/mm/<type>-<HHmmss>-<pane>-<shard>.json (the folder is when the window was
  processed, not when the event happened).

Run it (the dataset must exist; `bq mk --dataset PROJECT:shop`):

    python flattened.py --streaming --runner DirectRunner --project PROJECT \
        --subscription projects/PROJECT/subscriptions/backend-events-topic-sub \
        --dataset shop --output ./flat-output
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import logging
import math
import os
import re
import tempfile
import time
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam import window
from apache_beam.io import fileio
from apache_beam.io.gcp.bigquery import BigQueryDisposition, RetryStrategy, WriteToBigQuery
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions
from apache_beam.options.value_provider import StaticValueProvider
from apache_beam.transforms.deduplicate import DeduplicatePerKey
from apache_beam.utils.timestamp import Duration

DEAD = "dead"
DEDUP_SECONDS = 600  # how long a natural key is remembered (publish time); re-sends come within minutes
MAX_BYTES = 1_000_000
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")

STATUSES = {"pending", "processing", "shipped", "delivered"}
REASONS = {"restock": 1, "return": 1, "sale": -1, "damage": -1}
ACTIVITIES = {"login", "logout", "view_product", "add_to_cart", "remove_from_cart"}
PLATFORMS = {"web", "mobile", "tablet"}

ORDER_KEYS = {"event_type", "order_id", "customer_id", "order_date", "status", "items", "shipping_address",
              "total_amount"}  # fmt: skip
ITEM_KEYS = {"product_id", "product_name", "quantity", "price"}
ADDRESS_KEYS = {"street", "city", "country"}
INVENTORY_KEYS = {"event_type", "inventory_id", "product_id", "warehouse_id", "quantity_change", "reason",
                  "timestamp"}  # fmt: skip
ACTIVITY_KEYS = {"event_type", "user_id", "activity_type", "ip_address", "user_agent", "timestamp", "metadata"}
METADATA_KEYS = {"session_id", "platform"}


class BadEvent(Exception):
    def __init__(self, reason: str, error: str):
        super().__init__(error)
        self.reason = reason


# ---------------------------------------------------------------- validation (pure functions)


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not JSON")  # Python's json would accept NaN and Infinity


def decode(payload: bytes) -> dict:
    if not payload or not payload.strip():
        raise BadEvent("empty", "empty message")
    if len(payload) > MAX_BYTES:
        raise BadEvent("too_large", f"{len(payload)} bytes")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadEvent("not_utf8", str(e)) from None
    try:
        event = json.loads(text, parse_constant=_no_constants)
    except ValueError as e:
        raise BadEvent("bad_json", str(e)) from None
    if not isinstance(event, dict):
        raise BadEvent("not_an_object", type(event).__name__)
    return event


def _keys(obj: object, expected: set, where: str) -> dict:
    if not isinstance(obj, dict):
        raise BadEvent("bad_type", f"{where} is not an object")
    missing = expected - obj.keys()
    if missing:
        raise BadEvent("missing_field", f"{where}: missing {sorted(missing)}")
    extra = obj.keys() - expected
    if extra:
        raise BadEvent("unknown_field", f"{where}: unknown {sorted(extra)}")
    nulls = [k for k, v in obj.items() if v is None]
    if nulls:
        raise BadEvent("null_field", f"{where}: null {sorted(nulls)}")
    return obj


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise BadEvent("bad_type", f"{name} is not a string")
    if not value.strip():
        raise BadEvent("blank", f"{name} is blank")
    return value


def _uuid(value: object, name: str) -> str:
    if not isinstance(value, str) or not UUID_RE.match(value):
        raise BadEvent("bad_id", f"{name} is not a uuid: {value!r}"[:200])
    return value


def _time(value: object, name: str) -> datetime:
    if not isinstance(value, str) or not TS_RE.match(value):
        raise BadEvent("bad_timestamp", f"{name}: {value!r}"[:200])
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise BadEvent("bad_timestamp", f"{name}: {e}") from None


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadEvent("bad_type", f"{name} is not an integer: {value!r}"[:200])
    return value


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadEvent("bad_type", f"{name} is not a number: {value!r}"[:200])
    if value < 0:
        raise BadEvent("negative", f"{name} < 0")
    return value


def _choice(value: object, allowed: set | dict, name: str) -> str:
    if value not in allowed:
        raise BadEvent("bad_value", f"{name}: {value!r}"[:200])
    return value


def check_order(e: dict) -> None:
    _keys(e, ORDER_KEYS, "order")
    _uuid(e["order_id"], "order_id")
    _uuid(e["customer_id"], "customer_id")
    _time(e["order_date"], "order_date")
    _choice(e["status"], STATUSES, "status")
    address = _keys(e["shipping_address"], ADDRESS_KEYS, "shipping_address")
    for part in ADDRESS_KEYS:
        _text(address[part], f"shipping_address.{part}")
    if not isinstance(e["items"], list):
        raise BadEvent("bad_type", "items is not a list")
    if not e["items"]:
        raise BadEvent("no_items", "order without items")
    total = 0.0
    for n, item in enumerate(e["items"]):
        _keys(item, ITEM_KEYS, f"items[{n}]")
        _uuid(item["product_id"], "product_id")
        _text(item["product_name"], "product_name")
        quantity, price = _int(item["quantity"], "quantity"), _number(item["price"], "price")
        if quantity < 1:
            raise BadEvent("bad_value", f"items[{n}].quantity {quantity}")
        total += quantity * price
    if abs(_number(e["total_amount"], "total_amount") - round(total, 2)) > 0.005:
        raise BadEvent("total_mismatch", f"total_amount {e['total_amount']} != {round(total, 2)}")


def check_inventory(e: dict) -> None:
    _keys(e, INVENTORY_KEYS, "inventory")
    for name in ("inventory_id", "product_id", "warehouse_id"):
        _uuid(e[name], name)
    _time(e["timestamp"], "timestamp")
    reason = _choice(e["reason"], REASONS, "reason")
    change = _int(e["quantity_change"], "quantity_change")
    if not -100 <= change <= 100:
        raise BadEvent("bad_value", f"quantity_change {change} out of range")
    if change * REASONS[reason] <= 0:
        raise BadEvent("bad_value", f"quantity_change {change} has the wrong sign for {reason}")


def check_user_activity(e: dict) -> None:
    _keys(e, ACTIVITY_KEYS, "user_activity")
    _uuid(e["user_id"], "user_id")
    _choice(e["activity_type"], ACTIVITIES, "activity_type")
    _text(e["user_agent"], "user_agent")
    _time(e["timestamp"], "timestamp")
    try:
        ipaddress.ip_address(_text(e["ip_address"], "ip_address"))
    except ValueError:
        raise BadEvent("bad_ip", f"ip_address {e['ip_address']!r}"[:200]) from None
    metadata = _keys(e["metadata"], METADATA_KEYS, "metadata")
    _uuid(metadata["session_id"], "metadata.session_id")
    _choice(metadata["platform"], PLATFORMS, "metadata.platform")


# What identifies an event in this shop's tables: a re-sent event has the same key and is written once.
NATURAL_KEY = {
    "order": lambda e: (e["order_id"], e["status"], e["order_date"]),
    "inventory": lambda e: (e["inventory_id"],),
    "user_activity": lambda e: (e["user_id"], e["metadata"]["session_id"], e["activity_type"], e["timestamp"]),
}
CHECKS = {"order": check_order, "inventory": check_inventory, "user_activity": check_user_activity}


def keyed(event: dict) -> tuple[tuple, dict]:
    return (event["event_type"], *NATURAL_KEY[event["event_type"]](event)), event


def validate(payload: bytes) -> dict:
    """The event if it is a good one, else BadEvent(reason, error)."""
    event = decode(payload)
    kind = event.get("event_type")
    if not isinstance(kind, str):
        raise BadEvent("no_event_type", "event_type missing or not a string")
    if kind not in CHECKS:
        raise BadEvent("unknown_event_type", kind[:100])
    CHECKS[kind](event)
    return event


# ---------------------------------------------------------------- rows (pure functions)


def utc_text(ts: str) -> str:
    """An ISO time as BigQuery TIMESTAMP text in UTC, microseconds kept."""
    return _time(ts, "time").astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def order_row(e: dict) -> dict:
    a = e["shipping_address"]
    return {
        "order_id": e["order_id"],
        "customer_id": e["customer_id"],
        "order_date": utc_text(e["order_date"]),
        "status": e["status"],
        "ship_street": a["street"],
        "ship_city": a["city"],
        "ship_country": a["country"],
        "total_amount": e["total_amount"],
        "item_count": len(e["items"]),
        "processed_at": now_text(),
    }


def item_rows(e: dict) -> list[dict]:
    # An order_id has one event per status: the child row carries the parent's status and order_date too,
    # so that it finds the one event it belongs to.
    return [
        {
            "order_id": e["order_id"],
            "status": e["status"],
            "order_date": utc_text(e["order_date"]),
            "line_no": n,
            "product_id": item["product_id"],
            "product_name": item["product_name"],
            "quantity": item["quantity"],
            "price": item["price"],
        }
        for n, item in enumerate(e["items"], start=1)
    ]


def inventory_row(e: dict) -> dict:
    return {
        "inventory_id": e["inventory_id"],
        "product_id": e["product_id"],
        "warehouse_id": e["warehouse_id"],
        "quantity_change": e["quantity_change"],
        "reason": e["reason"],
        "event_time": utc_text(e["timestamp"]),
        "processed_at": now_text(),
    }


def activity_row(e: dict) -> dict:
    return {
        "user_id": e["user_id"],
        "activity_type": e["activity_type"],
        "ip_address": e["ip_address"],
        "user_agent": e["user_agent"],
        "event_time": utc_text(e["timestamp"]),
        "session_id": e["metadata"]["session_id"],
        "platform": e["metadata"]["platform"],
        "processed_at": now_text(),
    }


def dead_letter_row(payload: bytes, reason: str, error: str) -> dict:
    # A STRING column cannot hold bytes that are not UTF-8 ("STRING values must be well-formed UTF-8":
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/string_functions): those go in base64, and
    # payload_encoding says so.
    try:
        text, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    return {"payload": text, "payload_encoding": encoding, "reason": reason, "error": error[:1000],
            "received_at": now_text()}  # fmt: skip


def _schema(*fields: str) -> dict:
    """'name:TYPE' pairs as a BigQuery schema, every column NULLABLE."""
    return {"fields": [{"name": f.split(":")[0], "type": f.split(":")[1], "mode": "NULLABLE"} for f in fields]}


SCHEMAS = {
    "orders": _schema(
        "order_id:STRING",
        "customer_id:STRING",
        "order_date:TIMESTAMP",
        "status:STRING",
        "ship_street:STRING",
        "ship_city:STRING",
        "ship_country:STRING",
        "total_amount:FLOAT",
        "item_count:INTEGER",
        "processed_at:TIMESTAMP",
    ),
    "order_items": _schema(
        "order_id:STRING",
        "status:STRING",
        "order_date:TIMESTAMP",
        "line_no:INTEGER",
        "product_id:STRING",
        "product_name:STRING",
        "quantity:INTEGER",
        "price:FLOAT",
    ),
    "inventory": _schema(
        "inventory_id:STRING",
        "product_id:STRING",
        "warehouse_id:STRING",
        "quantity_change:INTEGER",
        "reason:STRING",
        "event_time:TIMESTAMP",
        "processed_at:TIMESTAMP",
    ),
    "user_activity": _schema(
        "user_id:STRING",
        "activity_type:STRING",
        "ip_address:STRING",
        "user_agent:STRING",
        "event_time:TIMESTAMP",
        "session_id:STRING",
        "platform:STRING",
        "processed_at:TIMESTAMP",
    ),
    "dead_letters": _schema(
        "payload:STRING", "payload_encoding:STRING", "reason:STRING", "error:STRING", "received_at:TIMESTAMP"
    ),
}
# Orders are queried by day; a partitioned table is what this shop would build (created by Beam with the table).
PARTITIONING = {"orders": {"timePartitioning": {"type": "DAY", "field": "order_date"}}}


# ---------------------------------------------------------------- files


def window_file_name(window_, pane, shard_index, total_shards, compression, destination) -> str:
    """<type>/YYYY/MM/DD/HH/mm/<type>-<HHmmss>-<pane>-<shard>.json from the window's start (processing time)."""
    start = datetime.fromtimestamp(float(window_.start), tz=UTC)
    pane_index = pane.index if pane is not None else 0
    return f"{destination}/{start:%Y/%m/%d/%H/%M}/{destination}-{start:%H%M%S}-{pane_index}-{shard_index or 0}.json"


class JsonArraySink(fileio.FileSink):
    """One JSON array per file."""

    def open(self, fh):
        self._fh, self._first = fh, True
        fh.write(b"[")

    def write(self, record):
        self._fh.write((b"" if self._first else b",\n") + json.dumps(record, separators=(",", ":")).encode())
        self._first = False

    def flush(self):
        self._fh.write(b"]\n")
        self._fh.flush()


def local_naming(root: str):
    """Beam renames temp files into place without creating local folders: make them first."""

    def naming(*args) -> str:
        name = window_file_name(*args)
        if "://" not in root:
            os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        return name

    return naming


# ---------------------------------------------------------------- the pipeline


class ParseEvents(beam.DoFn):
    def process(self, payload: bytes):
        try:
            yield validate(payload)
        except BadEvent as e:
            yield beam.pvalue.TaggedOutput(DEAD, dead_letter_row(payload, e.reason, str(e)))
        except Exception as e:  # a check that blew up is still a bad message, never a stuck pipeline
            yield beam.pvalue.TaggedOutput(DEAD, dead_letter_row(payload, "crash", repr(e)))


def write_table(rows, label: str, table: str, dataset: str, project: str | None):
    return rows | label >> WriteToBigQuery(
        table=f"{project}:{dataset}.{table}" if project else f"{dataset}.{table}",
        schema=SCHEMAS[table],
        additional_bq_parameters=PARTITIONING.get(table, {}),
        create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
        write_disposition=BigQueryDisposition.WRITE_APPEND,
        method=WriteToBigQuery.Method.STREAMING_INSERTS,
        insert_retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
    )


def run(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscription", required=True, help="projects/P/subscriptions/S")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--output", required=True, help="local folder or gs:// prefix for the JSON files")
    parser.add_argument("--window_seconds", type=int, default=10)
    args, beam_args = parser.parse_known_args(argv)
    options = PipelineOptions(beam_args, save_main_session=False)
    options.view_as(StandardOptions).streaming = True
    project = options.view_as(GoogleCloudOptions).project
    temp = options.view_as(GoogleCloudOptions).temp_location or tempfile.mkdtemp(prefix="flattened-")

    with beam.Pipeline(options=options) as p:
        parsed = (
            p
            | "Read" >> beam.io.ReadFromPubSub(subscription=args.subscription, with_attributes=False)
            | "Validate" >> beam.ParDo(ParseEvents()).with_outputs(DEAD, main="events")
        )
        events = (
            parsed.events
            | "KeyByNaturalKey" >> beam.Map(keyed)
            | "Dedup" >> DeduplicatePerKey(event_time_duration=Duration(seconds=DEDUP_SECONDS))
            | "Unkey" >> beam.Values()
        )
        orders = events | "Orders" >> beam.Filter(lambda e: e["event_type"] == "order")
        write_table(orders | "OrderRows" >> beam.Map(order_row), "WriteOrders", "orders", args.dataset, project)
        write_table(orders | "ItemRows" >> beam.FlatMap(item_rows), "WriteItems", "order_items", args.dataset, project)
        inventory = events | "Inventory" >> beam.Filter(lambda e: e["event_type"] == "inventory")
        write_table(inventory | "InvRows" >> beam.Map(inventory_row), "WriteInv", "inventory", args.dataset, project)
        activity = events | "Activity" >> beam.Filter(lambda e: e["event_type"] == "user_activity")
        write_table(activity | "ActRows" >> beam.Map(activity_row), "WriteAct", "user_activity", args.dataset, project)
        write_table(parsed[DEAD], "WriteDeadLetters", "dead_letters", args.dataset, project)

        _ = (
            events
            | "StampProcessingTime" >> beam.Map(lambda e: window.TimestampedValue(e, time.time()))
            | "Window" >> beam.WindowInto(window.FixedWindows(args.window_seconds))
            | "WriteFiles"
            >> fileio.WriteToFiles(
                path=args.output,
                destination=lambda e: e["event_type"],
                sink=lambda dest: JsonArraySink(),
                file_naming=local_naming(args.output),
                temp_directory=StaticValueProvider(str, temp),
                shards=1,
                max_writers_per_bundle=0,
            )
        )


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.WARNING)
    run()
