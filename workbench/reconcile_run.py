"""What `workbench reconcile` does once its options are read, and the reconcile other commands run (the demo,
`workbench loadtest --reconcile`, `workbench check`): reconcile a run (or estimate its BigQuery scan), show the
report, write the report files asked for, and return the exit status.

    status = reconcile_as_asked(ReconcileSettings("latest", wait_s=60, json_path=Path("report.json")))
    report = run_reconcile("latest", output_root="./output", wait_s=30)  # the Report; .exit_code

Exit statuses: 0 everything matches, 1 any mismatch; a run that cannot be reconciled or a report file that cannot
be written raises WorkbenchError (exit 2); options that do not go together raise click's UsageError or
BadParameter (exit 2), in the command's words. The --json and --html paths are checked before any work, so that
exit 1 always means a mismatch and never a file that could not be written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from eventmodel.resources import DATASET
from workbench.errors import WorkbenchError
from workbench.report_files import check_output


@dataclass(frozen=True)
class ReconcileSettings:
    """The options of `workbench reconcile`, as the command read them."""

    run_id: str = "latest"
    output_root: str | None = "./output"
    no_gcs: bool = False
    sinks_path: Path | None = None
    dataset: str | None = DATASET
    no_bigquery: bool = False
    no_dead_letter_topic: bool = False
    project: str | None = None
    allow_foreign: bool = False
    engine: str = "auto"
    scratch_dataset: str = f"{DATASET}_reconcile"
    wait_s: float | None = None
    dry_run: bool = False
    json_path: Path | None = None
    html_path: Path | None = None
    # The options the user gave: a sink contract's GCS root and dataset apply unless these name them.
    given: frozenset[str] = frozenset()


def reconcile_as_asked(s: ReconcileSettings) -> int:
    """`workbench reconcile`: reconcile (or, with dry_run, estimate) as `s` says; the exit status."""
    output_root, dataset = s.output_root, s.dataset
    if s.sinks_path:
        output_root, dataset = contract_places(s.sinks_path, output_root, dataset, s.given)
    if s.wait_s is not None and s.wait_s < 0:
        raise click.BadParameter("must be 0 or more seconds", param_hint="--wait")
    if s.dry_run:
        given = [name for name, value in (("--wait", s.wait_s), ("--json", s.json_path), ("--html", s.html_path))
                 if value]  # fmt: skip
        if given:
            raise click.UsageError(f"--dry-run compares nothing, so {' and '.join(given)} cannot apply: leave them out")
        run_estimate(s.run_id, output_root=None if s.no_gcs else output_root,
                     dataset=None if s.no_bigquery else dataset, project=s.project, engine=s.engine,
                     scratch_dataset=s.scratch_dataset, sinks=s.sinks_path)  # fmt: skip
        return 0
    report = run_reconcile(
        s.run_id,
        output_root=None if s.no_gcs else output_root,
        dataset=None if s.no_bigquery else dataset,
        read_dead_letter_topic=not s.no_dead_letter_topic,
        project=s.project,
        allow_foreign=s.allow_foreign,
        engine=s.engine,
        scratch_dataset=s.scratch_dataset,
        wait_s=s.wait_s,
        json_path=s.json_path,
        html_path=s.html_path,
        sinks=s.sinks_path,
    )
    return report.exit_code


def contract_places(path: Path, output_root: str | None, dataset: str | None,
                    given: frozenset[str]) -> tuple[str | None, str | None]:  # fmt: skip
    """The GCS root and dataset a reconcile with a sink contract reads: the contract's, unless the command line
    named them (an option left at its default does not override the contract)."""
    from reconcile.contract import ContractError, load_contract

    try:
        contract = load_contract(path)
    except ContractError as exc:
        raise WorkbenchError(exc.message, exc.fix) from None
    if "output_root" not in given:
        output_root = contract.gcs.root if contract.gcs else None
    if "dataset" not in given:
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
