"""A streaming Beam pipeline used by test_beam.py: ReadFromPubSub (a named subscription, with attributes) ->
upper-case the payload and tag it -> WriteToPubSub. Runs until killed.

    python tests/emulator/beam_roundtrip.py --subscription projects/p/subscriptions/in --topic projects/p/topics/out
"""

from __future__ import annotations

import argparse

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage, ReadFromPubSub, WriteToPubSub
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.runners import local_runner


def tag(message: PubsubMessage) -> PubsubMessage:
    attributes = dict(message.attributes or {})
    attributes["seen_by"] = "beam"
    return PubsubMessage(message.data.upper(), attributes)


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--topic", required=True)
    args, beam_args = parser.parse_known_args(argv)
    options = PipelineOptions([*beam_args, "--runner=DirectRunner", "--streaming", "--project=p"])
    with beam.Pipeline(runner=local_runner(), options=options) as pipeline:  # no beam-temp* left behind
        (
            pipeline
            | "Read" >> ReadFromPubSub(subscription=args.subscription, with_attributes=True)
            | "Tag" >> beam.Map(tag)
            | "Write" >> WriteToPubSub(args.topic, with_attributes=True)
        )


if __name__ == "__main__":
    run()
