"""A user's pipeline run under `workbench exec`: the checks before it starts, the workbench's local Pub/Sub reader
while it runs, and the drain and acknowledgements at its end.

Two private hooks, each pinned by tests/workbench/exec/test_beam_redirect_hooks.py against Beam 2.77:
- `Pipeline.run` (the outermost call; Beam re-enters it for its runner-API round trip): refuses a runner that
  cannot run here, reports Dataflow-only options, and with the fast reader gives a streaming pipeline that reads
  Pub/Sub the BundleBasedDirectRunner directly. Beam's DirectRunner would first try Prism, which it downloads
  from GitHub (offline: a failed attempt, then the same fallback), and the workbench's reader replaces a part of the
  BundleBasedDirectRunner only.
- `BundleBasedDirectRunner.run_pipeline`: runs the pipeline inside workbench.pipeline_run.direct_runner's
  local_direct_runner (the reader run-pipeline uses) and wraps the result's wait_until_finish, where the run is
  drained, acknowledged and closed.

Delivery: a user's sinks do not report their commits (the workbench's own do, through pipeline.delivery), so the
reader holds every message it read unacknowledged, its lease extended, until the run has drained: the pipeline
finished (DONE) after an idle stop or a first stop signal, so every sink has written what it was given. Only then
is all of it acknowledged. A run that fails, is cancelled (a second signal) or is killed acknowledges nothing: Pub/Sub
delivers it all again to the next run (at-least-once; what the sinks had written is written again). One run reads
at most `max_unacked` messages, then drains like an idle stop.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from typing import Any

from workbench.beam_redirect import limits
from workbench.beam_redirect.settings import FAST, ExecSettings

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_S = 0.5
# After a stop, how long the drain may take before the run is cancelled (nothing is then acknowledged): covers a
# FILE_LOADS load job and BigQuery's insert retries.
DRAIN_LIMIT_S = 300.0

_local = threading.local()


def say(message: str) -> None:
    sys.stderr.write(limits.PREFIX + message + "\n")
    sys.stderr.flush()


def reads_pubsub(pipeline: Any) -> bool:
    """Whether the pipeline has a ReadFromPubSub (the transform the local reader serves)."""
    from apache_beam.io.gcp.pubsub import ReadFromPubSub
    from apache_beam.pipeline import PipelineVisitor

    class Finder(PipelineVisitor):
        found = False

        def enter_composite_transform(self, applied) -> None:
            self.found = self.found or isinstance(applied.transform, ReadFromPubSub)

        def visit_transform(self, applied) -> None:
            self.found = self.found or isinstance(applied.transform, ReadFromPubSub)

    finder = Finder()
    pipeline.visit(finder)
    return finder.found


def check_before_run(pipeline: Any, settings: ExecSettings) -> None:
    """Refuse what cannot run here; report what only Dataflow reads; pick the runner the local reader serves."""
    from apache_beam.options.pipeline_options import StandardOptions, TestOptions
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

    options = pipeline.options
    named = options.view_as(StandardOptions).runner
    runner_name = named if isinstance(named, str) else type(pipeline.runner).__name__
    problem = limits.runner_problem(runner_name, bool(options.view_as(TestOptions).dry_run))
    if problem:
        limits.refuse(problem)
    ignored = limits.dataflow_only_options(options.get_all_options(drop_default=True, retain_unknown_options=False))
    if ignored and runner_name not in limits.DATAFLOW_RUNNERS:
        say(limits.dataflow_only_message(ignored))
    if settings.read == FAST and type(pipeline.runner).__name__ == "SwitchingDirectRunner" and reads_pubsub(pipeline):
        pipeline.runner = BundleBasedDirectRunner()


class FastRead:
    """One pipeline run on the workbench's reader: signals, the drain, the acknowledgements."""

    def __init__(self, settings: ExecSettings, direct_runner: Any) -> None:
        self.dr = direct_runner
        self.control = direct_runner.ReadControl(
            idle_seconds=settings.idle_seconds,
            max_outstanding=settings.max_unacked,
            max_outstanding_bytes=1 << 50,  # the count bounds a run; bytes stay in Pub/Sub, not here
            ack_after_run=True,
            publish_time_watermark=True,
        )
        self.exit = contextlib.ExitStack()
        self.first_signal: int | None = None
        self.force = threading.Event()
        self.finished = False
        self.state: Any = None
        self.stop_at: float | None = None

    # ------------------------------------------------------------------------------------------------ start

    def start(self, run) -> Any:
        self.exit.enter_context(self.dr.local_direct_runner(self.control))
        self._install_signals()
        try:
            result = run()
        except BaseException:
            self.exit.close()
            raise
        self.result = result
        self.original_wait = result.wait_until_finish
        result.wait_until_finish = self.wait_until_finish
        return result

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python delivers signals to the main thread only
        previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        self.exit.callback(restore)

    def _on_signal(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self.first_signal is None:
            self.first_signal = signum
            self.control.request_stop(f"interrupted ({name})")
            say(f"{name}: draining (buffered writes finish, then everything read is acknowledged); "
                "send it again to stop at once")  # fmt: skip
        elif not self.force.is_set():
            self.force.set()
            say(f"{name} again: cancelling; nothing of this run is acknowledged, Pub/Sub delivers it again")

    # ------------------------------------------------------------------------------------------------- wait

    def wait_until_finish(self, duration: float | None = None) -> Any:
        if self.finished:
            return self.state
        if duration is not None:  # the caller polls: no drain bookkeeping unless the run ended meanwhile
            state = self.original_wait(duration)
            if self._terminal(state):
                self._finish(state, None)
            return state
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def wait() -> None:
            try:
                outcome["state"] = self.original_wait()
            except BaseException as exc:  # raised again in the caller's thread, below
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=wait, name="exec-pipeline-wait", daemon=True).start()
        while not done.wait(POLL_S):
            self._give_up_on_a_lost_source()
            if self.control.stop.is_set() and self.stop_at is None:
                self.stop_at = time.monotonic()
            overdue = self.stop_at is not None and time.monotonic() - self.stop_at > DRAIN_LIMIT_S
            if self.force.is_set() or overdue:
                if overdue:
                    say(f"the drain took more than {DRAIN_LIMIT_S:g} s: cancelling")
                # Not waited for: a worker inside a sink's retries would hold the cancel (run.py's _cancel).
                threading.Thread(target=self.result.cancel, name="exec-pipeline-cancel", daemon=True).start()
                break
        done.wait(5)
        from apache_beam.runners.runner import PipelineState

        state = outcome.get("state", PipelineState.CANCELLED)
        self._finish(state, outcome.get("error"))
        if "error" in outcome:
            raise outcome["error"]
        if self.force.is_set() and self.first_signal is not None:
            # Cancelled by a second signal: the process ends as that signal would have ended it (what the user's
            # script would do after the run is skipped: the run did not finish).
            raise SystemExit(128 + self.first_signal)
        return state

    @staticmethod
    def _terminal(state: Any) -> bool:
        from apache_beam.runners.runner import PipelineState

        return PipelineState.is_terminal(state)

    def _give_up_on_a_lost_source(self) -> None:
        from workbench.pipeline_run.source_health import gone

        control = self.control
        down = control.source.down_for()
        if control.source_lost is None and gone(down, control.source_retry_seconds):
            control.source_lost = control.source.last_error or "no answer"
            control.request_stop(f"Pub/Sub unreachable for {down:.0f} s")

    def _finish(self, state: Any, error: BaseException | None) -> None:
        from apache_beam.runners.runner import PipelineState

        self.finished, self.state = True, state
        control = self.control
        drained = state == PipelineState.DONE and error is None and not self.force.is_set()
        if drained and control.source_lost is None:
            self.dr.acknowledge_run(control)
        self.exit.close()  # the reader's exit: the ledger sends the last acks and closes
        acked = control.ledger.stats.acked if control.ledger is not None else 0
        left = control.unacked_at_exit
        say(f"read {control.messages:,} messages ({control.stop_reason or 'the pipeline ended'}); "
            f"{acked:,} acknowledged" + (f", {left:,} left for Pub/Sub to deliver again" if left else ""))  # fmt: skip


def install(settings: ExecSettings, direct_runner: Any) -> None:
    """Hook Pipeline.run and BundleBasedDirectRunner.run_pipeline (idempotent)."""
    from apache_beam.pipeline import Pipeline
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

    if getattr(Pipeline.run, "_workbench_exec", False):
        return
    original_run = Pipeline.run
    original_run_pipeline = BundleBasedDirectRunner.run_pipeline

    def run(self, test_runner_api="AUTO"):
        if getattr(_local, "running", False):  # Beam's own re-entry (its runner-API round trip)
            return original_run(self, test_runner_api)
        _local.running = True
        try:
            check_before_run(self, settings)
            return original_run(self, test_runner_api)
        finally:
            _local.running = False

    def run_pipeline(self, pipeline, options):
        if settings.read != FAST or not reads_pubsub(pipeline):
            return original_run_pipeline(self, pipeline, options)
        return FastRead(settings, direct_runner).start(lambda: original_run_pipeline(self, pipeline, options))

    run._workbench_exec = True
    Pipeline.run = run
    BundleBasedDirectRunner.run_pipeline = run_pipeline
