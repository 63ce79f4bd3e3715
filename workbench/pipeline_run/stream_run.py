"""What `workbench run-pipeline` does once its options are read: check them, set local mode up
(workbench.pipeline_run.local_mode), run the stream launcher with the live view, and say how the run ended.

    status = run_stream(StreamSettings(stop_when_idle=10, output_root="./output"))  # the exit status

Exit statuses (the command's): 0 stopped when idle with everything written; 128 + the first signal when a signal
stopped it; problems a user can fix raise WorkbenchError (exit 2), and values the command line got wrong raise
click's BadParameter (exit 2), in the command's words.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from eventmodel.resources import DATASET, DEAD_LETTER_TOPIC, DEFAULT_PROJECT, SUBSCRIPTION
from pipeline.runners import DATAFLOW, DIRECT
from workbench import terminal
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from endpoints import Endpoints
from workbench.pipeline_run.source_health import DEFAULT_SOURCE_RETRY_S


@dataclass(frozen=True)
class StreamSettings:
    """The options of `workbench run-pipeline`, as the command read them (durations in seconds)."""

    runner: str = DIRECT
    project: str | None = None
    region: str | None = None
    temp_location: str | None = None
    subscription: str = SUBSCRIPTION
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    output_root: str = "./output"
    dataset: str = DATASET
    emulator: str | None = None
    bigquery_emulator: str | None = None
    stop_when_idle: float | None = None
    pull_size: int = 1000
    flush_seconds: float = 5.0
    dedup_ttl: float = 600.0
    sink_retry_seconds: float = 300.0
    source_retry_seconds: float = DEFAULT_SOURCE_RETRY_S
    max_outstanding: int = 20_000
    ack_on_pull: bool = False
    dry_run: bool = False
    beam_args: tuple[str, ...] = ()


def run_stream(settings: StreamSettings) -> int:
    """Run the streaming pipeline as `settings` say; the exit status."""
    from workbench.beam_redirect.settings import OWN_PIPELINE_ENV

    # Before Beam is imported: under `workbench exec` (e.g. `workbench check --pipeline "workbench run-pipeline"`) the
    # redirect stands aside, since this pipeline has the same local glue built in (workbench.pipeline_run).
    os.environ[OWN_PIPELINE_ENV] = "1"
    from eventmodel.resources import resolve_project
    from workbench.pipeline_run.stream_launcher import refuse_dropped_dead_letters

    check_values(settings)
    refuse_dropped_dead_letters(settings.dataset, settings.dead_letter_topic, "--dead-letter-topic")
    project = resolve_project(settings.project, DEFAULT_PROJECT)
    s = settings
    args = [
        "--runner", s.runner, "--project", project, "--subscription", s.subscription,
        "--dead_letter_topic", s.dead_letter_topic, "--output_root", s.output_root, "--dataset", s.dataset,
        "--file_flush_seconds", f"{s.flush_seconds:f}",
        "--dedup_ttl_seconds", f"{s.dedup_ttl:f}", "--sink_retry_seconds", f"{s.sink_retry_seconds:f}",
    ]  # fmt: skip
    if s.runner == DATAFLOW:
        return _on_dataflow(s, args)
    return _here(s, project, args)


def check_values(s: StreamSettings) -> None:
    """Refuse, in the command's words, values no run can use."""
    if s.stop_when_idle is not None and s.stop_when_idle <= 0:
        raise click.BadParameter("must be more than 0 seconds", param_hint="--stop-when-idle")
    for flag, value in (("--dedup-ttl", s.dedup_ttl), ("--flush-seconds", s.flush_seconds)):
        if value <= 0:  # 0 would divide by zero in the dedup step's buckets, or never flush
            raise click.BadParameter("must be more than 0 seconds", param_hint=flag)
    if s.pull_size < 1 or s.pull_size > 1000:
        raise click.BadParameter("must be between 1 and 1000 (Pub/Sub's limit per pull)", param_hint="--pull-size")


def _on_dataflow(s: StreamSettings, args: list[str]) -> int:
    from workbench.pipeline_run.stream_launcher import run

    for flag, value in (("--region", s.region), ("--temp_location", s.temp_location)):
        if value:
            args += [flag, value]
    if s.dry_run:
        args.append("--dry_run=True")
    args += list(s.beam_args)
    try:
        result = run(args)
    except WorkbenchError as exc:  # the library names Beam's flags; this command spells them with dashes
        raise WorkbenchError(_dashed(exc.message), _dashed(exc.fix or "")) from None
    terminal.success(f"Dataflow: {result.job or result.state}")
    return 0


def local_stream_endpoints(s: StreamSettings) -> Endpoints:
    """The emulators a local run uses, each refused with the fix when it is needed and unknown."""
    from workbench.localstack.stack import local_endpoints

    local = local_endpoints(s.emulator, s.bigquery_emulator)
    if not local.pubsub:
        raise WorkbenchError(
            "no Pub/Sub emulator is known: the local run reads from the local stack",
            "start it with `workbench up` (or pass --emulator HOST:PORT, or set PUBSUB_EMULATOR_HOST)",
        )
    if s.dataset and not local.bigquery:
        raise WorkbenchError(
            "no BigQuery emulator is known for --dataset " + s.dataset,
            "start the local stack with BigQuery (`workbench up`), pass --bigquery-emulator, or --dataset ''",
        )
    return local


def _here(s: StreamSettings, project: str, args: list[str]) -> int:
    from workbench.pipeline_run.local_mode import enter_local_mode
    from workbench.pipeline_run.stream_launcher import LocalSettings, run
    from workbench.pipeline_run.subscription_lock import claim_subscription, dedup_journal
    from workbench.pipeline_view import PipelineView, output_may_fail, summary

    local = local_stream_endpoints(s)
    enter_local_mode(local, s.output_root)
    if s.dataset:
        args += ["--bigquery_emulator_host", local.bigquery]  # type: ignore[list-item]
    # The DirectRunner's state dies with the process: the dedup step's memory survives a restart in this file.
    args += ["--dedup_journal", str(dedup_journal(project, s.subscription))]
    args += list(s.beam_args)
    settings = LocalSettings(stop_when_idle=s.stop_when_idle, pull_size=s.pull_size,
                             max_outstanding=s.max_outstanding, ack_on_pull=s.ack_on_pull,
                             source_retry_seconds=s.source_retry_seconds)  # fmt: skip
    source = f"projects/{project}/subscriptions/{s.subscription} (emulator {local.pubsub})"
    sinks = s.output_root + (f", BigQuery {project}.{s.dataset}" if s.dataset else "")
    # Held while the pipeline runs: a second one on this subscription and home is refused, naming this one.
    with claim_subscription(project, s.subscription):
        terminal.info("running the pipeline on the DirectRunner; Ctrl-C (or SIGTERM, SIGHUP) drains and stops")
        with PipelineView(source, sinks) as view:
            result = run(args, settings, on_progress=view.update)
    with output_may_fail():
        for table in summary(result.progress):
            terminal.console.print(table)
    control = settings.control
    if control.source_lost:
        raise source_lost_error(local.pubsub, control.source_lost, s.source_retry_seconds,  # type: ignore[arg-type]
                                control.unacked_at_exit)  # fmt: skip
    unacked = control.unacked_at_exit
    if result.stop_signal is not None and (result.forced or result.state == "DONE"):
        with output_may_fail():
            terminal.warning(stopped_by_signal(result.stop_signal, result.forced, unacked))
        return 128 + result.stop_signal  # the shell's convention: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP
    reason = control.stop_reason or result.state
    if result.state != "DONE":
        raise WorkbenchError(
            f"the pipeline stopped before its drain finished ({result.state}): buffered events may not be written",
            "let the drain finish (one Ctrl-C, then wait); the dead-letter topic and the sinks show what arrived",
        )
    terminal.success(f"pipeline stopped ({reason}); {_written(unacked)}")
    return 0


def _dashed(text: str) -> str:
    """Beam's flag names, as this command spells them."""
    for flag in ("--temp_location", "--output_root"):
        text = text.replace(flag, flag.replace("_", "-"))
    return text


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
