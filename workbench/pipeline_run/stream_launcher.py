"""Run the pipeline: locally on the DirectRunner until idle or stopped, then drained; or submitted to Dataflow.

    settings = LocalSettings(stop_when_idle=30)
    summary = run(["--project", "workbench-local", "--output_root", "./output"], settings, on_progress=print)

Local (DirectRunner) runs go through workbench.pipeline_run.direct_runner's reader: they end when nothing arrived for
`stop_when_idle` seconds or when `settings.control.request_stop()` is called (the first Ctrl-C, SIGTERM or SIGHUP),
and in both cases drain: buffered files are written and rows flushed before `run` returns. A second of those signals
cancels the run at once: what was read and not committed by every sink stays unacknowledged, for Pub/Sub to deliver
again (`RunSummary.stop_signal` and `.forced` say which stop it was). They also end when Pub/Sub stays unreachable for
`source_retry_seconds` (`settings.control.source_lost` then holds its last error): what is buffered is written
within SOURCE_LOST_DRAIN_S, and what was read stays unacknowledged, for Pub/Sub to deliver again.
Dataflow runs return once the job is submitted (or, with --dry_run=True, once the job is built and translated:
Beam 2.77's DataflowRunner returns before it stages anything or calls the Dataflow API, docs/pipeline.md says what
that proves).

Problems a user can fix (preflight, a wrong runner, Dataflow settings missing) raise WorkbenchError.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TestOptions

from endpoints.storage import use_anonymous_beam_credentials
from pipeline.options import EventPipelineOptions
from pipeline.runners import DATAFLOW, DIRECT, RUNNERS
from pipeline.stream import build_pipeline, make_options
from workbench.errors import WorkbenchError
from workbench.pipeline_run.direct_runner import (
    DEFAULT_MAX_OUTSTANDING,
    DEFAULT_PULL_SIZE,
    ReadControl,
    local_direct_runner,
)
from workbench.pipeline_run.preflight import check_dataflow, preflight
from workbench.pipeline_run.progress import Progress, progress_of
from workbench.pipeline_run.source_health import DEFAULT_SOURCE_RETRY_S, gone

# After a stop, how long the drain may take before the run is cancelled, beyond the sinks' own retry limit
# (a drain waits for a sink that is down). Cancelling loses nothing: what was not committed is not acked.
DRAIN_MARGIN_S = 120.0
# The stops a user sends: Ctrl-C, `kill`/`timeout`/systemd/a CI cancel (SIGTERM), a closed terminal (SIGHUP).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# After Pub/Sub is given up, how long the drain may take: its acks cannot be sent anyway (what it writes is written
# again by the next run), and a stack that is down has likely taken the sinks with it.
SOURCE_LOST_DRAIN_S = 30.0


@dataclass
class LocalSettings:
    stop_when_idle: float | None = None
    pull_size: int = DEFAULT_PULL_SIZE
    max_outstanding: int = DEFAULT_MAX_OUTSTANDING
    ack_on_pull: bool = False  # at-most-once baseline for benchmarks (direct_runner.ReadControl)
    source_retry_seconds: float | None = DEFAULT_SOURCE_RETRY_S  # Pub/Sub unreachable this long ends the run
    poll_seconds: float = 0.5
    control: ReadControl = field(default_factory=ReadControl)


@dataclass
class RunSummary:
    runner: str
    state: str
    progress: Progress | None
    job: str | None = None  # Dataflow job id or dry-run note
    translated: Any = None  # with --dry_run=True: the Dataflow Job Beam built (job.proto, job.proto_pipeline)
    stop_signal: int | None = None  # the first stop signal (SIGINT, SIGTERM, SIGHUP) of a local run, if one came
    forced: bool = False  # a second signal cancelled the drain


# --------------------------------------------------------------------------------------------------- run


def refuse_dropped_dead_letters(dataset: str | None, dead_letter_topic: str | None, topic_flag: str) -> None:
    """Neither a dead_letters table nor a dead-letter topic: every rejected message would be acknowledged and lost
    without a word. Refused, in the backfill's words (workbench/pipeline_run/backfill_run.py), for both runners."""
    if not dataset and not dead_letter_topic:
        raise WorkbenchError(
            f"--dataset '' and {topic_flag} '' leave the dead letters nowhere: a rejected message would be lost",
            f"keep the dead_letters table (a --dataset) or a {topic_flag}",
        )


def run(
    argv: Sequence[str],
    settings: LocalSettings | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    check: bool = True,
) -> RunSummary:
    """Build and run the pipeline. DirectRunner: until idle or stopped, then drain. DataflowRunner: submit."""
    options = make_options(argv)
    app = options.view_as(EventPipelineOptions)
    refuse_dropped_dead_letters(app.dataset, app.dead_letter_topic, "--dead_letter_topic")
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = DIRECT  # never let Beam look for Prism
    if standard.runner not in RUNNERS:
        raise WorkbenchError(f"runner {standard.runner!r} is not supported", f"use one of {', '.join(RUNNERS)}")
    if standard.runner == DATAFLOW:
        return submit(options)
    settings = settings or LocalSettings()
    if os.environ.get("PUBSUB_EMULATOR_HOST") or options.view_as(EventPipelineOptions).bigquery_emulator_host:
        use_anonymous_beam_credentials()
    if check:
        preflight(options)
    control = settings.control
    control.pull_size = settings.pull_size
    control.max_outstanding = settings.max_outstanding
    control.ack_on_pull = settings.ack_on_pull
    control.idle_seconds = settings.stop_when_idle
    control.source_retry_seconds = settings.source_retry_seconds
    control.started_at = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options)
    stops = StopSignals(control)
    # The handlers stay in place until the last acks are sent (local_direct_runner's exit): a signal that comes
    # then must not kill the process with written messages still unacknowledged.
    with stops.installed(), local_direct_runner(control):
        result = pipeline.run()
        drain_timeout = options.view_as(EventPipelineOptions).sink_retry_seconds + DRAIN_MARGIN_S
        return _wait(result, control, settings, on_progress, drain_timeout, stops)


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP during a local run: the first asks the reader to stop, which drains; any later one
    asks for a cancel.

    Signals are taken by handlers, never as KeyboardInterrupt: one that lands inside Thread.join() can leave the
    thread looking finished while it still runs, which would end the wait before the drain. SIGTERM and SIGHUP get
    the same handler as Ctrl-C because their default action kills the process with nothing written: what the file
    buffers held would be read and written again by the next run.
    """

    def __init__(self, control: ReadControl) -> None:
        self.control = control
        self.first: int | None = None
        self.force = threading.Event()

    def __call__(self, signum: int, frame: object) -> None:
        if self.first is None:
            self.first = signum
            self.control.request_stop(stop_reason(signum))
        else:
            self.force.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignals]:
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():  # Python takes signals there only
            previous = {signum: signal.signal(signum, self) for signum in STOP_SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _wait(
    result: Any, control: ReadControl, settings: LocalSettings, on_progress, drain_timeout: float, stops: StopSignals
) -> RunSummary:
    """Wait for the pipeline while reporting progress, on an Event set by a helper thread (see StopSignals); cancel
    it on a second signal or when the drain is overdue."""
    started = control.started_at
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def wait() -> None:
        try:
            outcome["state"] = result.wait_until_finish()
        except BaseException as exc:  # surfaced in the caller's thread below
            outcome["error"] = exc
        finally:
            done.set()

    waiter = threading.Thread(target=wait, name="pipeline-wait", daemon=True)
    waiter.start()
    stop_at: float | None = None
    lost_at: float | None = None
    while not done.wait(settings.poll_seconds):
        on_progress = _report(on_progress, result, started, control)
        if _give_up_on_a_lost_source(control):
            lost_at = time.monotonic()
        if control.stop.is_set() and stop_at is None:
            stop_at = time.monotonic()
        if stops.force.is_set() or _drain_overdue(stop_at, drain_timeout, lost_at):
            _cancel(result)
            break
    done.wait(5)
    if "error" in outcome:
        raise outcome["error"]
    final = progress_of(result, started, control)
    _report(on_progress, result, started, control, final)
    state = str(outcome.get("state", "CANCELLED"))
    return RunSummary(DIRECT, state, final, stop_signal=stops.first, forced=stops.force.is_set())


def stop_reason(signum: int) -> str:
    """What the live view and the end of the run say about a stop signal (the run's `stop_reason`)."""
    if signum == signal.SIGINT:
        return "interrupted (Ctrl-C): draining; press Ctrl-C again to stop at once"
    return f"interrupted ({signal.Signals(signum).name}): draining; a second SIGTERM, SIGHUP or Ctrl-C stops at once"


def _report(on_progress, result: Any, started: float, control: ReadControl, progress: Progress | None = None):
    """Show progress; a view that cannot write (its terminal closed, after SIGHUP) is dropped, never the drain."""
    if on_progress is None:
        return None
    try:
        on_progress(progress or progress_of(result, started, control))
    except OSError:
        return None
    return on_progress


def _cancel(result: Any) -> None:
    """Cancel without waiting for it: the DirectRunner's cancel joins its worker threads, and a worker inside a
    sink's retries (a sink that is down) would hold the cancel, and the exit, for up to --sink-retry-seconds.
    The workers are daemon threads: they end with the process. What they held is not acknowledged."""
    threading.Thread(target=result.cancel, name="pipeline-cancel", daemon=True).start()


def _give_up_on_a_lost_source(control: ReadControl) -> bool:
    """Stop the run once Pub/Sub has not answered for `source_retry_seconds`; True when that happens now.

    Checked here, in the waiting thread, because the reader may sit behind flow control while only the acks fail.
    """
    down = control.source.down_for()
    if control.source_lost is not None or not gone(down, control.source_retry_seconds):
        return False
    control.source_lost = control.source.last_error or "no answer"
    control.request_stop(f"Pub/Sub unreachable for {down:.0f} s")
    return True


def _drain_overdue(stop_at: float | None, drain_timeout: float, lost_at: float | None) -> bool:
    now = time.monotonic()
    if lost_at is not None and now - lost_at > SOURCE_LOST_DRAIN_S:
        return True
    return stop_at is not None and now - stop_at > drain_timeout


def submit(
    options: PipelineOptions, build: Callable[[beam.Pipeline, PipelineOptions], Any] = build_pipeline
) -> RunSummary:
    """Check what Dataflow would refuse, lay the job out with `build` (the stream's, or the backfill's) and submit
    it; with --dry_run=True only translate it."""
    check_dataflow(options)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options)
    result = pipeline.run()
    translated = getattr(result, "job", None)
    if options.view_as(TestOptions).dry_run:
        names = len(translated.proto_pipeline.components.transforms) if translated is not None else 0
        return RunSummary(DATAFLOW, "DRY_RUN", None, f"dry run: {names} transforms translated", translated)
    return RunSummary(DATAFLOW, str(result.state), None, result.job_id())
