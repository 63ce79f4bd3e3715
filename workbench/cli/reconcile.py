"""`workbench reconcile`: did every event of a run arrive exactly where it belongs, once and unchanged?

Exit status: 0 everything matches, 1 any mismatch, 2 the run could not be reconciled (no such run, a sink
unreachable, a manifest still running or interrupted), each with a message saying what to do.
"""

from __future__ import annotations

from pathlib import Path

import click

from eventmodel.resources import DATASET
from workbench import terminal
from workbench.errors import WorkbenchError


@click.command()
@click.argument("run_id", default="latest")
@click.option("--output-root", default="./output", show_default=True, help="The GCS tree: a directory or gs://...")
@click.option("--no-gcs", is_flag=True, help="Do not read the GCS tree.")
@click.option("--dataset", default=DATASET, show_default=True, help="BigQuery dataset of the event tables.")
@click.option("--no-bigquery", is_flag=True, help="Do not read BigQuery (event tables and dead_letters).")
@click.option("--no-dead-letter-topic", is_flag=True, help="Do not read the dead-letter topic.")
@click.option("--project", help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).")
@click.option("--allow-foreign", is_flag=True, help="Events of no known run (other producers) do not fail the run.")
@click.option(
    "--engine",
    type=click.Choice(["auto", "duckdb", "bigquery"]),
    default="auto",
    show_default=True,
    help="Where the comparison runs: auto = inside BigQuery for real BigQuery, DuckDB on the local stack.",
)
@click.option(
    "--scratch-dataset",
    default=f"{DATASET}_reconcile",
    show_default=True,
    help="BigQuery engine: the dataset for reconcile's own tables (dropped after each reconcile).",
)
@click.option("--wait", "wait_s", type=float, metavar="SECONDS", help="Poll until the sinks settle or time runs out.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the full report.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a visual report.")
def reconcile(
    run_id, output_root, no_gcs, dataset, no_bigquery, no_dead_letter_topic, project, allow_foreign, engine,
    scratch_dataset, wait_s, json_path, html_path,
):  # fmt: skip
    """Compare what RUN_ID (default: the latest run) published with what every sink holds.

    \b
    workbench reconcile                          # the latest run, local stack, ./output
    workbench reconcile 20261201-081344-fd45 --wait 60 --json report.json --html report.html
    workbench reconcile latest --output-root gs://BUCKET/output --project P   # real GCP, ADC
    """
    if wait_s is not None and wait_s < 0:
        raise click.BadParameter("must be 0 or more seconds", param_hint="--wait")
    report = run_reconcile(
        run_id,
        output_root=None if no_gcs else output_root,
        dataset=None if no_bigquery else dataset,
        read_dead_letter_topic=not no_dead_letter_topic,
        project=project,
        allow_foreign=allow_foreign,
        engine=engine,
        scratch_dataset=scratch_dataset,
        wait_s=wait_s,
        json_path=json_path,
        html_path=html_path,
    )
    raise SystemExit(report.exit_code)


def run_reconcile(
    run_id: str = "latest",
    *,
    output_root: str | None = "./output",
    dataset: str | None = DATASET,
    read_dead_letter_topic: bool = True,
    project: str | None = None,
    allow_foreign: bool = False,
    engine: str = "auto",
    scratch_dataset: str = f"{DATASET}_reconcile",
    wait_s: float | None = None,
    json_path: Path | None = None,
    html_path: Path | None = None,
):
    """Reconcile, show the report, write the files asked for; returns the Report (the demo calls this too)."""
    import orjson

    from eventmodel.resources import DEFAULT_PROJECT, resolve_project
    from reconcile.errors import ReconcileError
    from reconcile.run import ReconcileTarget, reconcile_waiting
    from reconcile.run import reconcile as reconcile_once
    from workbench.reconcile_view import WaitView, show

    target = ReconcileTarget.local(
        output_root=output_root,
        project=resolve_project(project, DEFAULT_PROJECT),
        dataset=dataset or None,
        read_dead_letter_topic=read_dead_letter_topic,
        allow_foreign=allow_foreign,
        engine=engine,
        scratch_dataset=scratch_dataset,
    )
    try:
        with WaitView() as view:
            if wait_s:
                report = reconcile_waiting(run_id, target, wait_s, on_poll=view.poll, on_step=view.step)
            else:
                report = reconcile_once(run_id, target, on_step=view.step)
    except ReconcileError as exc:
        raise WorkbenchError(exc.message, exc.fix) from None
    show(report, target.output_root, target.dataset)
    if json_path:
        json_path.write_bytes(orjson.dumps(report.to_dict(), default=str, option=orjson.OPT_INDENT_2))
        terminal.info(f"full report: {json_path}")
    if html_path:
        from reconcile.html import write_html

        write_html(report.to_dict(), html_path)
        terminal.info(f"visual report: {html_path}")
    return report
