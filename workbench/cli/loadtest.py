"""`workbench loadtest`: the Locust load test, headless, with reports and a reconcilable run manifest."""

from __future__ import annotations

import click

from eventmodel import resources as names
from workbench.cli.params import DURATION
from workbench.output_root import output_root_option


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--users", type=int, default=10, show_default=True, help="Locust users at the peak.")
@click.option("--spawn-rate", type=float, default=10.0, show_default=True, help="Users started per second.")
@click.option("--run-time", type=DURATION, default="30s", show_default=True, help="How long: 30s, 5m, 1h, 1m30.")
@click.option("--shape", type=click.Choice(["steady", "step", "ramp", "spike"]), default="steady", show_default=True,
              help="Users over time, as `workbench publish --profile`.")  # fmt: skip
@click.option("--workers", type=int, default=0, show_default=True,
              help="0: one Locust process; N: a master and N worker processes on this machine.")  # fmt: skip
@click.option("--batch-size", type=int, default=20, show_default=True,
              help="Messages per batch, sent in Publish requests of at most 1,000 messages and 10 MB.")  # fmt: skip
@click.option("--user-rate", type=float, default=0.0, show_default=True,
              help="Batches per second per user; 0 publishes as fast as the server confirms.")  # fmt: skip
@click.option("--malformed-rate", type=float, default=0.05, show_default=True, help="Share of malformed messages.")
@click.option("--duplicate-rate", type=float, default=0.01, show_default=True, help="Share of exact re-sends.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--run-id", help="Name the run (default: time-stamped).")
@click.option("--topic", default=names.TOPIC, show_default=True)
@click.option("--project", help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).")
@click.option("--emulator", metavar="HOST:PORT", help="Pub/Sub emulator (else PUBSUB_EMULATOR_HOST or the stack).")
@click.option("--reconcile", "then_reconcile", is_flag=True,
              help="Then reconcile the run (waiting up to 60 s for a pipeline that is running to drain).")  # fmt: skip
@click.option("--output-root", default="./output", show_default=True, callback=output_root_option,
              help="--reconcile: the GCS tree the pipeline writes (a directory or gs://...).")  # fmt: skip
@click.argument("locust_args", nargs=-1, type=click.UNPROCESSED)
def loadtest(**options):
    """Run the Locust load test against the local stack (or real Pub/Sub) and record a reconcilable run.

    Further flags go to Locust (the local process, or the master; workers take their settings from it).
    Reports: $WORKBENCH_HOME/runs/RUN_ID/locust.html and locust_*.csv.

    \b
    workbench loadtest --users 50 --spawn-rate 10 --run-time 60s
    workbench loadtest --users 100 --workers 2 --shape spike --reconcile
    """
    from workbench.loadtest_run import loadtest_as_asked

    raise SystemExit(loadtest_as_asked(**options))
