"""Keep every event whole: a "raw zone" pipeline of shop events, written the way a user writes one.

It knows nothing of the Event Workbench. For each message of the subscription it
- checks the event against a small declarative spec (SPECS below);
- writes a good event to BigQuery with FILE_LOADS (load jobs every --load_seconds): one table per type
  (order_events, inventory_events, user_activity_events), all of one shape: the whole event as JSON text in
  `event_json`, the Pub/Sub metadata (the event_id attribute, message_id, publish_time) and a few extracted
  columns (entity_id, event_time) for filtering;
- writes each good event as one gzipped JSON object per file, Hive-style by the event's own hour:
  OUTPUT/<type>/dt=YYYY-MM-DD/hour=HH/<type>-<message_id>.json.gz, holding
  {"event": {...}, "event_id": ..., "message_id": ..., "publish_time": ..., "attributes": {...}};
- writes each rejected message as one JSON object per file under DEAD_LETTERS/YYYY-MM-DD/<message_id>.json,
  with the original bytes in base64.
At least once: a message delivered (or published) twice is kept twice; nothing is deduplicated.

Run it (FILE_LOADS stages its load files under a gs:// temp location; the dataset must exist):

    python whole_event.py --streaming --runner DirectRunner --project PROJECT \
        --subscription projects/PROJECT/subscriptions/backend-events-topic-sub \
        --dataset raw --output gs://BUCKET/raw --dead_letters gs://BUCKET/rejected \
        --temp_location gs://BUCKET/tmp
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import logging
import re
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.gcp.bigquery import BigQueryDisposition, WriteToBigQuery
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

REJECTED = "rejected"
TABLES = {"order": "order_events", "inventory": "inventory_events", "user_activity": "user_activity_events"}
SCHEMA = {
    "fields": [
        {"name": name, "type": kind, "mode": "NULLABLE"}
        for name, kind in (
            ("event_type", "STRING"),
            ("entity_id", "STRING"),
            ("event_time", "TIMESTAMP"),
            ("event_id", "STRING"),
            ("message_id", "STRING"),
            ("publish_time", "TIMESTAMP"),
            ("event_json", "STRING"),
            ("loaded_at", "TIMESTAMP"),
        )
    ]
}

# ---------------------------------------------------------------- the spec and its checker (pure)

_UUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def is_uuid(v):
    return isinstance(v, str) and _UUID.fullmatch(v) is not None


def is_time(v):
    if not isinstance(v, str) or not _ISO.fullmatch(v):
        return False
    try:
        datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def is_text(v):
    return isinstance(v, str) and v.strip() != ""


def is_int(v):
    return type(v) is int


def is_amount(v):
    return type(v) in (int, float) and v == v and abs(v) != float("inf") and v >= 0


def is_ip(v):
    try:
        ipaddress.ip_address(v)
    except (ValueError, TypeError):
        return False
    return True


def one_of(*values):
    return lambda v: isinstance(v, str) and v in values


def record(spec):
    return lambda v: isinstance(v, dict) and conforms(v, spec)


def list_of(spec):
    return lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(x, dict) and conforms(x, spec) for x in v)


ITEM = {"product_id": is_uuid, "product_name": is_text, "quantity": lambda v: is_int(v) and v >= 1,
        "price": is_amount}  # fmt: skip
SPECS = {
    "order": {
        "event_type": one_of("order"),
        "order_id": is_uuid,
        "customer_id": is_uuid,
        "order_date": is_time,
        "status": one_of("pending", "processing", "shipped", "delivered"),
        "items": list_of(ITEM),
        "shipping_address": record({"street": is_text, "city": is_text, "country": is_text}),
        "total_amount": is_amount,
    },
    "inventory": {
        "event_type": one_of("inventory"),
        "inventory_id": is_uuid,
        "product_id": is_uuid,
        "warehouse_id": is_uuid,
        "quantity_change": lambda v: is_int(v) and -100 <= v <= 100,
        "reason": one_of("restock", "sale", "return", "damage"),
        "timestamp": is_time,
    },
    "user_activity": {
        "event_type": one_of("user_activity"),
        "user_id": is_uuid,
        "activity_type": one_of("login", "logout", "view_product", "add_to_cart", "remove_from_cart"),
        "ip_address": is_ip,
        "user_agent": is_text,
        "timestamp": is_time,
        "metadata": record({"session_id": is_uuid, "platform": one_of("web", "mobile", "tablet")}),
    },
}
# Rules across fields, after the spec: (name, predicate).
RULES = {
    "order": [
        (
            "total",
            lambda e: abs(e["total_amount"] - round(sum(i["quantity"] * i["price"] for i in e["items"]), 2)) <= 0.005,
        ),
    ],
    "inventory": [
        (
            "sign",
            lambda e: e["quantity_change"] > 0 if e["reason"] in ("restock", "return") else e["quantity_change"] < 0,
        ),
    ],
    "user_activity": [],
}
TIME_FIELD = {"order": "order_date", "inventory": "timestamp", "user_activity": "timestamp"}
ENTITY_FIELD = {"order": "order_id", "inventory": "inventory_id", "user_activity": "user_id"}


def conforms(obj: dict, spec: dict) -> bool:
    return obj.keys() == spec.keys() and all(check(obj[name]) for name, check in spec.items())


def _refuse_constant(name):
    raise ValueError(name)


def check(data: bytes) -> tuple[str | None, dict | str]:
    """(event_type, event) for a good event, else (None, why)."""
    if len(data) > 1_000_000:
        return None, "oversize"
    try:
        event = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as e:
        return None, f"unparseable: {e}"[:500]
    if not isinstance(event, dict):
        return None, "not an object"
    kind = event.get("event_type")
    if not isinstance(kind, str) or kind not in SPECS:
        return None, f"event_type {kind!r}"[:200]
    if not conforms(event, SPECS[kind]):
        bad = sorted((event.keys() ^ SPECS[kind].keys()) | {k for k, f in SPECS[kind].items() if k in event
                                                             and not f(event[k])})  # fmt: skip
        return None, f"{kind} fails the spec at {bad}"[:500]
    for name, rule in RULES[kind]:
        if not rule(event):
            return None, f"{kind} breaks rule {name}"
    return kind, event


# ---------------------------------------------------------------- records and paths (pure)


def event_hour(kind: str, event: dict) -> datetime:
    return datetime.fromisoformat(event[TIME_FIELD[kind]].replace("Z", "+00:00")).astimezone(UTC)


def event_path(root: str, kind: str, event: dict, message_id: str) -> str:
    at = event_hour(kind, event)
    return f"{root.rstrip('/')}/{kind}/dt={at:%Y-%m-%d}/hour={at:%H}/{kind}-{message_id}.json.gz"


def publish_text(publish_time) -> str | None:
    if publish_time is None:
        return None
    if hasattr(publish_time, "to_utc_datetime"):  # a Beam Timestamp on some runners, a datetime on others
        publish_time = publish_time.to_utc_datetime(has_tz=True)
    return publish_time.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def file_record(kind: str, event: dict, message) -> dict:
    attributes = dict(message.attributes or {})
    return {"event": event, "event_id": attributes.get("event_id"), "message_id": message.message_id,
            "publish_time": publish_text(message.publish_time), "attributes": attributes}  # fmt: skip


def table_row(kind: str, event: dict, message) -> dict:
    return {
        "event_type": kind,
        "entity_id": event[ENTITY_FIELD[kind]],
        "event_time": event_hour(kind, event).strftime("%Y-%m-%d %H:%M:%S.%f UTC"),
        "event_id": (message.attributes or {}).get("event_id"),
        "message_id": message.message_id,
        "publish_time": publish_text(message.publish_time),
        "event_json": json.dumps(event, separators=(",", ":"), ensure_ascii=False),
        "loaded_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC"),
    }


def rejected_record(message, why: str) -> dict:
    return {"payload_base64": base64.b64encode(message.data).decode("ascii"), "reason": why,
            "message_id": message.message_id, "publish_time": publish_text(message.publish_time),
            "attributes": dict(message.attributes or {})}  # fmt: skip


def rejected_path(prefix: str, message) -> str:
    return f"{prefix.rstrip('/')}/{datetime.now(UTC):%Y-%m-%d}/{message.message_id}.json"


# ---------------------------------------------------------------- the pipeline


class Check(beam.DoFn):
    def process(self, message):
        kind, result = check(message.data)
        if kind is None:
            yield beam.pvalue.TaggedOutput(REJECTED, (message, result))
        else:
            yield kind, result, message


class WriteEventFile(beam.DoFn):
    """One gzipped JSON object per event, through Beam's FileSystems (local folders or gs://)."""

    def __init__(self, root: str):
        self.root = root

    def process(self, element):
        kind, event, message = element
        path = event_path(self.root, kind, event, message.message_id)
        with FileSystems.create(path, mime_type="application/gzip", compression_type=CompressionTypes.GZIP) as f:
            f.write(json.dumps(file_record(kind, event, message)).encode("utf-8"))
        yield path


class WriteRejectedFile(beam.DoFn):
    def __init__(self, prefix: str):
        self.prefix = prefix

    def process(self, element):
        message, why = element
        path = rejected_path(self.prefix, message)
        with FileSystems.create(path, mime_type="application/json") as f:
            f.write(json.dumps(rejected_record(message, why)).encode("utf-8"))
        yield path


def run(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--dead_letters", required=True)
    # A streaming FILE_LOADS write needs a triggering frequency (Beam 2.77 bigquery_file_loads.py raises
    # "triggering_frequency must be specified to use file loads in streaming"): a load job every N seconds.
    parser.add_argument("--load_seconds", type=int, default=10, help="FILE_LOADS triggering frequency")
    args, beam_args = parser.parse_known_args(argv)
    options = PipelineOptions(beam_args)
    options.view_as(StandardOptions).streaming = True
    project = options.view_as(GoogleCloudOptions).project
    prefix = f"{project}:{args.dataset}" if project else args.dataset

    with beam.Pipeline(options=options) as p:
        checked = (
            p
            | "Read" >> beam.io.ReadFromPubSub(subscription=args.subscription, with_attributes=True)
            | "Check" >> beam.ParDo(Check()).with_outputs(REJECTED, main="good")
        )
        _ = checked.good | "Files" >> beam.ParDo(WriteEventFile(args.output))
        _ = checked[REJECTED] | "RejectedFiles" >> beam.ParDo(WriteRejectedFile(args.dead_letters))
        _ = (
            checked.good
            | "Rows" >> beam.MapTuple(table_row)
            | "Load"
            >> WriteToBigQuery(
                table=lambda row: f"{prefix}.{TABLES[row['event_type']]}",
                schema=SCHEMA,
                create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
                write_disposition=BigQueryDisposition.WRITE_APPEND,
                method=WriteToBigQuery.Method.FILE_LOADS,
                triggering_frequency=args.load_seconds,
            )
        )


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.WARNING)
    run()
