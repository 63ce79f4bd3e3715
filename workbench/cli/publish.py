"""`workbench publish`: generate events and publish them at a controlled rate to Pub/Sub, a file or S3."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from eventmodel.resources import TOPIC
from publisher import objects as layout
from publisher.rate import PROFILE_HELP
from workbench.cli.params import DURATION, exit_with, given_options
from workbench.publish_run import DEFAULT_RATE, EMULATOR_ENV


def _weights(ctx, param, value: str | None) -> dict[str, float] | None:
    from generator.stream import parse_malformed_weights  # the generator loads Faker: only when a run needs it

    try:
        return parse_malformed_weights(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _history(ctx, param, value: str | None) -> tuple[datetime, datetime] | None:
    if not value:
        return None
    start, sep, end = value.partition("..")
    try:
        bounds = tuple(
            datetime.fromisoformat(x.strip()).replace(tzinfo=UTC)
            if datetime.fromisoformat(x.strip()).tzinfo is None
            else datetime.fromisoformat(x.strip())
            for x in (start, end)
        )
    except ValueError:
        bounds = ()
    if not sep or len(bounds) != 2 or bounds[0] >= bounds[1]:
        raise click.BadParameter(f"{value!r}: write START..END in ISO form, e.g. 2025-02-01..2025-02-08T12:00")
    return bounds  # type: ignore[return-value]


@click.command()
@click.option(
    "--rate",
    type=float,
    help=f"Messages per second (the peak of a profile). Default {DEFAULT_RATE:g}; with --to s3:// unpaced.",
)
@click.option("--profile", default="constant", show_default=True, help=f"Rate over time: {PROFILE_HELP}.")
@click.option("--duration", type=DURATION, help="Stop after this long (90s, 5m, 1h, 1m30).")
@click.option("--count", type=int, help="Stop after this many messages.")
@click.option("--malformed-rate", type=float, default=0.0, show_default=True, help="Share of malformed messages, 0..1.")
@click.option("--malformed-kinds", callback=_weights, help="Weights per malformed kind: legacy_id=2,python_repr=1.")
@click.option("--duplicate-rate", type=float, default=0.0, show_default=True, help="Share of exact re-sends, 0..1.")
@click.option("--late-rate", type=float, default=0.0, show_default=True, help="Share of late events, 0..1.")
@click.option("--max-lateness", type=DURATION, default="10m", show_default=True, help="How late a late event is.")
@click.option("--out-of-order-rate", type=float, default=0.0, show_default=True, help="Share of out-of-order events.")
@click.option("--history", callback=_history, help="Spread timestamps over START..END instead of now.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same events.")
@click.option(
    "--to",
    "to",
    metavar="FILE|-|s3://BUCKET/PREFIX",
    help="Write JSON lines to FILE (or - for stdout), or the payloads as objects under s3://BUCKET/PREFIX/RUN_ID/ "
    "(needs --count), instead of Pub/Sub.",
)
@click.option(
    "--format",
    "object_format",
    type=click.Choice(layout.FORMATS),
    help="S3 objects: ndjson (one event per line, .jsonl; the default), array (a JSON array, .json), per-event "
    "(an object per event) or mixed (each object draws ndjson or array, small ones per-event).",
)
@click.option(
    "--compression",
    type=click.Choice(layout.COMPRESSIONS),
    help="S3 objects: none (the default), gzip (.gz) or mixed (a coin per object).",
)
@click.option("--gzip", "gzip_objects", is_flag=True, help="S3 objects: the same as --compression gzip.")
@click.option(
    "--objects",
    type=int,
    help="S3: cut the events into N objects of skewed sizes (a few large, many small; fixed by --seed). Default 1.",
)
@click.option(
    "--split-by-type", is_flag=True, help="S3: one object per event type (PREFIX/RUN_ID/TYPE/...) instead of mixed."
)
@click.option("--project", help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).")
@click.option("--topic", default=TOPIC, show_default=True)
@click.option("--emulator", metavar="HOST:PORT", help=f"Pub/Sub emulator address (else ${EMULATOR_ENV}).")
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Publishing processes, for rates one can't reach."
)
@click.option("--run-id", help="Name the run (default: time-stamped).")
@click.option(
    "--replay",
    metavar="RUN_ID",
    help="Send run RUN_ID's events again under the same event ids (its seed, generator settings, workers and count, "
    "unless --count/--duration/--rate say otherwise): a deduplicating pipeline drops what it holds, and reconcile "
    "reports those events as held by the earlier run. Without it every run has event ids of its own.",
)
def publish(**options):
    """Publish generated events at a controlled rate.

    Without --to, publishes to the topic on the emulator named by --emulator or PUBSUB_EMULATOR_HOST, or to real
    Pub/Sub with Application Default Credentials. Every message is recorded in the run manifest
    ($WORKBENCH_HOME/runs/RUN_ID) for `workbench reconcile`.

    With --to s3://BUCKET/PREFIX the payloads alone are written as an export holds them, under PREFIX/RUN_ID/,
    with boto3's usual AWS settings (AWS_ENDPOINT_URL, AWS_REGION, credentials); the manifest records each event's
    object and position. Malformed bytes stay exact: one with a line break gets an object of its own, one that
    is not JSON sits in an ndjson object beside an array (docs/generator.md).

    \b
    workbench publish --rate 500 --duration 60s --malformed-rate 0.05
    workbench publish --rate 2000 --profile spike:20000:30s:10s --workers 2 --count 1000000
    workbench publish --count 1000 --to events.jsonl
    workbench publish --history 2025-01-01..2025-02-01 --count 100000 --malformed-rate 0.02 \\
        --to s3://history/exports --format mixed --compression mixed --objects 40
    """
    from workbench.publish_run import PublishSettings, run_publish

    exit_with(run_publish(PublishSettings(**options, given=given_options())))


def publish_options(args: Sequence[str]) -> dict[str, Any]:
    """The options of `workbench publish` that `args` give, by PublishSettings field: the demo hands its further
    options to the publish it runs. Refused as the command refuses them."""
    from click.core import ParameterSource

    with publish.make_context("publish", list(args)) as ctx:
        return {k: v for k, v in ctx.params.items() if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
