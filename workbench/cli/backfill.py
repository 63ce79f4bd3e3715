"""`workbench backfill`: history from S3 (or gs://, or a folder) through the pipeline's stages into the GCS tree and
BigQuery, on the local stack (default) or on Dataflow. docs/backfill.md has the whole story."""

from __future__ import annotations

import click

from eventmodel.resources import DATASET, DEAD_LETTER_TOPIC
from pipeline.runners import DIRECT, RUNNERS
from workbench.cli.params import DURATION, exit_with
from workbench.localstack.stack import BIGQUERY_ENV, PUBSUB_ENV
from workbench.output_root import output_root_option


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("history_uri", metavar="s3://BUCKET/PREFIX")
@click.option("--since", metavar="TIME", help="Only events at or after this event time (e.g. 2025-01-01T00:00:00Z).")
@click.option("--until", metavar="TIME", help="Only events before this event time.")
@click.option("--output-root", default="./output", show_default=True, callback=output_root_option,
              help="Local directory or gs://bucket/prefix.")  # fmt: skip
@click.option("--dataset", default=DATASET, show_default=True, help="BigQuery dataset; '' to run without BigQuery.")
@click.option("--dead-letter-topic", default=DEAD_LETTER_TOPIC, show_default=True, help="'' for none.")
@click.option("--runner", type=click.Choice(RUNNERS), default=DIRECT,
              show_default=True, help="Beam's embedded runner on the local stack, or Dataflow.")  # fmt: skip
@click.option("--project", help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).")
@click.option("--region", help="Dataflow region (DataflowRunner).")
@click.option("--temp-location", help="gs://BUCKET/tmp for Dataflow's staging and temp files (DataflowRunner).")
@click.option("--aws-credentials-secret", metavar="VERSION",
              help="Secret Manager version holding the AWS keys, read by each worker (docs/backfill.md).")  # fmt: skip
@click.option("--emulator", metavar="HOST:PORT", help=f"Pub/Sub emulator (else ${PUBSUB_ENV} or the local stack).")
@click.option("--bigquery-emulator", metavar="HOST:PORT",
              help=f"BigQuery emulator (else ${BIGQUERY_ENV} or the local stack).")  # fmt: skip
@click.option("--sink-retry-seconds", type=DURATION, default="300", show_default=True,
              help="How long a sink may stay unreachable before its writes are dead-lettered.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="DataflowRunner: build and translate the job, submit nothing.")
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
def backfill(**options):
    """Backfill history: validate, deduplicate against what the sinks hold, write the same files and tables.

    Every object under the prefix is read (JSON lines, JSON arrays, an object per event, gzip or not); malformed
    records become dead letters naming their object and line. Running it twice changes nothing.
    Any further --flag is handed to Beam (e.g. --s3_region_name, --max_num_workers).

    \b
    workbench backfill s3://workbench-history/exports
    workbench backfill s3://BUCKET/exports --runner DataflowRunner --project P --region europe-west1 \\
        --temp-location gs://B/tmp --output-root gs://B/output \\
        --aws-credentials-secret projects/P/secrets/aws/versions/1
    """
    from workbench.pipeline_run.backfill_run import BackfillSettings, run_backfill

    exit_with(run_backfill(BackfillSettings(**options)))
