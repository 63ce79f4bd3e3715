"""A user's own streaming pipeline with keyed state, as it would be written without the workbench: stock Beam only,
and no import of the workbench or of this project's pipeline. The tests run it through `workbench exec`.

    python dedup_pipeline.py --subscription projects/P/subscriptions/S --output kept.txt \
        --streaming --runner DirectRunner --project P [--dedup_seconds SECONDS]

Each message is a JSON object with `key` and `n`. A key seen again within --dedup_seconds of event time (the publish
time: ReadFromPubSub without timestamp_attribute) is dropped by Beam's DeduplicatePerKey, whose memory of a key is a
bag state cleared by an event-time timer. Each message kept is a line `key n` appended to --output.
"""

import argparse
import json

import apache_beam as beam
from apache_beam.io.gcp.pubsub import ReadFromPubSub
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.deduplicate import DeduplicatePerKey
from apache_beam.utils.timestamp import Duration


def keyed(data: bytes) -> tuple[str, int]:
    event = json.loads(data.decode("utf-8"))
    return event["key"], int(event["n"])


class AppendLines(beam.DoFn):
    """Each element as a line of a local file, flushed at once: whoever watches the file sees every bundle land."""

    def __init__(self, path: str):
        self.path = path

    def process(self, kv):
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(f"{kv[0]} {kv[1]}\n")


def run(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--dedup_seconds", type=int, default=600)
    known, beam_args = parser.parse_known_args(argv)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        _ = (
            pipeline
            | "Read" >> ReadFromPubSub(subscription=known.subscription)
            # A str key: its coder is deterministic, as keyed state needs.
            | "Key" >> beam.Map(keyed).with_output_types(tuple[str, int])
            | "Dedup" >> DeduplicatePerKey(event_time_duration=Duration(seconds=known.dedup_seconds))
            | "Write" >> beam.ParDo(AppendLines(known.output))
        )


if __name__ == "__main__":
    run()
