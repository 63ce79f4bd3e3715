"""`workbench reconcile`: did every event of a run arrive exactly where it belongs, once and unchanged?

Exit status: 0 everything matches, 1 any mismatch, 2 the run could not be reconciled (no such run, a sink
unreachable, a manifest still running or interrupted) or a report file could not be written, each with a message
saying what to do. The --json and --html paths are checked before any work, so that exit 1 always means a
mismatch and never a file that could not be written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from eventmodel.resources import DATASET
from workbench.cli.params import DURATION, ENGINE
from workbench.errors import WorkbenchError
from workbench.output_root import output_root_option
from workbench.report_files import check_output


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
def reconcile(
    run_id, output_root, no_gcs, sinks_path, dataset, no_bigquery, no_dead_letter_topic, project, allow_foreign, engine,
    scratch_dataset, wait_s, dry_run, json_path, html_path,
):  # fmt: skip
    """Compare what RUN_ID (default: the latest run) published with what every sink holds.

    \b
    workbench reconcile                          # the latest run, local stack, ./output
    workbench reconcile 20261201-081344-fd45 --wait 60 --json report.json --html report.html
    workbench reconcile latest --output-root gs://BUCKET/output --project P   # real GCP, ADC
    workbench reconcile latest --project P --dry-run                          # what BigQuery would scan
    workbench reconcile latest --sinks my_pipeline.sinks.yaml                 # your own pipeline's sinks
    """
    if sinks_path:
        output_root, dataset = contract_places(sinks_path, output_root, dataset)
    if wait_s is not None and wait_s < 0:
        raise click.BadParameter("must be 0 or more seconds", param_hint="--wait")
    if dry_run:
        given = [name for name, value in (("--wait", wait_s), ("--json", json_path), ("--html", html_path)) if value]
        if given:
            raise click.UsageError(f"--dry-run compares nothing, so {' and '.join(given)} cannot apply: leave them out")
        run_estimate(
            run_id,
            output_root=None if no_gcs else output_root,
            dataset=None if no_bigquery else dataset,
            project=project,
            engine=engine,
            scratch_dataset=scratch_dataset,
            sinks=sinks_path,
        )
        raise SystemExit(0)
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
        sinks=sinks_path,
    )
    raise SystemExit(report.exit_code)


def contract_places(path: Path, output_root: str | None, dataset: str | None) -> tuple[str | None, str | None]:
    """The GCS root and dataset a reconcile with a sink contract reads: the contract's, unless the command line
    named them (an option left at its default does not override the contract)."""
    from click.core import ParameterSource

    from reconcile.contract import ContractError, load_contract

    try:
        contract = load_contract(path)
    except ContractError as exc:
        raise WorkbenchError(exc.message, exc.fix) from None
    ctx = click.get_current_context()
    if ctx.get_parameter_source("output_root") is ParameterSource.DEFAULT:
        output_root = contract.gcs.root if contract.gcs else None
    if ctx.get_parameter_source("dataset") is ParameterSource.DEFAULT:
        dataset = contract.dataset if contract.tables or contract.dead_letters.table else None
    return output_root, dataset


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
    sinks: Path | None = None,
):
    """Reconcile, show the report, write the files asked for; returns the Report (the demo calls this too).

    The output paths are checked (their folders created) before the work; a file that still cannot be written
    afterwards is a WorkbenchError (exit 2), said after the report and never hidden behind its verdict.
    """
    from reconcile.contract import ContractError
    from reconcile.errors import ReconcileError
    from reconcile.pipeline_counters import read_pipeline_counts
    from reconcile.run import reconcile as reconcile_once
    from reconcile.run import reconcile_waiting
    from workbench.reconcile_view import WaitView, show

    # Before any work: a path that cannot be written is exit 2 now, not a traceback after the verdict.
    check_outputs(json_path, html_path)
    target = _target(output_root, dataset, project, engine, scratch_dataset, sinks=sinks,
                     read_dead_letter_topic=read_dead_letter_topic, allow_foreign=allow_foreign)  # fmt: skip
    try:
        with WaitView() as view:
            if wait_s:
                report = reconcile_waiting(run_id, target, wait_s, on_poll=view.poll, on_step=view.step)
            else:
                report = reconcile_once(run_id, target, on_step=view.step)
    except (ReconcileError, ContractError) as exc:
        raise WorkbenchError(exc.message, exc.fix) from None
    counts = read_pipeline_counts(report.run_id, report.problems)
    data = {**report.to_dict(), "pipeline_counts": counts.to_dict()}
    written, failed = write_outputs(data, json_path, html_path)
    show(report, target.output_root, target.dataset, explanation=counts.explanation(), written=written)
    if failed:
        raise failed
    return report


def run_estimate(
    run_id: str,
    *,
    output_root: str | None,
    dataset: str | None,
    project: str | None,
    engine: str,
    scratch_dataset: str,
    sinks: Path | None = None,
) -> dict:
    """`reconcile --dry-run`: the bytes each statement of a reconcile would have BigQuery scan, printed."""
    from reconcile.errors import ReconcileError
    from reconcile.run import estimate
    from workbench.reconcile_view import show_estimate

    # The topic is read by load jobs and pulls, never scanned: nothing of it to estimate.
    target = _target(output_root, dataset, project, engine, scratch_dataset, sinks=sinks,
                     read_dead_letter_topic=False)  # fmt: skip
    try:
        found = estimate(run_id, target)
    except ReconcileError as exc:
        raise WorkbenchError(exc.message, exc.fix) from None
    show_estimate(found)
    return found


def _target(output_root: str | None, dataset: str | None, project: str | None, engine: str, scratch_dataset: str,
            sinks: Path | None = None, **options: bool) -> Any:  # fmt: skip
    """The ReconcileTarget the command's options name (a reconcile and its --dry-run read the same sinks)."""
    from eventmodel.resources import DEFAULT_PROJECT, resolve_project
    from reconcile.run import ReconcileTarget
    from workbench.localstack.stack import local_endpoints

    return ReconcileTarget(endpoints=local_endpoints(), output_root=output_root,
                           project=resolve_project(project, DEFAULT_PROJECT), dataset=dataset or None, engine=engine,
                           scratch_dataset=scratch_dataset, sinks=str(sinks) if sinks else None, **options)  # fmt: skip


def check_outputs(json_path: Path | None, html_path: Path | None) -> None:
    """Refuse, with the fix, a report path that cannot be written; create its missing folders."""
    asked = [(option, path) for option, path in (("--json", json_path), ("--html", html_path)) if path]
    if len(asked) == 2 and _same_file(json_path, html_path):
        raise WorkbenchError(f"--json and --html name the same file {json_path}", "give each report its own file name")
    for option, path in asked:
        check_output(option, Path(path))


def write_outputs(
    data: dict, json_path: Path | None, html_path: Path | None
) -> tuple[list[str], WorkbenchError | None]:
    """Write the reports asked for: what was written, and the first failure as the error to end with (exit 2)."""
    import orjson

    from reconcile.html import write_html

    written: list[str] = []
    for option, path, write in (
        ("--json", json_path, lambda p: _write_bytes(p, orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2))),
        ("--html", html_path, lambda p: write_html(data, p)),
    ):
        if not path:
            continue
        try:
            write(Path(path))
        except OSError as exc:
            return written, WorkbenchError(
                f"the reconcile ran (verdict above) but its {option} report {path} could not be written: "
                f"{exc.strerror or exc}",
                "free space or permissions on that folder, or pass another path; then run the reconcile again",
            )
        written.append(f"{'full' if option == '--json' else 'visual'} report: {path}")
    return written, None


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _same_file(a: Path | None, b: Path | None) -> bool:
    return bool(a and b) and os.path.abspath(a) == os.path.abspath(b)
