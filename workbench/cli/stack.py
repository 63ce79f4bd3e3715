"""`workbench up | down | status | env`: the embedded local stack (no cloud account, no Docker)."""

from __future__ import annotations

from pathlib import Path

import click

from eventmodel import resources as names
from workbench.stack_run import print_env, show_status, start_stack, stop_stack


@click.command()
@click.option("--gcs", "with_gcs", is_flag=True, help="Also start the GCS emulator (for gs:// output roots).")
@click.option(
    "--s3",
    "with_s3",
    is_flag=True,
    help=f"Also start the S3 server (moto, in memory) with bucket {names.HISTORY_BUCKET}, for history in s3://.",
)
@click.option("--no-bigquery", is_flag=True, help="Leave out the BigQuery emulator.")
@click.option("--dataset", "datasets", multiple=True, metavar="NAME",
              help="Also create this empty BigQuery dataset (repeat the option for several; one that exists is kept): "
              "your pipeline's, since Beam creates tables but not datasets.")  # fmt: skip
@click.option("--project", default=names.DEFAULT_PROJECT, show_default=True)
@click.option("--pubsub-port", type=int, default=names.PUBSUB_EMULATOR_PORT, show_default=True)
@click.option("--bigquery-port", type=int, default=names.BIGQUERY_EMULATOR_PORT, show_default=True)
@click.option("--gcs-port", type=int, default=names.GCS_EMULATOR_PORT, show_default=True)
@click.option("--s3-port", type=int, default=names.S3_SERVER_PORT, show_default=True)
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Keep Pub/Sub state across restarts."
)
@click.option(
    "--bigquery-in-memory",
    is_flag=True,
    help="Keep the BigQuery emulator's tables in memory only (lost when it stops) instead of on disk.",
)
@click.option(
    "--bigquery-time-travel",
    is_flag=True,
    help="Keep the BigQuery emulator's per-write table copies (FOR SYSTEM_TIME AS OF); memory grows with writes.",
)
@click.option(
    "--pubsub-admin",
    is_flag=True,
    help="Serve the Pub/Sub emulator's admin service (fault injection while it runs, for --chaos); off by default.",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Restart a Pub/Sub emulator running with other settings even though its unread messages are lost.",
)
def up(**options):
    """Start the local emulators in the background and create the topics and subscriptions.

    Idempotent: what already runs with these settings is left alone; a service with other settings is restarted,
    except a Pub/Sub emulator holding messages it would lose (refused unless --restart). Point other tools at it
    with: eval "$(workbench env)".
    """
    start_stack(**options)


@click.command()
@click.option("--reset", is_flag=True, help="Also delete the BigQuery emulator's kept tables: the next `up` is empty.")
def down(reset):
    """Stop the services `workbench up` started (by pid; nothing else is touched). Tables are kept unless --reset."""
    stop_stack(reset)


@click.command()
def status():
    """Show what the local stack runs, where, and since when."""
    show_status()


@click.command()
def env():
    """Print export lines for the running services: eval "$(workbench env)".

    The stack's variables are addresses and project ids, and the S3 server's placeholder keys (moto's "testing",
    which open no real account: printed in clear, so that eval gives boto3 and Beam all they need); any other
    variable whose name or value looks secret would be printed as a comment with its value masked, never in clear.
    """
    print_env()
