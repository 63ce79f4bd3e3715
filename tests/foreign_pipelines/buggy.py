"""A shop-events pipeline with the mistakes such pipelines really make. TEST MATERIAL: do not copy it.

Its contract (buggy.sinks.yaml) says what its author believes it does: nested BigQuery tables (orders with
items and shipping_address as records, inventory, user_activity with a metadata record), the assessment's file
layout OUTPUT/<type>/YYYY/MM/DD/HH/mm/<type>_YYYYMMDDHHmmss.json placed by the event's time, a `bad_events`
dead-letter table (for an unknown event_type, or an event time or items it cannot read), prices kept to the cent, and
no duplicates. What it really does (each marked BUG below):
1. a message that is not JSON is dropped without a trace (`except ValueError: return`);
2. a file is named by the second of its event, so events of a type within one second overwrite each other;
3. the folder and file times come from datetime.fromtimestamp(), the machine's local time, so every folder is
   shifted by the time zone's offset (run it with TZ=Asia/Kolkata to see +05:30);
4. item prices are "cleaned" with round(price, 1): one decimal;
5. nothing is deduplicated, though Pub/Sub delivers at least once and producers re-send;
6. nothing else is validated: a malformed event of a known type (an unknown status, a negative quantity, a number
   sent as a string...) goes into the files and tables as if it were valid.

    TZ=Asia/Kolkata python buggy.py --streaming --runner DirectRunner --project PROJECT \
        --subscription projects/PROJECT/subscriptions/backend-events-topic-sub --dataset shop --output ./out
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.gcp.bigquery import BigQueryDisposition, RetryStrategy, WriteToBigQuery
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

TIME_FIELD = {"order": "order_date", "inventory": "timestamp", "user_activity": "timestamp"}
BAD = "bad"


def field(name, kind, mode="NULLABLE", fields=None):
    f = {"name": name, "type": kind, "mode": mode}
    if fields:
        f["fields"] = fields
    return f


SCHEMAS = {
    "orders": [
        field("event_type", "STRING"),
        field("order_id", "STRING"),
        field("customer_id", "STRING"),
        field("order_date", "TIMESTAMP"),
        field("status", "STRING"),
        field(
            "items",
            "RECORD",
            "REPEATED",
            [
                field("product_id", "STRING"),
                field("product_name", "STRING"),
                field("quantity", "INTEGER"),
                field("price", "FLOAT"),
            ],
        ),
        field(
            "shipping_address",
            "RECORD",
            fields=[field("street", "STRING"), field("city", "STRING"), field("country", "STRING")],
        ),
        field("total_amount", "FLOAT"),
    ],
    "inventory": [
        field("event_type", "STRING"),
        field("inventory_id", "STRING"),
        field("product_id", "STRING"),
        field("warehouse_id", "STRING"),
        field("quantity_change", "INTEGER"),
        field("reason", "STRING"),
        field("timestamp", "TIMESTAMP"),
    ],
    "user_activity": [
        field("event_type", "STRING"),
        field("user_id", "STRING"),
        field("activity_type", "STRING"),
        field("ip_address", "STRING"),
        field("user_agent", "STRING"),
        field("timestamp", "TIMESTAMP"),
        field("metadata", "RECORD", fields=[field("session_id", "STRING"), field("platform", "STRING")]),
    ],
    "bad_events": [field("payload", "STRING"), field("reason", "STRING")],
}
TABLE_OF = {"order": "orders", "inventory": "inventory", "user_activity": "user_activity"}


def parse(data: bytes):
    """The event, a ("bad", row) for an event of no known type, or None. BUG 6: no other check."""
    try:
        event = json.loads(data)
    except ValueError:
        return None  # BUG 1: "can't parse it, nothing to do" - the message vanishes
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("event_type"), str)
        or (event["event_type"] not in TIME_FIELD)
    ):
        return (BAD, {"payload": data.decode("utf-8", "replace"), "reason": "unknown event_type"})
    try:
        event_seconds(event)
        clean(event)
    except (KeyError, TypeError, ValueError, AttributeError):
        return (BAD, {"payload": data.decode("utf-8", "replace"), "reason": "no readable event time or items"})
    return event


def clean(event: dict) -> dict:
    if event["event_type"] == "order":
        # BUG 4: one decimal, meant two
        event = {**event, "items": [{**i, "price": round(i["price"], 1)} for i in event["items"]]}
    return event


def event_seconds(event: dict) -> float:
    text = event[TIME_FIELD[event["event_type"]]]
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def file_path(root: str, event: dict) -> str:
    kind = event["event_type"]
    at = datetime.fromtimestamp(event_seconds(event))  # BUG 3: local time, not UTC
    # BUG 2: one name per second: a later event of the same second replaces the file
    return f"{root.rstrip('/')}/{kind}/{at:%Y/%m/%d/%H/%M}/{kind}_{at:%Y%m%d%H%M%S}.json"


class WriteFile(beam.DoFn):
    def __init__(self, root: str):
        self.root = root

    def process(self, event):
        with FileSystems.create(file_path(self.root, event)) as f:
            f.write(json.dumps(event).encode("utf-8") + b"\n")
        yield event


class Parse(beam.DoFn):
    def process(self, data):
        result = parse(data)
        if result is None:
            return
        if isinstance(result, tuple):
            yield beam.pvalue.TaggedOutput(BAD, result[1])
        else:
            yield clean(result)


def run(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--output", required=True)
    args, beam_args = parser.parse_known_args(argv)
    options = PipelineOptions(beam_args)
    options.view_as(StandardOptions).streaming = True
    project = options.view_as(GoogleCloudOptions).project
    prefix = f"{project}:{args.dataset}" if project else args.dataset

    def write(rows, label, table):
        return rows | label >> WriteToBigQuery(
            table=f"{prefix}.{table}",
            schema={"fields": SCHEMAS[table]},
            create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
            write_disposition=BigQueryDisposition.WRITE_APPEND,
            method=WriteToBigQuery.Method.STREAMING_INSERTS,
            insert_retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
        )

    with beam.Pipeline(options=options) as p:
        # BUG 5: Pub/Sub "delivers once", so no dedup step
        parsed = (
            p
            | "Read" >> beam.io.ReadFromPubSub(subscription=args.subscription)
            | "Parse" >> beam.ParDo(Parse()).with_outputs(BAD, main="events")
        )
        events = parsed.events
        _ = events | "Files" >> beam.ParDo(WriteFile(args.output))
        for kind, table in TABLE_OF.items():
            rows = events | f"Only{table}" >> beam.Filter(lambda e, k=kind: e["event_type"] == k)
            write(rows, f"Write{table}", table)
        write(parsed[BAD], "WriteBad", "bad_events")


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.WARNING)
    run()
