"""What a user's pipeline cannot do on the local stack, and the one line that says what to do instead.

`refuse` stops the pipeline where the user's own code built or ran it: in the main thread (pipeline construction,
Pipeline.run) it prints `workbench exec: MESSAGE` and exits with status 2, like every workbench error; in a Beam
worker thread, where SystemExit would only end that thread, it raises LocalStackLimit, which fails the run.
`dataflow_only_options` names the options that only Dataflow reads: they are reported, not refused, because the
DirectRunner ignores them and the same command line should keep working on Dataflow.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any, NoReturn

PREFIX = "workbench exec: "

STORAGE_WRITE_API = (
    "WriteToBigQuery(method=STORAGE_WRITE_API) needs Java: Beam runs it through a cross-language expansion "
    "service, which the local stack does not run; locally use method=STREAMING_INSERTS or FILE_LOADS, and keep "
    "STORAGE_WRITE_API for Dataflow"
)
NO_BIGQUERY = (
    "the pipeline uses BigQuery, but the local stack runs no BigQuery emulator: `workbench up` (without "
    "--no-bigquery), then run it again"
)
FILE_LOADS_WITHOUT_TEMP = (
    "WriteToBigQuery(method=FILE_LOADS) needs a place for its load files: pass --temp_location /some/local/dir "
    "(or gs://BUCKET/tmp with the GCS emulator: `workbench up --gcs`)"
)
GS_WITHOUT_GCS_EMULATOR = (
    "FILE_LOADS' temp location {base} is on gs://, but the local stack runs no GCS emulator: `workbench up --gcs`, "
    "or pass --temp_location /some/local/dir"
)
READ_FROM_BIGQUERY_EXPORT = (
    "ReadFromBigQuery(method=EXPORT) has BigQuery export to GCS, which the local BigQuery emulator cannot do: "
    "locally use ReadFromBigQuery(method=DIRECT_READ)"
)
DATAFLOW_RUNNER = (
    "--runner {runner} submits the job to Google Cloud, not to the local stack: drop --runner (or pass "
    "--runner DirectRunner) under `workbench exec`; `--dry_run=True` only translates the job and is allowed"
)
OFFLINE_RUNNER = (
    "--runner {runner} downloads its runtime (or needs a cluster) and does not run offline: pass "
    "--runner DirectRunner under `workbench exec`"
)

LOCAL_RUNNERS = ("DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")
DATAFLOW_RUNNERS = ("DataflowRunner", "TestDataflowRunner")
# Options of GoogleCloudOptions that only the Dataflow service reads (the rest of that class, --project and
# --temp_location, mean something locally too); every option of WorkerOptions is Dataflow's as well.
DATAFLOW_CLOUD_OPTIONS = (
    "region", "service_account_email", "dataflow_service_options", "enable_streaming_engine", "flexrs_goal",
    "update", "transform_name_mapping", "template_location", "dataflow_kms_key", "staging_location",
    "dataflow_endpoint", "enable_hot_key_logging", "create_from_snapshot", "labels",
)  # fmt: skip


class LocalStackLimit(RuntimeError):
    """A pipeline step asked for something the local stack cannot do (the message says what to do instead)."""


def refuse(message: str) -> NoReturn:
    if threading.current_thread() is threading.main_thread():
        sys.stderr.write(PREFIX + message + "\n")
        sys.stderr.flush()
        raise SystemExit(2)
    raise LocalStackLimit(PREFIX + message)


def runner_problem(runner: str | None, dry_run: bool) -> str | None:
    """Why `runner` cannot run under exec, or None when it can (a runner object's class name works too)."""
    if runner is None or runner in LOCAL_RUNNERS:
        return None
    if runner in DATAFLOW_RUNNERS:
        return None if dry_run else DATAFLOW_RUNNER.format(runner=runner)
    return OFFLINE_RUNNER.format(runner=runner)


def dataflow_only_options(set_options: dict[str, Any]) -> list[str]:
    """The options among `set_options` (name -> value, those the user set) that only Dataflow reads, sorted."""
    from apache_beam.options.pipeline_options import WorkerOptions

    parser = argparse.ArgumentParser(add_help=False)
    WorkerOptions._add_argparse_args(parser)  # the documented way an options class declares its flags
    dataflow = {action.dest for action in parser._actions} | set(DATAFLOW_CLOUD_OPTIONS)
    return sorted(name for name, value in set_options.items() if name in dataflow and value not in (None, False, []))


def dataflow_only_message(names: list[str]) -> str:
    flags = ", ".join(f"--{name}" for name in names)
    verb, them = ("is", "it") if len(names) == 1 else ("are", "them")
    return f"{flags} {verb} read only by Dataflow: the local DirectRunner ignores {them}"


def write_method(transform: Any, streaming: bool) -> str:
    """The method WriteToBigQuery will use, as Beam 2.77 computes it (WriteToBigQuery._compute_method)."""
    method = getattr(transform, "method", None) or "DEFAULT"
    method = getattr(method, "value", method)
    if method == "DEFAULT":
        return "STREAMING_INSERTS" if streaming else "FILE_LOADS"
    return str(method)
