"""`workbench run-pipeline`: the streaming pipeline on the local stack (default) or on Dataflow.

Local mode is the DirectRunner, named explicitly, against the emulators `workbench up` started (found through
--emulator / --bigquery-emulator, the environment, or the stack's state), with anonymous credentials. It runs
until Ctrl-C (or SIGTERM, or SIGHUP) or, with --stop-when-idle, until nothing arrived for that long; both drain
(buffered files and rows are written) before it exits. A second signal stops it at once: what it read and did not
acknowledge is delivered again to the next run. Dataflow mode submits the same pipeline: see docs/pipeline.md.

Exit status: 0 stopped when idle, everything read written and acknowledged; 128 + the first signal when a signal
stopped it, drained or (a second signal) at once: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; 2 could not run or could
not finish: a usage error, a failed check, another pipeline on the subscription, or Pub/Sub unreachable for
longer than --source-retry-seconds (what was read and not acknowledged is delivered again).
"""

from __future__ import annotations

import click

from eventmodel.resources import DATASET, DEAD_LETTER_TOPIC, SUBSCRIPTION
from pipeline.runners import DIRECT, RUNNERS
from workbench.cli.params import DURATION, exit_with
from workbench.localstack.stack import BIGQUERY_ENV, PUBSUB_ENV
from workbench.output_root import output_root_option
from workbench.pipeline_run.source_health import DEFAULT_SOURCE_RETRY_S


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--runner",
    type=click.Choice(RUNNERS),
    default=DIRECT,
    show_default=True,
    help="DirectRunner on the local stack, or DataflowRunner on Google Cloud.",
)
@click.option("--project", help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).")
@click.option("--region", help="Dataflow region (DataflowRunner).")
@click.option("--temp-location", help="gs://BUCKET/tmp for Dataflow's staging and temp files (DataflowRunner).")
@click.option("--subscription", default=SUBSCRIPTION, show_default=True, help="Subscription to read.")
@click.option(
    "--dead-letter-topic",
    default=DEAD_LETTER_TOPIC,
    show_default=True,
    help="'' for none (then --dataset must keep the dead_letters table).",
)
@click.option(
    "--output-root",
    default="./output",
    show_default=True,
    callback=output_root_option,
    help="Local directory or gs://bucket/prefix.",
)
@click.option("--dataset", default=DATASET, show_default=True, help="BigQuery dataset; '' to run without BigQuery.")
@click.option("--emulator", metavar="HOST:PORT", help=f"Pub/Sub emulator (else ${PUBSUB_ENV} or the local stack).")
@click.option(
    "--bigquery-emulator", metavar="HOST:PORT", help=f"BigQuery emulator (else ${BIGQUERY_ENV} or the local stack)."
)
@click.option(
    "--stop-when-idle",
    type=DURATION,
    metavar="DURATION",
    help="Drain and exit after this long without input (10, 10s, 1m, 1m30s).",
)
@click.option("--pull-size", type=int, default=1000, show_default=True, help="Messages per local Pub/Sub pull.")
@click.option(
    "--flush-seconds",
    type=DURATION,
    default="5",
    show_default=True,
    help="Longest a file buffer waits (5, 0.5, 5s, 1m).",
)
@click.option(
    "--dedup-ttl",
    type=DURATION,
    default="600",
    show_default=True,
    metavar="DURATION",
    help="How long an event id is remembered (seconds, or 10m, 1h).",
)
@click.option(
    "--sink-retry-seconds",
    type=DURATION,
    default="300",
    show_default=True,
    help="How long a sink may stay unreachable (retried with backoff) before its writes are dead-lettered.",
)
@click.option(
    "--source-retry-seconds",
    type=DURATION,
    default=f"{DEFAULT_SOURCE_RETRY_S:g}",
    show_default=True,
    help="Local runs: how long Pub/Sub may stay unreachable (pulls and acks retried) before the run stops (exit 2).",
)
@click.option(
    "--max-outstanding",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="Local flow control: messages read but not yet committed by every sink (acked only once they are).",
)
@click.option(
    "--ack-on-pull",
    is_flag=True,
    hidden=True,  # a benchmark's baseline (benchmarks/bench_pipeline.py), never a way to run
    help="At-most-once: acknowledge on pull, as Beam's DirectRunner reader does (loses what a crash held).",
)
@click.option("--dry-run", is_flag=True, help="DataflowRunner: build and translate the job, submit nothing.")
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
def run_pipeline(**options):
    """Run the streaming pipeline: Pub/Sub -> validate -> dedup -> files + BigQuery, dead letters beside.

    Any further --flag is handed to Beam (e.g. --max_num_workers 5 for Dataflow).

    \b
    workbench run-pipeline                                  # local stack, until Ctrl-C
    workbench run-pipeline --stop-when-idle 10s --output-root ./output
    workbench run-pipeline --runner DataflowRunner --project P --region europe-west1 \\
        --temp-location gs://B/tmp --output-root gs://B/output
    """
    from workbench.pipeline_run.stream_run import StreamSettings, run_stream

    exit_with(run_stream(StreamSettings(**options)))
