"""`workbench demo`: the main job end to end on the embedded local stack, ending in reconcile's verdict."""

from __future__ import annotations

import click

from eventmodel import resources as names
from workbench import terminal
from workbench.cli.params import DURATION, positive
from workbench.cli.publish import publish_options
from workbench.output_root import output_root_option


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--rate", type=float, default=500.0, show_default=True, callback=positive, help="Messages per second.")
@click.option("--count", type=int, default=5000, show_default=True, help="Messages to publish.")
@click.option("--duration", type=DURATION, help="Publish for this long instead of --count (90s, 5m, 1m30).")
@click.option("--malformed-rate", type=float, default=0.05, show_default=True, help="Share of malformed messages.")
@click.option("--duplicate-rate", type=float, default=0.01, show_default=True, help="Share of exact re-sends.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the events and of the chaos.")
@click.option("--chaos", is_flag=True, help="Duplicate deliveries, publish UNAVAILABLE, lost acks, jitter (seeded).")
@click.option(
    "--output-root",
    default="./output",
    callback=output_root_option,
    show_default=True,
    help="Where the pipeline writes the GCS tree.",
)
@click.option(
    "--pubsub-port",
    type=int,
    default=names.PUBSUB_EMULATOR_PORT,
    show_default=True,
    help="Pub/Sub emulator port, when the demo starts the stack.",
)
@click.option(
    "--bigquery-port",
    type=int,
    default=names.BIGQUERY_EMULATOR_PORT,
    show_default=True,
    help="BigQuery emulator port, when the demo starts the stack.",
)
@click.argument("publish_options", metavar="[PUBLISH_ARGS]...", nargs=-1, type=click.UNPROCESSED,
                callback=lambda ctx, param, args: publish_options(args))  # fmt: skip
def demo(**options):
    """Stack up, pipeline in the background, publish a run, drain, reconcile; exit status is reconcile's.

    Further options go to `workbench publish` (e.g. --late-rate 0.05). A stack that was already up stays up.
    Ctrl-C, SIGTERM or SIGHUP stop what the demo started (exit status 130, 143, 129).

    \b
    workbench demo                       # 5,000 events at 500/s, 5% malformed, 1% duplicates
    workbench demo --chaos --seed 7      # the same under injected Pub/Sub faults
    """
    from workbench.demo import DemoOptions, run_demo

    raise SystemExit(run_demo(DemoOptions(**options), on_step=terminal.info))
