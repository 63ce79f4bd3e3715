"""Launch a backfill (pipeline/backfill.py): preflight, then the batch job on Beam's embedded runner with live
counts, or on Dataflow (submitted, or translated only with --dry_run).

    summary = backfill(["--history_uri", "s3://workbench-history/exports", "--project", "workbench-local", ...],
                       on_progress=lambda counts, elapsed: ...)

Locally the job runs on the DirectRunner, which runs a batch job with no processing-time timer on the
FnApiRunner in this process (the graph has none: pipeline.files.WriteEventFilesBatch); its counters are mirrored
in-process (pipeline.metrics.LiveCounts) so the view sees them as they grow, and the result's own metrics are
the final word.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
)

from pipeline import metrics as M
from pipeline.backfill import build_backfill, make_options
from pipeline.history_read import s3_client_settings
from pipeline.options import EventPipelineOptions, HistoryOptions, resource_path
from pipeline.runners import DATAFLOW, DIRECT, local_runner
from workbench.errors import WorkbenchError
from workbench.pipeline_run.preflight import check_bigquery, check_output_root, check_pubsub
from workbench.pipeline_run.stream_launcher import submit

POLL_S = 0.5
Progress = Callable[[dict[str, int], float], None]


@dataclass
class BackfillSummary:
    runner: str
    state: str
    counts: dict[str, int] = field(default_factory=dict)  # counter name -> value (local runs)
    elapsed: float = 0.0
    job: str | None = None  # Dataflow: the job id, or what the dry run translated


def backfill(argv: list[str], on_progress: Progress | None = None) -> BackfillSummary:
    options = make_options(argv)
    runner = options.view_as(StandardOptions).runner or DIRECT
    options.view_as(StandardOptions).runner = runner
    uri = options.view_as(HistoryOptions).history_uri
    if not uri:
        raise WorkbenchError("no history to read", "name it: workbench backfill s3://BUCKET/PREFIX")
    if runner == DATAFLOW:
        return _submit(options, uri)
    check_history(uri, s3_client_settings(options))
    _local_preflight(options)
    # One worker in this process (the DirectRunner runs a batch job on the FnApiRunner): the live counts are this
    # process's (LiveCounts says why).
    options.view_as(DirectOptions).direct_num_workers = 1
    options.view_as(DirectOptions).direct_running_mode = "in_memory"
    return _run_here(options, on_progress)


def _submit(options: PipelineOptions, uri: str) -> BackfillSummary:
    if not uri.startswith(("s3://", "gs://")):
        raise WorkbenchError(
            f"history {uri} is on this machine: Dataflow's workers cannot read it",
            "name the history where the workers can read it: s3://BUCKET/PREFIX (or gs://)",
        )
    submitted = submit(options, build_backfill)
    return BackfillSummary(DATAFLOW, submitted.state, job=submitted.job)


def _local_preflight(options: PipelineOptions) -> None:
    app = options.view_as(EventPipelineOptions)
    project = options.view_as(GoogleCloudOptions).project
    if not project:
        raise WorkbenchError("no project given", "pass --project (locally any id works, e.g. workbench-local)")
    check_output_root(app.output_root)
    if app.dataset and app.bigquery_emulator_host:
        check_bigquery(app.bigquery_emulator_host, app.bigquery_project or project, app.dataset)
    emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
    if emulator and app.dead_letter_topic:
        check_pubsub(emulator, None, resource_path("topics", app.dead_letter_topic, project))


def check_history(uri: str, s3_settings: dict[str, Any] | None = None) -> None:
    """The history is there and readable before the job starts: for s3://, the bucket answers (HeadBucket; Beam's
    listing of a missing bucket is silently empty) and something is under the prefix; for a folder, it exists."""
    if uri.startswith("s3://"):
        from publisher import objects as layout
        from publisher.errors import PublishError
        from publisher.s3 import READER_PERMISSIONS, S3Target, check_s3, explain, s3_client

        try:
            location = layout.parse_s3_uri(uri)
        except ValueError as exc:
            raise WorkbenchError(str(exc), "write the history's place as s3://BUCKET/PREFIX") from None
        client = s3_client(**(s3_settings or {}))
        try:
            check_s3(S3Target(uri), client, needs=READER_PERMISSIONS)
            found = client.list_objects_v2(Bucket=location.bucket, Prefix=location.prefix, MaxKeys=1)
        except PublishError as exc:
            raise WorkbenchError(exc.message, exc.fix) from None
        except Exception as exc:
            error = explain(exc, location.bucket, READER_PERMISSIONS)
            if error is None:
                raise
            raise WorkbenchError(error.message, error.fix) from None
        if not found.get("KeyCount"):
            raise WorkbenchError(
                f"nothing under {uri}: bucket {location.bucket} has no object with prefix {location.prefix!r}",
                "check the prefix (`aws s3 ls` it), or seed a history: workbench publish --history START..END "
                f"--count N --to s3://{location.bucket}/{location.prefix}",
            )
        return
    if "://" not in uri and not os.path.isdir(uri):
        raise WorkbenchError(f"history folder {uri} does not exist", "name an s3://BUCKET/PREFIX or an existing folder")


def _run_here(options: PipelineOptions, on_progress: Progress | None) -> BackfillSummary:
    live = M.LiveCounts()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            pipeline = beam.Pipeline(runner=local_runner(), options=options)  # never Prism (pipeline.runners)
            build_backfill(pipeline, options)
            result = pipeline.run()
            outcome["state"] = str(result.wait_until_finish())
            outcome["result"] = result
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    started = time.monotonic()
    M.mirror_counters(live)
    try:
        thread = threading.Thread(target=work, name="backfill", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(POLL_S)
            if on_progress is not None:
                on_progress(live.snapshot(), time.monotonic() - started)
    finally:
        M.mirror_counters(None)
    if "error" in outcome:
        raise outcome["error"]
    counts = final_counts(outcome["result"]) or live.snapshot()
    elapsed = time.monotonic() - started
    if on_progress is not None:
        on_progress(counts, elapsed)
    state = outcome["state"].rsplit(".", 1)[-1]
    return BackfillSummary(DIRECT, state, counts, elapsed)


def final_counts(result: Any) -> dict[str, int]:
    """Every counter of the workbench's namespace in a finished result, summed over steps (pipeline.metrics' rule)."""
    return M.counter_totals(M.workbench_metrics(result)["counters"])
