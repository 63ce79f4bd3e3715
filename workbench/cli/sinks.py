"""`workbench sinks show | check | init`: write a sink contract (where your pipeline puts each event), check it
against the live sinks before any run, and see the built-in one.

    workbench sinks show                               # this project's own pipeline, as a contract (YAML)
    workbench sinks show --schema > sink_contract.schema.json
    workbench sinks init --dataset shop --gcs-root ./flat-output --out shop.sinks.yaml
    workbench sinks check shop.sinks.yaml              # exit 0 clean, 2 with each problem and its fix

The sinks are the local stack's when it runs (the emulators `workbench up` started, or *_EMULATOR_HOST), as for
`workbench reconcile`; else real Google Cloud, with --project and Application Default Credentials. The checking
and guessing are pure functions in reconcile.contract_check and reconcile.contract_init; this module fetches.
"""

from __future__ import annotations

from pathlib import Path

import click

from eventmodel import resources as names
from workbench.cli.params import exit_with
from workbench.output_root import output_root_option
from workbench.sinks_run import check_contract, contract_text, write_starting_contract


@click.group()
def sinks() -> None:
    """Sink contracts: where your pipeline puts each event (`workbench reconcile RUN --sinks FILE`)."""


@sinks.command()
@click.option(
    "--output-root", default="./output", callback=output_root_option, show_default=True, help="The GCS tree's root."
)
@click.option("--dataset", default=names.DATASET, show_default=True, help="The event tables' dataset ('' for none).")
@click.option("--schema", "as_schema", is_flag=True, help="Print the contract format's JSON Schema instead.")
def show(output_root: str, dataset: str, as_schema: bool) -> None:
    """Print the built-in contract (this project's pipeline) as YAML: a complete example of the format.

    \b
    The first line names the JSON Schema for editors that validate YAML as it is typed (yaml-language-server:
    VS Code's YAML extension, Neovim's yamlls); keep it at the top of your own contract.
    """
    click.echo(contract_text(output_root, dataset, as_schema), nl=False)


@sinks.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--project", help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).")
@click.option("--dataset", help="The dataset to check (default: the contract's bigquery/dataset).")
@click.option("--output-root", callback=output_root_option, help="The GCS root to check (default: the contract's).")
def check(file: Path, project: str | None, dataset: str | None, output_root: str | None) -> None:
    """Check a contract against the live sinks: tables, columns and their types, partitioning, the dead-letter
    table, and the path templates and format against a sample of the files. Exit 0 clean, 2 on any problem.

    \b
    workbench sinks check shop.sinks.yaml                  # local stack (`workbench up`)
    workbench sinks check shop.sinks.yaml --project P      # real BigQuery and GCS, ADC
    """
    exit_with(check_contract(file, project, dataset, output_root))


@sinks.command()
@click.option("--dataset", required=True, help="The dataset of the pipeline's tables.")
@click.option("--project", help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).")
@click.option("--gcs-root", callback=output_root_option, help="The root of the pipeline's files (a folder or gs://).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), help="Write the contract here (default: stdout).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def init(dataset: str, project: str | None, gcs_root: str | None, out_path: Path | None, force: bool) -> None:
    """Write a starting contract from the live tables' schemas and a sample of the GCS tree. Whatever could not be
    matched is marked `# TODO:`; resolve those, then `workbench sinks check FILE`.

    \b
    workbench sinks init --dataset shop --gcs-root gs://BUCKET/out --out shop.sinks.yaml
    """
    write_starting_contract(dataset, project, gcs_root, out_path, force)
