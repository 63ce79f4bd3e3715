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
    from workbench.bq_run import apply_model

    apply_model(project, dataset, location, None if real else emulator, dry_run)


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
    from workbench.bq_run import render_sql

    click.echo(render_sql(path, project, dataset, location, extra))
