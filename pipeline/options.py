"""The pipeline's own options (beside Beam's): where to read, where to write, and the sinks' tuning.

Flag names use Beam's underscore style so that the same names work on the command line, in Dataflow job
parameters and in the Flex Template metadata (pipeline/flex_template/metadata.json).
"""

from __future__ import annotations

import argparse
import re

from apache_beam.options.pipeline_options import PipelineOptions

from eventmodel.resources import DATASET, DEAD_LETTER_TOPIC, SUBSCRIPTION
from pipeline.constants import DEFAULT_RETRY_SECONDS

DEFAULT_OUTPUT_ROOT = "./output"


def _at_least(kind: type, low: float, strict: bool):
    """An argparse type: `kind` of the text, refused (with the rule) below `low`, or at it when `strict`.

    The Flex Template's regexes (flex_template/metadata.json) say the same; a test holds the two together."""

    plain = r"[0-9]+" if kind is int else r"[0-9]+(\.[0-9]+)?"  # no sign, exponent, inf or nan: as the regexes

    def parse(text: str):
        if not re.fullmatch(plain, text):
            example = "5000" if kind is int else "5 or 0.5"
            raise argparse.ArgumentTypeError(f"{text!r} is not a plain {kind.__name__} (write e.g. {example})")
        value = kind(text)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'more than' if strict else 'at least'} {low:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # what argparse names in its own messages
    return parse


POSITIVE_SECONDS = _at_least(float, 0, strict=True)
SECONDS = _at_least(float, 0, strict=False)
POSITIVE_COUNT = _at_least(int, 1, strict=False)


class EventPipelineOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--subscription",
            default=SUBSCRIPTION,
            help="Pub/Sub subscription to read: a name in --project, or projects/P/subscriptions/S.",
        )
        parser.add_argument(
            "--dead_letter_topic",
            default=DEAD_LETTER_TOPIC,
            help="Topic for dead letters: a name in --project, or projects/P/topics/T; empty to disable.",
        )
        parser.add_argument(
            "--output_root",
            default=DEFAULT_OUTPUT_ROOT,
            help="Root of the event files: a local directory or gs://bucket/prefix.",
        )
        parser.add_argument(
            "--dataset", default=DATASET, help="BigQuery dataset of the event tables; empty to disable BigQuery."
        )
        parser.add_argument("--bigquery_project", default=None, help="Project of the dataset (default: --project).")
        parser.add_argument(
            "--bigquery_emulator_host",
            default=None,
            help="http://HOST:PORT of a local BigQuery emulator; unset for BigQuery itself.",
        )
        parser.add_argument(
            "--sink_retry_seconds",
            type=SECONDS,
            default=DEFAULT_RETRY_SECONDS,
            help="How long a sink (GCS, BigQuery, the dead-letter topic) may stay unreachable before what it could "
            "not write is dead-lettered; rows a sink rejects for their content are dead-lettered at once.",
        )
        parser.add_argument(
            "--file_flush_seconds",
            type=POSITIVE_SECONDS,
            default=5.0,
            help="A minute's buffered events are written at most this long after the first arrived.",
        )
        parser.add_argument(
            "--file_max_lines",
            type=POSITIVE_COUNT,
            default=5000,
            help="Write a file as soon as this many events are buffered.",
        )
        parser.add_argument(
            "--dedup_ttl_seconds",
            type=POSITIVE_SECONDS,
            default=600.0,
            help="How long an event id is remembered to drop duplicates (bounds the dedup state).",
        )
        parser.add_argument(
            "--dedup_shards",
            type=POSITIVE_COUNT,
            default=16,
            help="Keys the dedup state is spread over: its parallelism on Dataflow (each shard runs serially).",
        )
        parser.add_argument(
            "--dedup_journal",
            default=None,
            help="Local runs: a file where the dedup step remembers ids across restarts (Dataflow keeps its state).",
        )


class HistoryOptions(PipelineOptions):
    """A backfill's own options (pipeline/backfill.py); the sinks' are EventPipelineOptions'."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--history_uri",
            default=None,
            help="Where the history is: s3://BUCKET/PREFIX (or gs://, or a local folder); every object under it "
            "is read (docs/backfill.md has the reading rule).",
        )
        parser.add_argument(
            "--backfill_run_id",
            default=None,
            help="run_id given to records whose key names no workbench run (default: backfill-<start time>).",
        )
        parser.add_argument(
            "--since",
            type=TIMESTAMP,
            default=None,
            help="Only events at or after this event time (RFC 3339, e.g. 2025-01-01T00:00:00Z).",
        )
        parser.add_argument(
            "--until", type=TIMESTAMP, default=None, help="Only events before this event time (RFC 3339)."
        )
        parser.add_argument(
            "--aws_credentials_secret",
            default=None,
            help="Secret Manager version (projects/P/secrets/S/versions/V) holding the AWS keys as JSON, read by "
            "each worker (pipeline/aws_credentials.py); unset: the usual AWS environment, profile or role.",
        )


def _timestamp(text: str):
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: write e.g. 2025-01-01T00:00:00Z") from None
    # Text, not a datetime: Dataflow carries the options as JSON.
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_timestamp.__name__ = "timestamp"
TIMESTAMP = _timestamp


def resource_path(kind: str, name: str, project: str | None) -> str:
    """projects/P/<kind>/<name> for a short name; a full path is returned as given."""
    if name.startswith("projects/"):
        return name
    if not project:
        raise ValueError(f"{kind} {name!r} is a short name: give --project, or the full projects/P/{kind}/... path")
    return f"projects/{project}/{kind}/{name}"
