"""A user's own streaming pipeline, as it would be written without the workbench: stock Beam IO only, and no
import of the workbench or of this project's pipeline. The tests run it through `workbench exec`.

    python stock_pipeline.py --subscription projects/P/subscriptions/S --table P:D.T --method STREAMING_INSERTS \
        --output_dir ./files --streaming --runner DirectRunner --project P [--temp_location DIR] \
        [--triggering_frequency SECONDS] [--file_window_seconds SECONDS] [--timestamp_attribute NAME]

Each message is a JSON object with `key` and `n`; each becomes one row (message id, key, n, the raw payload) and one
line of a JSON-lines file.
"""

import argparse
import json

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.gcp.bigquery import WriteToBigQuery
from apache_beam.io.gcp.pubsub import ReadFromPubSub
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import window

SCHEMA = "message_id:STRING,key:STRING,n:INTEGER,payload:STRING"


def to_row(message):
    event = json.loads(message.data.decode("utf-8"))
    return {
        "message_id": message.message_id,
        "key": event["key"],
        "n": int(event["n"]),
        "payload": message.data.decode("utf-8"),
    }


def run(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--method", default="STREAMING_INSERTS")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--triggering_frequency", type=int, default=2, help="FILE_LOADS: seconds between loads")
    parser.add_argument("--file_window_seconds", type=int, default=5, help="how long the files' windows last")
    parser.add_argument("--timestamp_attribute", default=None, help="the attribute holding each event's time")
    known, beam_args = parser.parse_known_args(argv)
    options = PipelineOptions(beam_args)
    with beam.Pipeline(options=options) as pipeline:
        rows = (
            pipeline
            | "Read"
            >> ReadFromPubSub(
                subscription=known.subscription, with_attributes=True, timestamp_attribute=known.timestamp_attribute
            )
            | "ToRow" >> beam.Map(to_row)
        )
        extra = {"triggering_frequency": known.triggering_frequency} if known.method == "FILE_LOADS" else {}
        _ = rows | "ToBigQuery" >> WriteToBigQuery(
            known.table,
            schema=SCHEMA,
            method=known.method,
            create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
            write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
            **extra,
        )
        _ = (
            rows
            | "Window" >> beam.WindowInto(window.FixedWindows(known.file_window_seconds))
            | "ToJson" >> beam.Map(json.dumps, sort_keys=True)
            # shards and max_writers_per_bundle=0: one file per shard and window. Without them every bundle of a
            # window writes a file of the same name, and the last overwrites the others.
            | "ToFiles"
            >> fileio.WriteToFiles(
                known.output_dir,
                file_naming=fileio.default_file_naming("rows", ".jsonl"),
                shards=2,
                max_writers_per_bundle=0,
            )
        )


if __name__ == "__main__":
    run()
