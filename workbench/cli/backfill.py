"""`workbench backfill`: history from S3 (or gs://, or a folder) through the pipeline's stages into the GCS tree and
BigQuery, on the local stack (default) or on Dataflow. docs/backfill.md has the whole story."""

from __future__ import annotations

import logging
import os
import sys

import click

from eventmodel.resources import DATASET, DEAD_LETTER_TOPIC, DEFAULT_PROJECT
from workbench import terminal
from workbench.cli.params import DURATION
from workbench.errors import WorkbenchError
from workbench.localstack.stack import BIGQUERY_ENV, PUBSUB_ENV, S3_ENV, STORAGE_ENV, local_endpoints
from workbench.output_root import output_root_option


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("history_uri", metavar="s3://BUCKET/PREFIX")
@click.option("--since", metavar="TIME", help="Only events at or after this event time (e.g. 2025-01-01T00:00:00Z).")
@click.option("--until", metavar="TIME", help="Only events before this event time.")
@click.option("--output-root", default="./output", show_default=True, callback=output_root_option,
              help="Local directory or gs://bucket/prefix.")  # fmt: skip
@click.option("--dataset", default=DATASET, show_default=True, help="BigQuery dataset; '' to run without BigQuery.")
@click.option("--dead-letter-topic", default=DEAD_LETTER_TOPIC, show_default=True, help="'' for none.")
@click.option("--runner", type=click.Choice(["DirectRunner", "DataflowRunner"]), default="DirectRunner",
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
def backfill(history_uri, since, until, output_root, dataset, dead_letter_topic, runner, project, region,
             temp_location, aws_credentials_secret, emulator, bigquery_emulator, sink_retry_seconds, dry_run,
             beam_args):  # fmt: skip
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
    from eventmodel.resources import resolve_project
    from pipeline.options import TIMESTAMP
    from workbench.pipeline_run.backfill_launcher import DATAFLOW
    from workbench.pipeline_run.backfill_launcher import backfill as run_backfill

    for flag, value in (("--since", since), ("--until", until)):
        if value:
            try:
                TIMESTAMP(value)
            except Exception as exc:
                raise click.BadParameter(str(exc), param_hint=flag) from None
    if not dataset and not dead_letter_topic:
        raise WorkbenchError(
            "--dataset '' and --dead-letter-topic '' leave the dead letters nowhere: a rejected record would be lost",
            "keep the dead_letters table (a --dataset) or a --dead-letter-topic",
        )
    project = resolve_project(project, DEFAULT_PROJECT)
    args = ["--runner", runner, "--project", project, "--history_uri", history_uri, "--output_root", output_root,
            "--dataset", dataset, "--dead_letter_topic", dead_letter_topic,
            "--sink_retry_seconds", f"{sink_retry_seconds:f}"]  # fmt: skip
    given = (("--since", since), ("--until", until), ("--aws_credentials_secret", aws_credentials_secret))
    args += [a for flag, value in given if value for a in (flag, value)]
    if runner == DATAFLOW:
        args += [a for flag, value in (("--region", region), ("--temp_location", temp_location)) if value
                 for a in (flag, value)]  # fmt: skip
        if dry_run:
            args.append("--dry_run=True")
        result = run_backfill(args + list(beam_args))
        terminal.success(f"Dataflow: {result.job or result.state}")
        return

    local = local_endpoints(emulator, bigquery_emulator)
    if dataset and not local["bigquery"]:
        raise WorkbenchError(
            "no BigQuery emulator is known for --dataset " + dataset,
            "start the local stack (`workbench up`), pass --bigquery-emulator, or --dataset ''",
        )
    if dead_letter_topic and not local["pubsub"]:
        raise WorkbenchError(
            "no Pub/Sub emulator is known for the dead-letter topic",
            "start the local stack (`workbench up`), pass --emulator, or --dead-letter-topic ''",
        )
    if history_uri.startswith("s3://") and local["s3"] and not os.environ.get(S3_ENV):
        from workbench.localstack.stack import env_exports

        os.environ.update({k: v for k, v in env_exports().items() if k.startswith("AWS_")})
    if local["pubsub"]:
        os.environ[PUBSUB_ENV] = local["pubsub"]
    if local["storage"]:
        os.environ[STORAGE_ENV] = local["storage"]
    os.environ.setdefault("NO_GCE_CHECK", "true")
    if dataset:
        args += ["--bigquery_emulator_host", local["bigquery"]]
    logging.getLogger("apache_beam").setLevel(logging.ERROR)  # Beam's warnings would scroll the view away

    from workbench.backfill_view import BackfillView, figures, summary

    sinks = output_root + (f", BigQuery {project}.{dataset}" if dataset else "")
    terminal.info("backfilling on Beam's embedded runner")
    with BackfillView(history_uri, sinks) as view:
        result = run_backfill(args + list(beam_args), on_progress=view.update)
    for table in summary(result.counts):
        terminal.console.print(table)
    if result.state != "DONE":
        raise WorkbenchError(
            f"the backfill ended {result.state}", "see the errors above; a rerun adds only what is missing"
        )
    unreadable = figures(result.counts)["unreadable objects"]
    if unreadable:
        terminal.error(
            f"{unreadable} objects could not be read (SOURCE_UNREADABLE dead letters name them and say why); "
            "everything else was backfilled",
            "fix the access (s3:GetObject) and run the same backfill again: it adds only what is missing",
        )
        sys.exit(1)
    terminal.success(f"backfill done in {result.elapsed:,.1f} s; check it: workbench reconcile RUN_ID")
