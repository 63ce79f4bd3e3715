"""What `workbench up | down | status | env` do once their options are read: start and stop the embedded local
stack (workbench.localstack.stack) with progress shown, and show what runs and how to point a shell at it.

    start_stack(with_gcs=True, with_s3=False, no_bigquery=False, datasets=(), project="workbench-local", ...)
    stop_stack(reset=False); show_status(); print_env()
"""

from __future__ import annotations

import shlex
from pathlib import Path

from workbench import terminal


def start_stack(*, with_gcs: bool, with_s3: bool, no_bigquery: bool, datasets: tuple[str, ...], project: str,
                pubsub_port: int, bigquery_port: int, gcs_port: int, s3_port: int, data_dir: Path | None,
                bigquery_in_memory: bool, bigquery_time_travel: bool, pubsub_admin: bool,
                restart: bool) -> None:  # fmt: skip
    """`workbench up`: start what is not running yet (the options as the command reads them)."""
    from workbench.localstack import stack

    config = stack.StackConfig(
        project=project,
        pubsub_port=pubsub_port,
        bigquery_port=bigquery_port,
        gcs_port=gcs_port,
        s3_port=s3_port,
        with_gcs=with_gcs,
        with_s3=with_s3,
        with_bigquery=not no_bigquery,
        bigquery_time_travel=bigquery_time_travel,
        data_dir=data_dir,
        bigquery_persistent=not bigquery_in_memory,
        pubsub_admin=pubsub_admin,
        datasets=tuple(dict.fromkeys(datasets)),
    )
    with terminal.console.status("starting the local stack") as spinner:
        stack.up(config, on_step=lambda message: (spinner.update(message), terminal.info(message)), restart=restart)
    terminal.success('local stack up; point your shell at it with: eval "$(workbench env)"')


def stop_stack(reset: bool) -> None:
    """`workbench down`: stop what `up` started; with reset also drop the BigQuery emulator's kept tables."""
    from workbench.localstack import stack

    stopped = stack.down(on_step=terminal.info, reset=reset)
    terminal.success(f"stopped {len(stopped)} service(s)" if stopped else "nothing was running")


def show_status() -> None:
    """`workbench status`: a table of what the local stack runs, or how to start it."""
    from workbench.localstack import stack

    rows = stack.status()
    if not rows:
        terminal.info("the local stack is not running; start it with `workbench up`")
        return
    terminal.out.print(
        terminal.table(
            "local stack",
            ["service", "state", "pid", "endpoint", "started (UTC)", "log"],
            [[r["service"], r["state"], r["pid"] or "-", r["endpoint"], r["started_at"][:19], r["log"]] for r in rows],
        )
    )


def print_env() -> None:
    """`workbench env`: export lines for the running services, secrets masked (the command's help says which)."""
    from workbench.localstack import stack
    from workbench.localstack.services import S3_TEST_CREDENTIALS
    from workbench.redact import masked_value

    exports = stack.env_exports()
    if not exports:
        terminal.warning("the local stack is not running; start it with `workbench up`")
        return
    for key, value in sorted(exports.items()):
        shown = value if S3_TEST_CREDENTIALS.get(key) == value else masked_value(key, value)
        if shown != value:
            terminal.out.print(f"# {key}={shown} (a secret: not printed; set it yourself)", markup=False)
            continue
        terminal.out.print(f"export {key}={shlex.quote(value)}", markup=False)
