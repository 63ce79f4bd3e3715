"""`workbench reconcile`: did every event of a run arrive exactly where it belongs, once and unchanged?

Exit status: 0 everything matches, 1 any mismatch, 2 the run could not be reconciled (no such run, a sink
unreachable, a manifest still running or interrupted) or a report file could not be written, each with a message
saying what to do. The --json and --html paths are checked before any work, so that exit 1 always means a
mismatch and never a file that could not be written.
"""

from __future__ import annotations

from pathlib import Path

import click

from eventmodel.resources import DATASET
from workbench.cli.params import DURATION, ENGINE, given_options
from workbench.output_root import output_root_option


@click.command()
@click.argument("run_id", default="latest")
@click.option(
    "--output-root",
    default="./output",
    callback=output_root_option,
    show_default=True,
    help="The GCS tree: a directory or gs://...",
)
@click.option("--no-gcs", is_flag=True, help="Do not read the GCS tree.")
@click.option(
    "--sinks",
    "sinks_path",
    type=click.Path(path_type=Path),
    help="A sink contract (YAML): where your pipeline puts each event. Default: this project's pipeline "
    "(`workbench sinks show`). Its GCS root and dataset apply unless --output-root / --dataset are given.",
)
@click.option("--dataset", default=DATASET, show_default=True, help="BigQuery dataset of the event tables.")
@click.option("--no-bigquery", is_flag=True, help="Do not read BigQuery (event tables and dead_letters).")
@click.option("--no-dead-letter-topic", is_flag=True, help="Do not read the dead-letter topic.")
@click.option("--project", help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).")
@click.option("--allow-foreign", is_flag=True, help="Events of no known run (other producers) do not fail the run.")
@ENGINE
@click.option(
    "--scratch-dataset",
    default=f"{DATASET}_reconcile",
    show_default=True,
    help="BigQuery engine: the dataset for reconcile's own tables (dropped after each reconcile).",
)
@click.option(
    "--wait",
    "wait_s",
    type=DURATION,
    metavar="DURATION",
    help="Poll until the sinks settle or time runs out (60, 90s, 2m).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the bytes BigQuery would scan, per statement (dry runs), and stop: nothing is compared.",
)
# Paths are checked by check_outputs (a folder given as the file is refused there, with the fix).
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the full report (folders created).")
@click.option("--html", "html_path", type=click.Path(path_type=Path), help="Write a visual report (folders created).")
def reconcile(**options):
    """Compare what RUN_ID (default: the latest run) published with what every sink holds.

    \b
    workbench reconcile                          # the latest run, local stack, ./output
    workbench reconcile 20261201-081344-fd45 --wait 60 --json report.json --html report.html
    workbench reconcile latest --output-root gs://BUCKET/output --project P   # real GCP, ADC
    workbench reconcile latest --project P --dry-run                          # what BigQuery would scan
    workbench reconcile latest --sinks my_pipeline.sinks.yaml                 # your own pipeline's sinks
    """
    from workbench.reconcile_run import ReconcileSettings, reconcile_as_asked

    raise SystemExit(reconcile_as_asked(ReconcileSettings(**options, given=given_options())))
