"""`workbench exec -- COMMAND...`: run a command (your own Beam pipeline) inside the local stack's environment.

    workbench up
    workbench exec -- python my_pipeline.py --streaming --runner DirectRunner \\
        --project workbench-local --temp_location ./tmp

The command gets the running stack's variables (PUBSUB_EMULATOR_HOST, PUBSUB_PROJECT_ID, BIGQUERY_EMULATOR_HOST,
GOOGLE_CLOUD_PROJECT, STORAGE_EMULATOR_HOST with the GCS emulator, the S3 server's AWS_* with it), NO_GCE_CHECK=true,
and workbench/beam_redirect/startup first on PYTHONPATH: every Python process it starts that imports Beam has its
BigQuery IO pointed at the emulator, and reads Pub/Sub through the workbench's local reader (stops after
--stop-when-idle without a message, drains, then acknowledges what it read), see docs/pipeline.md.

Exit status: the command's own (128 + N when a signal N killed it); 2 when no local stack runs or the command
cannot be started. SIGINT, SIGTERM and SIGHUP are passed on to the command's process group: the first drains the
pipeline, a second cancels it. The command runs in a process group of its own, so that a Ctrl-C reaches it once
(through here), not twice.
"""

from __future__ import annotations

import click

from workbench.beam_redirect.settings import DEFAULT_IDLE_SECONDS, DEFAULT_MAX_UNACKED
from workbench.cli.params import DURATION


@click.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--stock-read",
    is_flag=True,
    help="Read Pub/Sub with Beam's own DirectRunner reader (~130 msg/s, acks on pull, never ends by itself) "
    "instead of the workbench's.",
)
@click.option(
    "--stop-when-idle",
    type=DURATION,
    default=f"{DEFAULT_IDLE_SECONDS:g}s",
    show_default=True,
    metavar="DURATION",
    help="The workbench's reader drains and ends the run after this long without a message.",
)
@click.option("--no-idle-stop", is_flag=True, help="Never stop when idle: run until Ctrl-C (or SIGTERM).")
@click.option(
    "--max-unacked",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_UNACKED,
    show_default=True,
    help="Messages one run reads at most: all stay unacknowledged until the run has drained.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(**options):
    """Run COMMAND (e.g. your Beam pipeline) against the local stack `workbench up` started.

    \b
    workbench exec -- python my_pipeline.py --streaming --temp_location ./tmp
    workbench exec --stop-when-idle 10s -- python my_pipeline.py --streaming
    workbench exec --stock-read -- python my_pipeline.py --streaming   # Beam's own Pub/Sub reader
    """
    from workbench.exec_run import run_exec

    raise SystemExit(run_exec(**options))
