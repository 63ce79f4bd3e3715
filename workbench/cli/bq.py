"""`workbench bq apply | render`: the BigQuery data model (ddl/) applied to the local emulator or to BigQuery.

workbench bq apply                         # the local stack's emulator (BIGQUERY_EMULATOR_HOST or :9050)
workbench bq apply --emulator 127.0.0.1:9150 --dataset events_test
workbench bq apply --bigquery --project my-project --location EU
workbench bq apply --dry-run               # print the statements, connect to nothing
workbench bq render ddl/ops/snapshots.sql --project my-project    # a run-book with placeholders filled
workbench bq render snapshots --project my-project                 # the same, from any folder (packaged copy)
"""

from __future__ import annotations

import os

import click

from eventmodel import resources as names
from workbench import terminal


def _default_project() -> str:
    return next((os.environ[v] for v in names.PROJECT_ENV_VARS if os.environ.get(v)), names.DEFAULT_PROJECT)


def _default_emulator() -> str:
    from ddl.apply import DEFAULT_EMULATOR

    # `eval "$(workbench env)"` exports BIGQUERY_EMULATOR_HOST=http://host:port for the running local stack.
    return os.environ.get("BIGQUERY_EMULATOR_HOST", "").split("://", 1)[-1].rstrip("/") or DEFAULT_EMULATOR


_project = click.option(
    "--project", default=_default_project, show_default=f"${names.PROJECT_ENV_VARS[-1]} or {names.DEFAULT_PROJECT}"
)
_dataset = click.option("--dataset", default=names.DATASET, show_default=True)
_location = click.option("--location", default="US", show_default=True, help="Dataset location (US, EU, region).")


@click.group()
def bq() -> None:
    """The BigQuery data model: apply ddl/ to the emulator or to BigQuery."""


@bq.command()
@_project
@_dataset
@_location
@click.option(
    "--emulator",
    metavar="HOST:PORT",
    default=_default_emulator,
    show_default="$BIGQUERY_EMULATOR_HOST or 127.0.0.1:9050",
    help="The BigQuery emulator to apply to.",
)
@click.option(
    "--bigquery", "real", is_flag=True, help="Apply to real BigQuery with Application Default Credentials instead."
)
@click.option("--dry-run", is_flag=True, help="Print the statements in apply order; connect to nothing.")
def apply(project: str, dataset: str, location: str, emulator: str, real: bool, dry_run: bool) -> None:
    """Create the dataset, tables and views (idempotent: safe to run again).

    Statements the emulator cannot run (known gaps of bqemulator) are skipped and listed, never silently.
    """
    from ddl.apply import apply_ddl

    def progress(statement, outcome: str) -> None:
        if outcome == "applied":
            terminal.info(f"  {statement.label}: {_first_line(statement.sql)}")

    result = apply_ddl(
        project=project,
        dataset=dataset,
        location=location,
        emulator=None if real else emulator,
        dry_run=dry_run,
        progress=progress,
    )
    if dry_run:
        for statement in result.statements:
            click.echo(f"-- {statement.label}\n{statement.sql};\n")  # plain text: no wrapping, pipe-able
        return
    for statement, why in result.skipped:
        terminal.warning(f"skipped {statement.label} ({_first_line(statement.sql)}): {why}")
    terminal.success(
        f"applied {len(result.applied)} statement(s) to {result.target}, dataset {dataset}"
        + (f"; skipped {len(result.skipped)} the emulator cannot run" if result.skipped else "")
    )


@bq.command()
@click.argument("path")
@_project
@_dataset
@_location
@click.option(
    "--set", "extra", multiple=True, metavar="NAME=VALUE", help="Another placeholder, e.g. history_uri=gs://b/h"
)
def render(path: str, project: str, dataset: str, location: str, extra: tuple[str, ...]) -> None:
    """Print a DDL or run-book file (ddl/ops/*.sql) with its ${placeholders} filled in.

    PATH is a file, or the name of a packaged one (ops/snapshots.sql, snapshots), found wherever it is installed.
    """
    from ddl.apply import find_sql_file, render_file
    from workbench.errors import WorkbenchError

    values = {}
    for item in extra:
        name, sep, value = item.partition("=")
        if not sep:
            raise WorkbenchError(f"--set {item!r} is not NAME=VALUE", "e.g. --set history_uri=gs://bucket/history")
        values[name] = value
    click.echo(render_file(find_sql_file(path), project=project, dataset=dataset, location=location, **values))


def _first_line(sql: str) -> str:
    from ddl.apply import strip_comments

    line = next((ln.strip() for ln in strip_comments(sql).splitlines() if ln.strip()), "")
    return line if len(line) <= 90 else line[:87] + "..."
