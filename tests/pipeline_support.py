"""Helpers for the pipeline tests: generated messages as Beam PubsubMessages, streaming test pipelines, files."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from generator.stream import EventStream, GeneratorConfig, OutgoingMessage

NOW = datetime(2025, 2, 8, 13, 9, 1, 123000, tzinfo=UTC)
SMALL = {"customers": 150, "products": 60, "warehouses": 4, "users": 200}


def frozen_clock() -> float:
    return NOW.timestamp()


def stream_clock() -> float:
    """The DoFns' clock under TestStream: the DirectRunner's test clock starts at 0 and only moves when the
    TestStream advances processing time, so timers set relative to 0 fire exactly when a test advances."""
    return 0.0


def generated(count: int, seed: int = 1, run_id: str = "run-test", **config: Any) -> list[OutgoingMessage]:
    stream = EventStream(GeneratorConfig(seed=seed, **{**SMALL, **config}), run_id, clock=frozen_clock)
    return stream.take(count)


def as_pubsub(messages: Iterable[OutgoingMessage], start: int = 0) -> list[PubsubMessage]:
    """Each generated message as Pub/Sub would deliver it: a message id and a publish time."""
    return [
        PubsubMessage(m.data, dict(m.attributes), message_id=f"m{start + i}", publish_time=NOW + timedelta(seconds=1))
        for i, m in enumerate(messages)
    ]


def streaming_options(**extra: Any) -> PipelineOptions:
    options = PipelineOptions(runner="DirectRunner", **extra)
    options.view_as(StandardOptions).streaming = True
    return options


def files_under(root: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "**", "*.json"), recursive=True))


def lines_of(paths: Iterable[str]) -> list[dict[str, Any]]:
    lines = []
    for path in paths:
        with open(path, "rb") as handle:
            lines += [orjson.loads(line) for line in handle if line.strip()]
    return lines


def collect(pcoll: beam.PCollection, path: str, label: str) -> None:
    """Append each element's repr to a file: a side channel out of the runner that survives pickling."""

    def write(element: Any) -> None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(repr(element) + "\n")

    _ = pcoll | label >> beam.Map(write)
