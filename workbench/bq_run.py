"""What `workbench bq apply | render` do once their options are read: the data model (ddl/) applied to the
emulator or to BigQuery, with what was applied and skipped said; a DDL or run-book file with its placeholders filled.

    apply_model("my-project", "events", "US", emulator="127.0.0.1:9050", dry_run=False)  # emulator None: BigQuery
    print(render_sql("snapshots", "my-project", "events", "US", ("history_uri=gs://b/h",)))
"""

from __future__ import annotations

import click

from workbench import terminal
from workbench.errors import WorkbenchError


def apply_model(project: str, dataset: str, location: str, emulator: str | None, dry_run: bool) -> None:
    """Create the dataset, tables and views (idempotent); with dry_run print the statements in apply order."""
    from ddl.apply import apply_ddl

    def progress(statement, outcome: str) -> None:
        if outcome == "applied":
            terminal.info(f"  {statement.label}: {_first_line(statement.sql)}")

    result = apply_ddl(
        project=project,
        dataset=dataset,
        location=location,
        emulator=emulator,
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


def render_sql(path: str, project: str, dataset: str, location: str, extra: tuple[str, ...]) -> str:
    """The file (or packaged file) `path` with its ${placeholders} filled; `extra` holds NAME=VALUE pairs."""
    from ddl.apply import find_sql_file, render_file

    values = {}
    for item in extra:
        name, sep, value = item.partition("=")
        if not sep:
            raise WorkbenchError(f"--set {item!r} is not NAME=VALUE", "e.g. --set history_uri=gs://bucket/history")
        values[name] = value
    return render_file(find_sql_file(path), project=project, dataset=dataset, location=location, **values)


def _first_line(sql: str) -> str:
    from endpoints.sql_statements import strip_comments

    line = next((ln.strip() for ln in strip_comments(sql).splitlines() if ln.strip()), "")
    return line if len(line) <= 90 else line[:87] + "..."
