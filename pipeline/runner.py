"""Runner glue: checks that fail fast, a local run that drains cleanly, and progress read from Beam's metrics.

    settings = LocalSettings(stop_when_idle=30)
    summary = run(["--project", "workbench-local", "--output_root", "./output"], settings, on_progress=print)

Local (DirectRunner) runs go through pipeline.local's reader: they end when nothing arrived for
`stop_when_idle` seconds or when `settings.control.request_stop()` is called (Ctrl-C), and in both cases drain:
buffered files are written and rows flushed before `run` returns. Dataflow runs return once the job is
submitted (or, with --dry_run=True, once the job is built and translated: Beam 2.77's DataflowRunner returns
before it stages anything or calls the Dataflow API, docs/pipeline.md says what that proves).

Preflight problems raise PreflightError(message, fix); the CLI shows them as they are.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions, TestOptions

from eventmodel import rows
from pipeline import metrics as M
from pipeline.local import (
    DEFAULT_MAX_OUTSTANDING,
    DEFAULT_PULL_SIZE,
    ReadControl,
    local_direct_runner,
    use_anonymous_credentials,
)
from pipeline.main import build_pipeline, make_options
from pipeline.options import EventPipelineOptions, resource_path

DIRECT = "DirectRunner"
DATAFLOW = "DataflowRunner"
RUNNERS = (DIRECT, DATAFLOW)
# After a stop, how long the drain may take before the run is cancelled, beyond the sinks' own retry limit
# (a drain waits for a sink that is down). Cancelling loses nothing: what was not committed is not acked.
DRAIN_MARGIN_S = 120.0


class PreflightError(Exception):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass
class LocalSettings:
    stop_when_idle: float | None = None
    pull_size: int = DEFAULT_PULL_SIZE
    max_outstanding: int = DEFAULT_MAX_OUTSTANDING
    ack_on_pull: bool = False  # at-most-once baseline for benchmarks (pipeline.local.ReadControl)
    poll_seconds: float = 0.5
    control: ReadControl = field(default_factory=ReadControl)


@dataclass
class Progress:
    """What the live view shows; counters are cumulative since the start."""

    elapsed: float
    read: int = 0
    valid: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    gcs_lines: int = 0
    gcs_files: int = 0
    bigquery_rows: int = 0  # event tables
    dead_letter_rows: int = 0  # the dead_letters table
    bigquery_failed: int = 0
    retries: dict[str, int] = field(default_factory=dict)  # sink -> backoff waits so far (Beam counters)
    unacked: int = 0  # read, not yet committed by every sink (local runs)
    acked: int = 0  # ack ids sent to Pub/Sub (local runs)
    troubles: dict[str, str] = field(default_factory=dict)  # sink -> what is failing right now (local runs)
    gcs_lag_ms: int | None = None
    bigquery_lag_ms: int | None = None
    idle_for: float = 0.0
    stopping: str | None = None
    per_reason: dict[str, int] = field(default_factory=dict)
    per_type: dict[str, int] = field(default_factory=dict)


@dataclass
class RunSummary:
    runner: str
    state: str
    progress: Progress | None
    job: str | None = None  # Dataflow job id or dry-run note
    translated: Any = None  # with --dry_run=True: the Dataflow Job Beam built (job.proto, job.proto_pipeline)


def progress_of(result: Any, started: float, control: ReadControl | None = None) -> Progress:
    """Current Progress from a (running or finished) pipeline result's metrics."""
    from apache_beam.metrics.metric import MetricsFilter

    progress = Progress(elapsed=time.monotonic() - started)
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(M.NAMESPACE))
    except Exception:  # metrics not available yet (or on this runner)
        return progress
    for counter in found["counters"]:
        name, value = counter.key.metric.name, _value(counter)
        if name == M.READ:
            progress.read += value
        elif name.startswith("valid_"):
            progress.valid += value
            progress.per_type[name.removeprefix("valid_")] = progress.per_type.get(name[6:], 0) + value
        elif name == M.DUPLICATES:
            progress.duplicates += value
        elif name == M.DEAD_LETTERS:
            progress.dead_lettered += value
        elif name.startswith(M.DEAD_LETTERS + "_"):
            reason = name.removeprefix(M.DEAD_LETTERS + "_")
            progress.per_reason[reason] = progress.per_reason.get(reason, 0) + value
        elif name == M.GCS_FILES:
            progress.gcs_files += value
        elif name.startswith(M.GCS_LINES + "_"):
            progress.gcs_lines += value
        elif name == M.bigquery_rows(rows.DEAD_LETTER_TABLE):
            progress.dead_letter_rows += value
        elif name.startswith(M.BIGQUERY_ROWS + "_"):
            progress.bigquery_rows += value
        elif name == M.BIGQUERY_FAILED:
            progress.bigquery_failed += value
        elif name in _RETRY_COUNTERS:
            sink = _RETRY_COUNTERS[name]
            progress.retries[sink] = progress.retries.get(sink, 0) + value
    for gauge in found["gauges"]:
        value = _value(gauge)
        if gauge.key.metric.name == M.GCS_LAG_MS:
            progress.gcs_lag_ms = value
        elif gauge.key.metric.name == M.BIGQUERY_LAG_MS:
            progress.bigquery_lag_ms = value
    if control is not None:
        progress.idle_for = control.idle_for()
        progress.stopping = control.stop_reason
        if control.ledger is not None:
            stats = control.ledger.snapshot()
            progress.unacked, progress.acked = stats.outstanding, stats.acked
            progress.troubles = stats.troubles
        if control.pull_error:
            progress.troubles = {**progress.troubles, "pubsub": control.pull_error}
    return progress


_RETRY_COUNTERS = {M.GCS_RETRIES: "gcs", M.BIGQUERY_RETRIES: "bigquery", M.DEAD_LETTER_RETRIES: "dead letters"}


# ------------------------------------------------------------------------------------------------ checks


def preflight(options: PipelineOptions) -> None:
    """Fail in seconds, with the fix, when the run could not work: resources missing, emulators down, root
    unwritable. Local checks only (real GCP resources are checked by Dataflow at submission)."""
    app = options.view_as(EventPipelineOptions)
    project = options.view_as(GoogleCloudOptions).project
    if not project:
        raise PreflightError("no project given", "pass --project (locally any id works, e.g. workbench-local)")
    try:
        subscription = resource_path("subscriptions", app.subscription, project)
    except ValueError as exc:
        raise PreflightError(str(exc), "pass --project or a full subscription path") from None
    emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
    if emulator:
        _check_pubsub(emulator, subscription, resource_path("topics", app.dead_letter_topic, project)
                      if app.dead_letter_topic else None)  # fmt: skip
    check_output_root(app.output_root)
    if app.dataset and app.bigquery_emulator_host:
        _check_bigquery(app.bigquery_emulator_host, app.bigquery_project or project, app.dataset)


def _check_pubsub(emulator: str, subscription: str, dead_letter_topic: str | None) -> None:
    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    host, _, port = emulator.rpartition(":")
    try:  # a closed port is known in milliseconds; the clients would retry UNAVAILABLE for most of a minute
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=3).close()
    except (OSError, ValueError) as exc:
        raise PreflightError(
            f"no Pub/Sub emulator answers at {emulator} ({exc})",
            "start the local stack with `workbench up`, or point PUBSUB_EMULATOR_HOST / --emulator at a running one",
        ) from None
    subscriber = pubsub_v1.SubscriberClient()
    publisher = pubsub_v1.PublisherClient()
    try:
        subscriber.get_subscription(request={"subscription": subscription}, timeout=5, retry=None)
        if dead_letter_topic:
            publisher.get_topic(request={"topic": dead_letter_topic}, timeout=5, retry=None)
    except exceptions.NotFound as exc:
        missing = "subscription" if "ubscription" in str(exc) else "dead-letter topic"
        name = subscription if missing == "subscription" else dead_letter_topic
        raise PreflightError(
            f"the {missing} {name} does not exist on the Pub/Sub emulator at {emulator}",
            "run `workbench up` (it creates the topic, subscription and dead-letter topic), or pass the right "
            "--project / --subscription",
        ) from None
    except (exceptions.DeadlineExceeded, exceptions.ServiceUnavailable, exceptions.RetryError) as exc:
        raise PreflightError(
            f"no Pub/Sub emulator answers at {emulator} ({type(exc).__name__})",
            "start the local stack with `workbench up`, or point PUBSUB_EMULATOR_HOST / --emulator at a running one",
        ) from None
    finally:
        subscriber.close()
        publisher.stop()


def check_output_root(root: str) -> None:
    """Write and delete a probe file under the root: an unwritable root fails now, not at the first flush."""
    from apache_beam.io.filesystems import FileSystems

    probe = f"{root.rstrip('/')}/.workbench-probe-{uuid.uuid4().hex}"
    try:
        with FileSystems.create(probe) as handle:
            handle.write(b"probe")
        FileSystems.delete([probe])
    except Exception as exc:
        raise PreflightError(
            f"cannot write under --output-root {root}: {type(exc).__name__}: {exc}",
            "choose a directory you can write to (or gs://bucket/prefix with access), e.g. --output-root ./output",
        ) from None


def _check_bigquery(endpoint: str, project: str, dataset: str) -> None:
    from google.api_core import exceptions
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client(
        project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint)
    )
    tables = [*rows.TABLES.values(), rows.DEAD_LETTER_TABLE]
    try:
        for table in tables:
            client.get_table(f"{project}.{dataset}.{table}", timeout=5, retry=None)
    except exceptions.NotFound:
        raise PreflightError(
            f"table {project}.{dataset}.{table} does not exist on the BigQuery emulator at {endpoint}",
            f"create the model first: `workbench bq apply --project {project} --dataset {dataset}`",
        ) from None
    except Exception as exc:
        raise PreflightError(
            f"no BigQuery emulator answers at {endpoint}: {type(exc).__name__}",
            "start the local stack with `workbench up`, or pass --dataset '' to run without BigQuery",
        ) from None
    finally:
        client.close()


# --------------------------------------------------------------------------------------------------- run


def run(
    argv: Sequence[str],
    settings: LocalSettings | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    check: bool = True,
) -> RunSummary:
    """Build and run the pipeline. DirectRunner: until idle or stopped, then drain. DataflowRunner: submit."""
    options = make_options(argv)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = DIRECT  # never let Beam look for Prism
    if standard.runner not in RUNNERS:
        raise PreflightError(f"runner {standard.runner!r} is not supported", f"use one of {', '.join(RUNNERS)}")
    if standard.runner == DATAFLOW:
        return _submit(options)
    settings = settings or LocalSettings()
    if os.environ.get("PUBSUB_EMULATOR_HOST") or options.view_as(EventPipelineOptions).bigquery_emulator_host:
        use_anonymous_credentials()
    if check:
        preflight(options)
    control = settings.control
    control.pull_size = settings.pull_size
    control.max_outstanding = settings.max_outstanding
    control.ack_on_pull = settings.ack_on_pull
    control.idle_seconds = settings.stop_when_idle
    control.started_at = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options)
    with local_direct_runner(control):
        result = pipeline.run()
        drain_timeout = options.view_as(EventPipelineOptions).sink_retry_seconds + DRAIN_MARGIN_S
        return _wait(result, control, settings, on_progress, drain_timeout)


def _wait(result: Any, control: ReadControl, settings: LocalSettings, on_progress, drain_timeout: float) -> RunSummary:
    """Wait for the pipeline while reporting progress; the first Ctrl-C drains, a second one cancels.

    Waiting happens on an Event set by a helper thread, and Ctrl-C is taken by a SIGINT handler: a
    KeyboardInterrupt that lands inside Thread.join() can leave the thread looking finished while it still
    runs, which would end the wait before the drain.
    """
    started = control.started_at
    outcome: dict[str, Any] = {}
    done = threading.Event()
    force = threading.Event()

    def wait() -> None:
        try:
            outcome["state"] = result.wait_until_finish()
        except BaseException as exc:  # surfaced in the caller's thread below
            outcome["error"] = exc
        finally:
            done.set()

    def interrupted(signum: int, frame: object) -> None:
        if control.stop.is_set():
            force.set()
        else:
            control.request_stop("interrupted (Ctrl-C): draining; press Ctrl-C again to stop at once")

    waiter = threading.Thread(target=wait, name="pipeline-wait", daemon=True)
    waiter.start()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, interrupted)
    stop_at: float | None = None
    try:
        while not done.wait(settings.poll_seconds):
            if on_progress is not None:
                on_progress(progress_of(result, started, control))
            if control.stop.is_set() and stop_at is None:
                stop_at = time.monotonic()
            if force.is_set() or (stop_at is not None and time.monotonic() - stop_at > drain_timeout):
                result.cancel()
                break
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    done.wait(5)
    if "error" in outcome:
        raise outcome["error"]
    final = progress_of(result, started, control)
    if on_progress is not None:
        on_progress(final)
    state = str(outcome.get("state", "CANCELLED"))
    return RunSummary(DIRECT, state, final)


def _submit(options: PipelineOptions) -> RunSummary:
    cloud = options.view_as(GoogleCloudOptions)
    missing = [flag for flag, value in (("--project", cloud.project), ("--region", cloud.region)) if not value]
    if not cloud.temp_location and not cloud.staging_location:
        missing.append("--temp_location gs://BUCKET/tmp")
    if missing:
        raise PreflightError(
            f"Dataflow needs {', '.join(missing)}", "pass them (see docs/pipeline.md, section Dataflow runbook)"
        )
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options)
    result = pipeline.run()
    translated = getattr(result, "job", None)
    if options.view_as(TestOptions).dry_run:
        names = len(translated.proto_pipeline.components.transforms) if translated is not None else 0
        return RunSummary(DATAFLOW, "DRY_RUN", None, f"dry run: {names} transforms translated", translated)
    return RunSummary(DATAFLOW, str(result.state), None, result.job_id())


def _value(result: Any) -> Any:
    """A metric's value: committed where the runner reports it, else attempted (the DirectRunner commits some
    updates, from timer callbacks and bundle finishes, only into `attempted`)."""
    value = result.committed if result.committed is not None else result.attempted
    if hasattr(value, "value"):  # gauges carry (value, timestamp)
        value = value.value
    attempted = result.attempted.value if hasattr(result.attempted, "value") else result.attempted
    if isinstance(value, int) and isinstance(attempted, int):
        return max(value, attempted)
    return value if value is not None else attempted
