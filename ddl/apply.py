"""Apply the BigQuery data model (ddl/*.sql) to the local emulator or to real BigQuery.

The files run in name order; every statement is idempotent (CREATE ... IF NOT EXISTS, CREATE OR REPLACE VIEW),
so applying twice is safe. `${project}`, `${dataset}` and `${location}` in the files are filled in here.

    >>> plan = apply_ddl(project="p", dataset="events", dry_run=True)
    >>> plan.statements[0].file
    '00_datasets.sql'

Library use: `apply_ddl(...)`; the CLI is `workbench bq apply` (workbench/cli/bq.py).

The emulator (bqemulator 1.4.0) cannot run every statement BigQuery can. Statements it is known not to support
are listed in EMULATOR_GAPS with the reason; against the emulator they are skipped and reported, never silently.
Any other failure stops the apply with a DdlError (ddl/errors.py; the CLI shows it with its fix, exit status 2).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ddl.errors import DdlError
from endpoints.bigquery import bigquery_client
from endpoints.sql_statements import split_statements, strip_comments
from eventmodel.resources import BIGQUERY_EMULATOR_PORT, DATASET, DEFAULT_PROJECT, LOCAL_HOST
from eventmodel.schema import SCHEMA_VERSION


def _ddl_dir() -> Path:
    """The folder of the DDL: this package's data, so the same in a checkout and in an installed wheel."""
    return Path(str(resources.files(__package__)))


DDL_DIR = _ddl_dir()
DEFAULT_LOCATION = "US"
DEFAULT_EMULATOR = f"{LOCAL_HOST}:{BIGQUERY_EMULATOR_PORT}"
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")

# Statement kinds bqemulator 1.4.0 rejects although BigQuery accepts them: (pattern, why). Matched against the
# statement text with comments removed. Only these are ever skipped, and only against the emulator.
EMULATOR_GAPS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^\s*ALTER\s+(SCHEMA|DATASET)\b", re.I),
        "bqemulator's parser has no ALTER SCHEMA (dataset options are set at CREATE SCHEMA)",
    ),
    (
        re.compile(
            r"^\s*CREATE\s+(OR\s+REPLACE\s+)?SNAPSHOT\s+TABLE\b.*\b(IF\s+NOT\s+EXISTS|FOR\s+SYSTEM_TIME|OPTIONS)\b",
            re.I | re.S,
        ),
        "bqemulator only knows `CREATE SNAPSHOT TABLE a CLONE b` without IF NOT EXISTS, FOR SYSTEM_TIME or OPTIONS",
    ),
    (
        re.compile(r"^\s*LOAD\s+DATA\b", re.I),
        "bqemulator has no LOAD DATA statement (load jobs through the API work)",
    ),
    (
        re.compile(r"^\s*(DECLARE|EXECUTE\s+IMMEDIATE)\b.*\bSNAPSHOT\s+TABLE\b", re.I | re.S),
        "scripted snapshot creation (EXECUTE IMMEDIATE ... CREATE SNAPSHOT TABLE ... OPTIONS) is beyond bqemulator",
    ),
)


@dataclass(frozen=True, slots=True)
class Statement:
    file: str
    index: int  # 1-based position within its file
    sql: str

    @property
    def label(self) -> str:
        return f"{self.file}#{self.index}"


@dataclass(slots=True)
class ApplyResult:
    target: str  # "emulator http://127.0.0.1:9050" or "BigQuery project p"
    statements: list[Statement]
    applied: list[Statement] = field(default_factory=list)
    skipped: list[tuple[Statement, str]] = field(default_factory=list)  # (statement, why)
    dry_run: bool = False


def render(sql: str, **values: str) -> str:
    """Fill ${name} placeholders; a placeholder without a value is an error, not an empty string.

    Only the braced form is a placeholder, so shell snippets in comments ($(...), $VAR) pass through untouched.
    """

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise DdlError(
                f"the SQL uses ${{{name}}} but no value was given for it",
                f"give it one (CLI: --set {name}=VALUE; library: render_file(..., {name}=...))",
            )
        return values[name]

    return _PLACEHOLDER.sub(fill, sql)


def placeholders(project: str, dataset: str = DATASET, location: str = DEFAULT_LOCATION) -> dict[str, str]:
    """The values every DDL file may use, checked: ids go into backquoted names, so they must be plain ids."""
    if not re.fullmatch(
        r"[A-Za-z0-9_\-.:]+", project or ""
    ):  # emulators take any id; real ones are checked by BigQuery
        raise DdlError(f"project {project!r} is not a valid Google Cloud project id", "pass a valid --project")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,1000}", dataset or ""):
        raise DdlError(
            f"dataset {dataset!r} is not a valid BigQuery dataset id (letters, digits, underscores)",
            "pass a valid --dataset",
        )
    return {"project": project, "dataset": dataset, "location": location, "schema_version": SCHEMA_VERSION}


def find_sql_file(name: str | Path, ddl_dir: Path = DDL_DIR) -> Path:
    """A DDL or run-book file: the path as given when it exists, else the packaged file of that name, so that
    `ddl/ops/snapshots.sql`, `ops/snapshots.sql` and `snapshots` work from any folder, with or without a checkout."""
    given = Path(name)
    if given.is_file():
        return given
    relative = given.as_posix().removeprefix("./").removeprefix("ddl/")
    relative = relative if relative.endswith(".sql") else f"{relative}.sql"
    for candidate in (ddl_dir / relative, ddl_dir / "ops" / relative):
        if candidate.is_file():
            return candidate
    known = sorted(f.relative_to(ddl_dir).as_posix() for f in ddl_dir.rglob("*.sql"))
    raise DdlError(
        f"no SQL file {str(name)!r} here or among the packaged ones ({ddl_dir})",
        f"give a path, or one of: {', '.join(known) or 'none (reinstall the package)'}",
    )


def render_file(
    path: Path, *, project: str, dataset: str = DATASET, location: str = DEFAULT_LOCATION, **extra: str
) -> str:
    """One DDL or run-book file with its placeholders filled (ddl/ops files may need more, e.g. history_uri)."""
    return render(path.read_text(encoding="utf-8"), **placeholders(project, dataset, location), **extra)


def load_statements(
    *, project: str, dataset: str = DATASET, location: str = DEFAULT_LOCATION, ddl_dir: Path = DDL_DIR
) -> list[Statement]:
    """Every statement of ddl_dir/*.sql (not sub-folders: ddl/ops holds run-books, not schema), in apply order."""
    files = sorted(ddl_dir.glob("*.sql"))
    if not files:
        raise DdlError(
            f"no DDL files in {ddl_dir}",
            "reinstall the package (its wheel carries ddl/*.sql as package data), or pass the folder (ddl_dir=...)",
        )
    statements = []
    for path in files:
        text = render_file(path, project=project, dataset=dataset, location=location)
        statements += [Statement(path.name, i, sql) for i, sql in enumerate(split_statements(text), 1)]
    return statements


def emulator_gap(sql: str) -> str | None:
    """Why bqemulator cannot run this statement, or None when it can."""
    text = strip_comments(sql)
    for pattern, why in EMULATOR_GAPS:
        if pattern.search(text):
            return why
    return None


def _check_reachable(emulator: str) -> None:
    """Fail in a moment, not after the client's retries, when nothing listens at the emulator address."""
    address = emulator.split("://", 1)[-1].rstrip("/")
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise DdlError(f"--emulator {emulator!r} is not HOST:PORT", f"e.g. --emulator {DEFAULT_EMULATOR}")
    try:
        socket.create_connection((host.strip("[]") or LOCAL_HOST, int(port)), timeout=2).close()
    except OSError as exc:
        raise DdlError(
            f"no BigQuery emulator answers at {address}: {exc.strerror or exc}",
            "start the local stack (`workbench up`), or pass --emulator HOST:PORT of a running emulator, "
            "or --bigquery to apply to BigQuery",
        ) from None


def apply_ddl(
    *,
    project: str = DEFAULT_PROJECT,
    dataset: str = DATASET,
    location: str = DEFAULT_LOCATION,
    emulator: str | None = DEFAULT_EMULATOR,
    dry_run: bool = False,
    ddl_dir: Path = DDL_DIR,
    progress: Callable[[Statement, str], None] | None = None,
) -> ApplyResult:
    """Apply ddl_dir/*.sql to the emulator at `emulator` (HOST:PORT) or, with emulator=None, to BigQuery.

    dry_run returns the rendered statements without connecting. `progress(statement, outcome)` is called after
    each statement with outcome "applied" or "skipped: <why>".
    """
    statements = load_statements(project=project, dataset=dataset, location=location, ddl_dir=ddl_dir)
    target = f"emulator http://{emulator}" if emulator else f"BigQuery project {project} ({location})"
    result = ApplyResult(target=target, statements=statements, dry_run=dry_run)
    if dry_run:
        return result
    if emulator:
        _check_reachable(emulator)
    client = bigquery_client(project, emulator, location)
    from google.api_core.exceptions import GoogleAPICallError
    from google.api_core.retry import Retry

    # DDL errors are not transient: fail fast instead of the client's default multi-minute retry (the emulator
    # answers some bad requests with HTTP 500, which the default policy retries).
    retry = Retry(initial=0.5, maximum=2.0, deadline=10.0) if emulator else None
    for statement in statements:
        why = emulator_gap(statement.sql) if emulator else None
        if why:
            result.skipped.append((statement, why))
            if progress:
                progress(statement, f"skipped: {why}")
            continue
        try:
            kwargs = {"job_retry": None, "retry": retry} if retry else {}
            client.query(statement.sql, **kwargs).result(timeout=120)
        except GoogleAPICallError as exc:
            raise DdlError(
                f"{statement.label} failed on {target}: {getattr(exc, 'message', exc)}",
                f"fix the statement in ddl/{statement.file}, or check that the target is reachable",
            ) from None
        except (OSError, ConnectionError) as exc:
            raise DdlError(
                f"cannot reach {target}: {exc}",
                "start the local stack (`workbench up`) or pass --emulator HOST:PORT of a running emulator",
            ) from None
        result.applied.append(statement)
        if progress:
            progress(statement, "applied")
    return result
