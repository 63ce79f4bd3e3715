"""What `workbench sinks show | check | init` do once their options are read: the built-in contract as text,
a contract checked against the live sinks (the exit status), a starting contract written from them.

    text = contract_text("./output", "events", as_schema=False)
    status = check_contract(Path("shop.sinks.yaml"), project=None, dataset=None, output_root=None)  # 0 or 2
    write_starting_contract("shop", None, "gs://BUCKET/out", Path("shop.sinks.yaml"), force=False)

The sinks are the local stack's when it runs (the emulators `workbench up` started, or *_EMULATOR_HOST), as for
`workbench reconcile`; else real Google Cloud, with --project and Application Default Credentials. The checking
and guessing are pure functions in reconcile.contract_check and reconcile.contract_init; this module fetches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from eventmodel import resources as names
from workbench import terminal
from workbench.errors import WorkbenchError

# A file larger than this is not read to check its format (the listing still checks its place).
SAMPLE_BYTES = 8 << 20
SAMPLE_FILES = 200
SAMPLED_BODIES = 6


def schema_path() -> str:
    """Where the contract's JSON Schema sits in the installed package (what an editor's modeline names)."""
    from importlib import resources

    from reconcile.contract import SCHEMA_FILE

    return str(resources.files("reconcile").joinpath(SCHEMA_FILE))


def modeline() -> str:
    # yaml-language-server (VS Code's YAML extension, and editors using it) reads this comment to validate the file
    # as it is typed: https://github.com/redhat-developer/yaml-language-server#using-inlined-schema
    return f"# yaml-language-server: $schema={schema_path()}\n"


def contract_text(output_root: str, dataset: str, as_schema: bool) -> str:
    """`sinks show`: the built-in contract (this project's pipeline) as YAML, or the format's JSON Schema."""
    from reconcile.contract import default_document, json_schema, to_yaml

    if as_schema:
        return json.dumps(json_schema(), indent=2) + "\n"
    document = default_document(output_root, dataset or None, names.DEAD_LETTER_TOPIC)
    return modeline() + to_yaml(document)


def check_contract(file: Path, project: str | None, dataset: str | None, output_root: str | None) -> int:
    """`sinks check`: the contract against the live sinks, each problem shown with its fix; 0 clean, 2 not."""
    from reconcile.contract import load_contract
    from reconcile.contract_check import Problem

    contract = load_contract(file)  # a ContractError is shown as it is, exit 2
    terminal.info(f"{file}: the contract parses ({len(contract.tables)} tables, "
                  f"{'a GCS sink' if contract.gcs else 'no GCS sink'})")  # fmt: skip
    problems: list[Problem] = []
    dataset = dataset or contract.dataset
    if contract.tables or contract.dead_letters.table:
        problems += _check_bigquery(contract, project, dataset)
    root = output_root or (contract.gcs.root if contract.gcs else None)
    if contract.gcs and root:
        problems += _check_gcs(contract, root)
    if contract.dead_letters.gcs:
        terminal.info(f"dead_letters/gcs {contract.dead_letters.gcs.prefix}: not checked (read as reconcile runs)")
    show_problems(problems)
    failed = [p for p in problems if not p.warning]
    if failed:
        terminal.error(f"{len(failed)} problem(s) in {file}", "apply each fix above, then run `workbench sinks check` "
                       "again")  # fmt: skip
        return 2
    terminal.success(f"{file} fits the live sinks" + (f" ({len(problems)} warning(s))" if problems else ""))
    return 0


def write_starting_contract(dataset: str, project: str | None, gcs_root: str | None, out_path: Path | None,
                            force: bool) -> None:  # fmt: skip
    """`sinks init`: a starting contract from the live tables' schemas and a sample of the GCS tree, to
    `out_path` (else stdout), what could not be matched marked `# TODO:`."""
    from eventmodel.schema import EVENT_TYPES
    from reconcile.contract import ContractError, parse_contract
    from reconcile.contract_init import named_type, render, starting_contract

    if out_path and out_path.exists() and not force:
        raise WorkbenchError(f"{out_path} exists", "pass --force to overwrite it, or another --out")
    client, project = _client(project)
    try:
        tables = fetch_tables(client, project, dataset, None)
    finally:
        client.close()
    if tables is None:
        raise WorkbenchError(f"no dataset {project}.{dataset}", "name the dataset the pipeline writes to (--dataset, "
                             "--project)")  # fmt: skip
    relatives: list[str] = []
    bodies: dict[str, bytes] = {}
    if gcs_root:
        relatives, sizes = sample_tree(gcs_root, EVENT_TYPES)
        first = {}
        for relative in relatives:
            first.setdefault(named_type(relative), relative)
        bodies = read_bodies(gcs_root, [r for t, r in first.items() if t][:SAMPLED_BODIES], sizes)
    guess = starting_contract(dataset, [t for t in tables.values() if t], gcs_root, relatives, bodies)
    try:
        parse_contract(guess.document, source=str(out_path or "<stdout>"))
        loads = None
    except ContractError as exc:
        loads = exc
        guess.header.append(f"TODO: this file does not load yet: {exc.message} (fix: {exc.fix})")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    preamble = [
        f"Sink contract written by `workbench sinks init` from {project}.{dataset}"
        + (f" and {len(relatives)} files sampled under {gcs_root}" if gcs_root else "")
        + f" on {when}.",
        "Resolve each TODO, then check it against the live sinks: `workbench sinks check FILE`.",
        "Format: `workbench sinks show` (a complete example) and `workbench sinks show --schema`.",
    ]
    text = modeline() + render(guess, preamble)
    if out_path:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
    matched = len(guess.document.get("bigquery", {}).get("tables", []))
    terminal.info(f"{matched} of {len([t for t in tables.values() if t])} tables matched an event type; "
                  f"{len(guess.todos)} TODO(s)")  # fmt: skip
    if loads is not None:
        terminal.warning(f"the contract does not load yet: {loads.message}")
    if out_path:
        terminal.success(f"wrote {out_path}")


def _client(project: str | None) -> tuple[Any, str]:
    """A BigQuery client of the local stack's emulator when one is known, else of real BigQuery; and the project."""
    from endpoints.bigquery import bigquery_client
    from eventmodel.resources import DEFAULT_PROJECT, resolve_project
    from workbench.localstack.stack import local_endpoints

    endpoint = local_endpoints().bigquery
    project = resolve_project(project, DEFAULT_PROJECT)
    if endpoint and not _reachable(endpoint):  # else the client retries a refused connection for minutes
        raise WorkbenchError(
            f"no BigQuery emulator answers at {endpoint}",
            "start the local stack (`workbench up`); to check real BigQuery, unset BIGQUERY_EMULATOR_HOST "
            "(and stop the stack) and pass --project",
        )
    return bigquery_client(project, endpoint, location=None), project


def _reachable(endpoint: str) -> bool:
    import socket

    host, _, port = endpoint.split("://", 1)[-1].rstrip("/").rpartition(":")
    try:
        socket.create_connection((host or names.LOCAL_HOST, int(port)), timeout=2).close()
        return True
    except (OSError, ValueError):
        return False


def _api_error(exc: Exception, what: str) -> WorkbenchError:
    message = getattr(exc, "message", None) or str(exc)
    return WorkbenchError(
        f"cannot read {what}: {message}",
        "start the local stack (`workbench up`), or for real BigQuery check --project and your role "
        "(roles/bigquery.metadataViewer reads table schemas)",
    )


def fetch_tables(client: Any, project: str, dataset: str, wanted: Iterable[str] | None) -> dict[str, Any] | None:
    """{table name: BqTable, or None when missing} of the dataset (every table when `wanted` is None); None when
    the dataset itself does not exist."""
    from google.api_core import exceptions

    from reconcile.contract_check import table_info

    try:
        client.get_dataset(f"{project}.{dataset}")
        names_ = (
            list(wanted) if wanted is not None else [t.table_id for t in client.list_tables(f"{project}.{dataset}")]
        )
    except exceptions.NotFound:
        return None
    except Exception as exc:  # refused (403), no credentials, no answer at all
        raise _api_error(exc, f"dataset {project}.{dataset}") from None
    found: dict[str, Any] = {}
    for name in names_:
        try:
            found[name] = table_info(client.get_table(f"{project}.{dataset}.{name}"))
        except exceptions.NotFound:
            found[name] = None
        except exceptions.GoogleAPICallError as exc:
            raise _api_error(exc, f"table {project}.{dataset}.{name}") from None
    return found


def _storage(root: str) -> Any:
    """google-cloud-storage's client for a gs:// root (the local stack's GCS emulator when it runs, else GCS with
    ADC), None for a local folder: reconcile.sources lists and reads through it, and no variable is set for it."""
    if not root.startswith("gs://"):
        return None
    from endpoints.storage import storage_client
    from workbench.localstack.stack import local_endpoints

    found = local_endpoints()
    project = (found.project or names.DEFAULT_PROJECT) if found.storage else None  # GCS: ADC's own project
    return storage_client(project, found.storage)


def sample_tree(root: str, folders: Iterable[str]) -> tuple[list[str], dict[str, int]]:
    """(up to SAMPLE_FILES paths relative to root, from the root and from each folder; {relative: size})."""
    from reconcile.errors import ReconcileError
    from reconcile.sources import list_tree

    base = root.rstrip("/")
    if "://" not in base and not Path(base).is_dir():
        return [], {}
    prefixes = [base, *(f"{base}/{f.strip('/')}" for f in folders if f.strip("/"))]
    share = max(SAMPLE_FILES // len(prefixes), 20)
    storage = _storage(root)
    sizes: dict[str, int] = {}
    for prefix in prefixes:
        try:
            found = list_tree(prefix, storage, limit=share)
        except ReconcileError as exc:
            raise WorkbenchError(f"cannot list {prefix}/**: {exc.message}", "check the GCS root (and `workbench up "
                                 "--gcs` for gs:// on the local stack)") from None  # fmt: skip
        for stored in found:
            if stored.path.startswith(base + "/") and len(sizes) < SAMPLE_FILES:
                sizes[stored.path[len(base) + 1 :]] = stored.size
    return sorted(sizes), sizes


def read_bodies(root: str, relatives: Iterable[str], sizes: dict[str, int]) -> dict[str, bytes]:
    from google.api_core.exceptions import GoogleAPICallError

    from reconcile.sources import read_stored

    storage = _storage(root)
    bodies = {}
    for relative in relatives:
        if sizes.get(relative, 0) > SAMPLE_BYTES:
            continue
        uri = f"{root.rstrip('/')}/{relative}"
        try:
            bodies[relative] = read_stored(uri, storage)
        except (OSError, GoogleAPICallError) as exc:  # a refused or vanished object
            raise WorkbenchError(f"cannot read {uri}: {getattr(exc, 'message', exc)}", "check your access to the "
                                 "files (roles/storage.objectViewer on a bucket)") from None  # fmt: skip
    return bodies


def _check_bigquery(contract: Any, project: str | None, dataset: str | None) -> list[Any]:
    from reconcile.contract_check import Problem, bigquery_problems, tables_named

    if not dataset:
        return [Problem("bigquery/dataset", "no dataset named", "write bigquery/dataset, or pass --dataset")]
    client, project = _client(project)
    try:
        wanted = tables_named(contract)
        tables = fetch_tables(client, project, dataset, wanted)
    finally:
        client.close()
    if tables is None:
        return [
            Problem(
                "bigquery/dataset",
                f"no dataset {project}.{dataset}",
                "write the dataset the pipeline writes to (or pass --project / --dataset)",
            )
        ]
    for name in wanted:
        table = tables[name]
        if table is not None:
            partition = f", partitioned by {table.partition_field}" if table.partition_field else ""
            terminal.info(f"table {project}.{dataset}.{name}: {len(table.columns)} columns{partition}")
        else:
            terminal.info(f"table {project}.{dataset}.{name}: not found")
    return bigquery_problems(contract, tables, f"{project}.{dataset}")


def _check_gcs(contract: Any, root: str) -> list[Any]:
    from reconcile.contract_check import format_problems, path_problems, place_sample

    gcs = contract.gcs
    folders = {gcs.paths[t].folder(t) for t in gcs.paths}
    relatives, sizes = sample_tree(root, folders)
    placed = place_sample(gcs, relatives)
    counts = ", ".join(f"{t} {len(v)}" for t, v in placed.placed.items()) or "none"
    terminal.info(f"gcs {root}: {len(relatives)} files sampled; placed by the templates: {counts}; "
                  f"{len(placed.unplaced)} unplaced")  # fmt: skip
    problems = path_problems(gcs, placed)
    picked = [v[0] for v in placed.placed.values()][:SAMPLED_BODIES]
    for relative, body in read_bodies(root, picked, sizes).items():
        problems += format_problems(gcs, relative, body)
    if picked:
        terminal.info(f"gcs format {gcs.format}{' gzipped' if gcs.gzip else ''}: checked on {len(picked)} file(s)")
    return problems


def show_problems(problems: list[Any]) -> None:
    if not problems:
        return
    rows = [(p.where, ("warning: " if p.warning else "") + p.message, p.fix) for p in problems]
    terminal.out.print(terminal.table("Problems found", ["place in the file", "problem", "fix"], rows))
