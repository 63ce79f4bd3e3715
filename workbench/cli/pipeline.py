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

import logging
import os
import signal
import sys

import click

from eventmodel.resources import DATASET, DEAD_LETTER_TOPIC, DEFAULT_PROJECT, SUBSCRIPTION
from workbench import terminal
from workbench.cli.params import DURATION
from workbench.errors import WorkbenchError
from workbench.localstack.stack import BIGQUERY_ENV, PUBSUB_ENV, STORAGE_ENV, local_endpoints
from workbench.output_root import output_root_option
from workbench.pipeline_run.source_health import DEFAULT_SOURCE_RETRY_S


def _dashed(text: str) -> str:
    """Beam's flag names, as this command spells them."""
    for flag in ("--temp_location", "--output_root"):
        text = text.replace(flag, flag.replace("_", "-"))
    return text


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--runner",
    type=click.Choice(["DirectRunner", "DataflowRunner"]),
    default="DirectRunner",
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
def run_pipeline(
    runner,
    project,
    region,
    temp_location,
    subscription,
    dead_letter_topic,
    output_root,
    dataset,
    emulator,
    bigquery_emulator,
    stop_when_idle,
    pull_size,
    flush_seconds,
    dedup_ttl,
    sink_retry_seconds,
    source_retry_seconds,
    max_outstanding,
    ack_on_pull,
    dry_run,
    beam_args,
):
    """Run the streaming pipeline: Pub/Sub -> validate -> dedup -> files + BigQuery, dead letters beside.

    Any further --flag is handed to Beam (e.g. --max_num_workers 5 for Dataflow).

    \b
    workbench run-pipeline                                  # local stack, until Ctrl-C
    workbench run-pipeline --stop-when-idle 10s --output-root ./output
    workbench run-pipeline --runner DataflowRunner --project P --region europe-west1 \\
        --temp-location gs://B/tmp --output-root gs://B/output
    """
    from workbench.beam_redirect.settings import OWN_PIPELINE_ENV

    # Before Beam is imported: under `workbench exec` (e.g. `workbench check --pipeline "workbench run-pipeline"`) the
    # redirect stands aside, since this pipeline has the same local glue built in (workbench.pipeline_run).
    os.environ[OWN_PIPELINE_ENV] = "1"
    from eventmodel.resources import resolve_project
    from workbench.pipeline_run.stream_launcher import LocalSettings, refuse_dropped_dead_letters, run

    if stop_when_idle is not None and stop_when_idle <= 0:
        raise click.BadParameter("must be more than 0 seconds", param_hint="--stop-when-idle")
    for flag, value in (("--dedup-ttl", dedup_ttl), ("--flush-seconds", flush_seconds)):
        if value <= 0:  # 0 would divide by zero in the dedup step's buckets, or never flush
            raise click.BadParameter("must be more than 0 seconds", param_hint=flag)
    if pull_size < 1 or pull_size > 1000:
        raise click.BadParameter("must be between 1 and 1000 (Pub/Sub's limit per pull)", param_hint="--pull-size")
    refuse_dropped_dead_letters(dataset, dead_letter_topic, "--dead-letter-topic")
    project = resolve_project(project, DEFAULT_PROJECT)
    args = [
        "--runner", runner, "--project", project, "--subscription", subscription,
        "--dead_letter_topic", dead_letter_topic, "--output_root", output_root, "--dataset", dataset,
        "--file_flush_seconds", f"{flush_seconds:f}",
        "--dedup_ttl_seconds", f"{dedup_ttl:f}", "--sink_retry_seconds", f"{sink_retry_seconds:f}",
    ]  # fmt: skip
    if runner == "DataflowRunner":
        for flag, value in (("--region", region), ("--temp_location", temp_location)):
            if value:
                args += [flag, value]
        if dry_run:
            args.append("--dry_run=True")
        args += list(beam_args)
        try:
            result = run(args)
        except WorkbenchError as exc:  # the library names Beam's flags; this command spells them with dashes
            raise WorkbenchError(_dashed(exc.message), _dashed(exc.fix or "")) from None
        terminal.success(f"Dataflow: {result.job or result.state}")
        return

    local = local_endpoints(emulator, bigquery_emulator)
    if not local["pubsub"]:
        raise WorkbenchError(
            "no Pub/Sub emulator is known: the local run reads from the local stack",
            "start it with `workbench up` (or pass --emulator HOST:PORT, or set PUBSUB_EMULATOR_HOST)",
        )
    if dataset and not local["bigquery"]:
        raise WorkbenchError(
            "no BigQuery emulator is known for --dataset " + dataset,
            "start the local stack with BigQuery (`workbench up`), pass --bigquery-emulator, or --dataset ''",
        )
    if output_root.startswith("gs://") and not local["storage"]:
        raise WorkbenchError(
            f"--output-root {output_root} needs the GCS emulator in local mode",
            "start it with `workbench up --gcs` (or write to a local directory)",
        )
    os.environ[PUBSUB_ENV] = local["pubsub"]
    os.environ.setdefault("NO_GCE_CHECK", "true")
    if local["storage"]:
        os.environ[STORAGE_ENV] = local["storage"]
    if dataset:
        args += ["--bigquery_emulator_host", local["bigquery"]]
    from workbench.pipeline_run.subscription_lock import claim_subscription, dedup_journal

    # The DirectRunner's state dies with the process: the dedup step's memory survives a restart in this file.
    args += ["--dedup_journal", str(dedup_journal(project, subscription))]
    args += list(beam_args)
    # Beam's own warnings (coders, unparsed flags) would scroll the live view away; errors still show.
    logging.getLogger("apache_beam").setLevel(logging.ERROR)

    from workbench.pipeline_view import PipelineView, output_may_fail, summary

    settings = LocalSettings(
        stop_when_idle=stop_when_idle,
        pull_size=pull_size,
        max_outstanding=max_outstanding,
        ack_on_pull=ack_on_pull,
        source_retry_seconds=source_retry_seconds,
    )
    source = f"projects/{project}/subscriptions/{subscription} (emulator {local['pubsub']})"
    sinks = output_root + (f", BigQuery {project}.{dataset}" if dataset else "")
    # Held while the pipeline runs: a second one on this subscription and home is refused, naming this one.
    with claim_subscription(project, subscription):
        terminal.info("running the pipeline on the DirectRunner; Ctrl-C (or SIGTERM, SIGHUP) drains and stops")
        with PipelineView(source, sinks) as view:
            result = run(args, settings, on_progress=view.update)
    with output_may_fail():
        for table in summary(result.progress):
            terminal.console.print(table)
    if settings.control.source_lost:
        raise source_lost_error(local["pubsub"], settings.control.source_lost, source_retry_seconds,
                                settings.control.unacked_at_exit)  # fmt: skip
    unacked = settings.control.unacked_at_exit
    if result.stop_signal is not None and (result.forced or result.state == "DONE"):
        with output_may_fail():
            terminal.warning(stopped_by_signal(result.stop_signal, result.forced, unacked))
        sys.exit(128 + result.stop_signal)  # the shell's convention: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP
    reason = settings.control.stop_reason or result.state
    if result.state != "DONE":
        raise WorkbenchError(
            f"the pipeline stopped before its drain finished ({result.state}): buffered events may not be written",
            "let the drain finish (one Ctrl-C, then wait); the dead-letter topic and the sinks show what arrived",
        )
    terminal.success(f"pipeline stopped ({reason}); {_written(unacked)}")


def _written(unacked: int) -> str:
    if not unacked:
        return "everything read was written and acknowledged"
    return (
        f"{unacked:,} messages read were not committed by every sink, so not acknowledged: Pub/Sub delivers "
        "them again to the next run"
    )


def stopped_by_signal(signum: int, forced: bool, unacked: int) -> str:
    """The last line of a run a signal stopped: drained, or stopped at once by a second signal, and what became of
    what it read."""
    name = signal.Signals(signum).name
    if not forced:
        return f"interrupted ({name}): drained, {_written(unacked)}"
    kept = (
        f"{_written(unacked)}; what was written of them shows up as redelivered, not as missing"
        if unacked
        else "everything read was written and acknowledged"
    )
    return f"stopped at once ({name}, then a second signal), without draining: {kept}"


def source_lost_error(address: str, detail: str, limit: float, unacked: int) -> WorkbenchError:
    """The run ended because Pub/Sub stayed unreachable: what is gone, where, what became of the unacked messages."""
    error = detail.split(";", 1)[0]  # gRPC repeats itself after the first clause
    kept = (
        f"{unacked:,} messages it read were not acknowledged (an ack is sent only once every sink committed): "
        "Pub/Sub delivers them again to the next run if it kept them (real Pub/Sub, an emulator with --data-dir), "
        "and nothing acknowledged is missing"
        if unacked
        else "everything it read was written and acknowledged"
    )
    return WorkbenchError(
        f"the Pub/Sub emulator at {address} did not answer for {limit:g} s ({error}), so the pipeline stopped; {kept}",
        "start the stack again (`workbench up`) and run `workbench run-pipeline` again; to ride out longer "
        "outages, pass a larger --source-retry-seconds",
    )
