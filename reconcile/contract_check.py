"""A sink contract checked against the live sinks before any run (`workbench sinks check FILE`).

Pure functions over what was already fetched: the tables' schemas and partitioning (BqTable, built from
google-cloud-bigquery's Table by table_info), a listing of the GCS tree and a few sampled files. Each returns a list
of Problem(where, message, fix): `where` is the place in the contract file (as ContractError names it), `fix` what to
write instead. A warning is shown but does not fail the check.

    >>> orders = BqTable("orders", (BqColumn("order_id", "STRING"), BqColumn("total_amount", "FLOAT64")))
    >>> where = "bigquery/tables/0 (orders)/columns/total_amount"
    >>> [p.fix for p in column_problems(where, field_paths("order")["total_amount"], orders, Column("total_amount"))]
    ['write total_amount: {column: total_amount, stored_as: float64} (add tolerance: 0.005 if the pipeline rounds)']

What can be read back as what follows reconcile.contract_sql.converted(): a column kept in the field's own type
(eventmodel.canonical: TIMESTAMP, NUMERIC, INT64, STRING, STRUCT, ARRAY<STRUCT>) needs no stored_as; any other
type it converts from must be declared with the stored_as naming that type, so that the SELECT casts it.
"""

from __future__ import annotations

import difflib
import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from eventmodel.schema import Field, field_paths
from reconcile.contract import (
    ChildTable,
    Column,
    Contract,
    DeadLetterTable,
    GcsSink,
    TableSink,
)

# Legacy SQL names the REST API still returns for tables made through it (tables.insert), and their Standard SQL
# names (https://cloud.google.com/bigquery/docs/reference/rest/v2/tables#TableFieldSchema.FIELDS.type).
_STANDARD = {"FLOAT": "FLOAT64", "INTEGER": "INT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}
# The type a field kind is kept in when no stored_as is declared (eventmodel.canonical, ddl/).
OWN_TYPE = {"timestamp": "TIMESTAMP", "number": "NUMERIC", "integer": "INT64", "record": "STRUCT"}
# Column types each kind converts from (converted(): SAFE_CAST to the field's own type), and the stored_as that
# says so. BIGNUMERIC is read as it is, like NUMERIC (the canonical text is its value in 1e-9 units).
CONVERTS_FROM: dict[str, dict[str, str]] = {
    "timestamp": {"TIMESTAMP": "timestamp", "STRING": "string", "DATE": "date", "DATETIME": "datetime"},
    "number": {"NUMERIC": "numeric", "BIGNUMERIC": "numeric", "FLOAT64": "float64", "STRING": "string",
               "INT64": "int64"},
    "integer": {"INT64": "int64", "NUMERIC": "numeric", "BIGNUMERIC": "numeric", "FLOAT64": "float64",
                "STRING": "string"},
}  # fmt: skip
TEXT_KINDS = ("uuid", "string", "enum", "ip_address")
TIME_COLUMNS = ("publish_time", "landed_time")
SAMPLE_FILES = 200


@dataclass(frozen=True)
class Problem:
    where: str  # the place in the contract file: bigquery/tables/0 (orders)/columns/order_date
    message: str
    fix: str
    warning: bool = False


@dataclass(frozen=True)
class BqColumn:
    name: str
    type: str  # Standard SQL name: STRING, INT64, FLOAT64, NUMERIC, TIMESTAMP, STRUCT, JSON, ...
    repeated: bool = False
    fields: tuple[BqColumn, ...] = ()

    @property
    def spelled(self) -> str:
        inner = f"STRUCT<{', '.join(f.name for f in self.fields)}>" if self.type == "STRUCT" else self.type
        return f"ARRAY<{inner}>" if self.repeated else inner


@dataclass(frozen=True)
class BqTable:
    name: str
    columns: tuple[BqColumn, ...]
    partition_field: str | None = None  # the time partitioning column (None: none, or ingestion time)
    require_partition_filter: bool = False
    range_partitioned: bool = False
    time_partitioned: bool = False
    kind: str = "TABLE"  # TABLE, VIEW, MATERIALIZED_VIEW, EXTERNAL, SNAPSHOT (Table.table_type)

    def column(self, name: str) -> BqColumn | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def column_info(schema_field: Any) -> BqColumn:
    """A BqColumn of google-cloud-bigquery's SchemaField (nested STRUCT members included)."""
    kind = str(schema_field.field_type).upper()
    return BqColumn(schema_field.name, _STANDARD.get(kind, kind), schema_field.mode == "REPEATED",
                    tuple(column_info(f) for f in schema_field.fields or ()))  # fmt: skip


def table_info(table: Any) -> BqTable:
    """A BqTable of google-cloud-bigquery's Table (what get_table returns)."""
    partitioning = table.time_partitioning
    # require_partition_filter sits on the table; the older place, inside timePartitioning, is deprecated but still
    # answered (and the only one bqemulator keeps): https://cloud.google.com/bigquery/docs/reference/rest/v2/tables
    deprecated = partitioning.to_api_repr().get("requirePartitionFilter") if partitioning else None
    required = bool(table.require_partition_filter or deprecated)
    return BqTable(table.table_id, tuple(column_info(f) for f in table.schema),
                   partitioning.field if partitioning else None, required, table.range_partitioning is not None,
                   partitioning is not None, table.table_type or "TABLE")  # fmt: skip


# -------------------------------------------------------------------------------------------- BigQuery


def _closest(name: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _no_column(where: str, table: BqTable, column: str, what: str) -> Problem:
    close = _closest(column, table.names)
    fix = f"write {close}" if close else f"name one of its columns: {', '.join(table.names)}"
    return Problem(where, f"{table.name} has no column {column!r} ({what})", fix)


def _conversion(f: Field, column: BqColumn, stored_as: str | None) -> tuple[bool, str | None]:
    """(whether the column can be read back as the field, the stored_as it must declare: None when none may)."""
    if f.kind == "records":
        return column.repeated and column.type == "STRUCT", "array"
    if column.repeated:
        return False, None
    if f.kind == "record":
        return column.type == "STRUCT", "struct"
    if f.kind in TEXT_KINDS:
        return column.type == "STRING", "string"
    found = CONVERTS_FROM[f.kind].get(column.type)
    return found is not None, found


def column_problems(where: str, f: Field, table: BqTable, spec: Column) -> list[Problem]:
    """Whether the column a field is mapped to exists and reads back as the field under its declared stored_as."""
    column = table.column(spec.column)
    if column is None:
        return [_no_column(where, table, spec.column, f"field {_path_of(where)}, a {f.kind}")]
    fits, needed = _conversion(f, column, spec.value.stored_as)
    stored = spec.value.stored_as
    if not fits:
        return [Problem(where, f"{table.name}.{column.name} is {column.spelled}, which cannot be read as {f.name} "
                               f"(a {f.kind}: {_accepted(f)})",
                        f"map {f.name} to a column of one of those types, or list it under omit")]  # fmt: skip
    own = (column.type == OWN_TYPE.get(f.kind, "STRING") and not column.repeated) or f.kind in ("record", "records")
    problems = []
    if stored is None and not own:
        tail = " (add tolerance: 0.005 if the pipeline rounds)" if needed == "float64" else ""
        problems.append(Problem(
            where, f"{table.name}.{column.name} is {column.spelled}, not the {f.kind}'s own type "
                   f"{OWN_TYPE.get(f.kind, 'STRING')}, and no stored_as says so",
            f"write {_path_of(where)}: {{column: {column.name}, stored_as: {needed}}}{tail}"))  # fmt: skip
    elif stored is not None and stored != needed:
        problems.append(Problem(
            where, f"stored_as {stored}, but {table.name}.{column.name} is {column.spelled}",
            f"write stored_as: {needed}" + ("" if not own else " (or leave stored_as out)")))  # fmt: skip
    if f.fields and column.type == "STRUCT":
        members = {m.name for m in column.fields}
        lacking = [m.name for m in f.fields if m.name not in members]
        if lacking:
            problems.append(
                Problem(
                    where,
                    f"{table.name}.{column.name} has no member {', '.join(lacking)} of {f.name} "
                    f"(it has {', '.join(sorted(members)) or 'none'})",
                    "rename the STRUCT members as the event names them, or map each member path to its own column",
                )
            )
    return problems


def _accepted(f: Field) -> str:
    if f.kind == "records":
        return "an ARRAY<STRUCT> of its members"
    if f.kind == "record":
        return "a STRUCT of its members"
    if f.kind in TEXT_KINDS:
        return "STRING"
    return " or ".join(CONVERTS_FROM[f.kind])


def _path_of(where: str) -> str:
    return where.rsplit("/", 1)[-1]


def partition_problems(where: str, table: BqTable, declared: str | None, mapped_as: str | None) -> list[Problem]:
    """A declared partition_column is the table's time partitioning column, in a type reconcile's filter compares
    (reconcile.contract_sql.partition_filter: TIMESTAMP literals, or DATE/DATETIME ones when the column is mapped
    with that stored_as); a table that requires a partition filter has one declared (real BigQuery refuses the
    read otherwise: https://cloud.google.com/bigquery/docs/querying-partitioned-tables)."""
    column_ = table.partition_field
    if declared is None:
        return _undeclared(where, table)
    if not table.time_partitioned:
        return [Problem(where, f"partition_column {declared}, but {table.name} reports no time partitioning (nor "
                               "does any table the local emulator made by DDL)",
                        "remove partition_column, unless the table is partitioned by it", warning=True)]  # fmt: skip
    column = table.column(declared)
    if column is None:
        return [_no_column(where, table, declared, "its partitioning column")]
    if column_ is None:
        # Ingestion-time partitioning has no column; nor does any table the local emulator made by DDL (bqemulator
        # keeps a DDL table's partitioning without its column): what was declared cannot be confirmed.
        return [Problem(where, f"{table.name} reports no partitioning column (ingestion-time partitioning, or a "
                               f"table the local emulator made by DDL): partition_column {declared} is not confirmed",
                        "check the table's partitioning (bq show --format=prettyjson DATASET.TABLE)",
                        warning=True)]  # fmt: skip
    if declared != column_:
        return [Problem(where, f"partition_column {declared}, but {table.name} is partitioned by {column_}",
                        f"write partition_column: {column_}")]  # fmt: skip
    kind = mapped_as if mapped_as in ("date", "datetime") else "timestamp"
    if column.type != kind.upper():
        fix = (
            f"map it to the event's time with {{column: {declared}, stored_as: {column.type.lower()}}}"
            if column.type in ("DATE", "DATETIME")
            else "partition the table by a TIMESTAMP, DATE or DATETIME"
        )
        return [Problem(where, f"{table.name}.{declared} is {column.type}, and reconcile bounds it with "
                               f"{kind.upper()} values", fix)]  # fmt: skip
    return []


def _undeclared(where: str, table: BqTable) -> list[Problem]:
    column = table.partition_field
    if table.require_partition_filter and column:
        return [Problem(where, f"{table.name} requires a partition filter on {column} (require_partition_filter), "
                               "and no partition_column is declared: BigQuery refuses the read",
                        f"add partition_column: {column}")]  # fmt: skip
    if table.require_partition_filter:
        how = "by integer range" if table.range_partitioned else "with no partitioning column (ingestion time)"
        return [Problem(where, f"{table.name} is partitioned {how} and requires a partition filter, and reconcile "
                               "bounds its reads by a time column",
                        "name its partitioning column as partition_column if it has one, else turn the table's "
                        "require_partition_filter off")]  # fmt: skip
    if column:
        return [Problem(where, f"{table.name} is partitioned by {column}, and no partition_column is declared: "
                               "every read scans the whole table",
                        f"add partition_column: {column}", warning=True)]  # fmt: skip
    return []


def _mapped_as(columns: dict[str, Column], column: str) -> str | None:
    return next((c.value.stored_as for c in columns.values() if c.column == column), None)


def _metadata_problems(where: str, table: BqTable, metadata: dict[str, str]) -> list[Problem]:
    problems = []
    for key, name in metadata.items():
        column = table.column(name)
        if column is None:
            problems.append(_no_column(f"{where}/metadata/{key}", table, name, key))
            continue
        wanted = "TIMESTAMP" if key in TIME_COLUMNS else "STRING"
        if column.type != wanted or column.repeated:
            problems.append(Problem(f"{where}/metadata/{key}", f"{table.name}.{name} is {column.spelled}, and "
                                    f"reconcile reads {key} as {wanted}",
                                    f"name a {wanted} column for {key}, or leave {key} out"))  # fmt: skip
    return problems


def table_problems(index: int, sink: TableSink, tables: dict[str, BqTable | None], dataset: str) -> list[Problem]:
    """Problems of one bigquery/tables entry: its table, columns, children, event column, metadata, partitioning."""
    where = f"bigquery/tables/{index} ({sink.table})"
    table = tables.get(sink.table)
    if table is None:
        close = _closest(sink.table, [t for t, v in tables.items() if v is not None])
        return [
            Problem(
                where,
                f"no table {dataset}.{sink.table}",
                f"write table: {close}" if close else "create the table, or name one of the dataset's",
            )
        ]
    paths = field_paths(sink.event_type)
    problems: list[Problem] = []
    for path, spec in sink.columns.items():
        problems += column_problems(f"{where}/columns/{path}", paths[path], table, spec)
    if sink.event_column:
        column = table.column(sink.event_column)
        if column is None:
            problems.append(_no_column(f"{where}/event_column", table, sink.event_column, "the whole event"))
        elif column.type not in ("JSON", "STRING") or column.repeated:
            problems.append(Problem(f"{where}/event_column", f"{table.name}.{sink.event_column} is "
                                    f"{column.spelled}; the whole event is read from JSON or STRING",
                                    "name the JSON or STRING column holding the event"))  # fmt: skip
    problems += _metadata_problems(where, table, sink.metadata)
    problems += partition_problems(f"{where}/partition_column", table, sink.partition_column,
                                   _mapped_as(sink.columns, sink.partition_column or ""))  # fmt: skip
    for j, child in enumerate(sink.children):
        problems += child_problems(f"{where}/children/{j} ({child.table})", sink, table, child, tables, dataset)
    return problems


def child_problems(where: str, parent_sink: TableSink, parent: BqTable, child: ChildTable,
                   tables: dict[str, BqTable | None], dataset: str) -> list[Problem]:  # fmt: skip
    table = tables.get(child.table)
    if table is None:
        return [Problem(where, f"no table {dataset}.{child.table}", "create the table, or name the child table")]
    members = {m.name: m for m in field_paths(parent_sink.event_type)[child.field].fields}
    problems: list[Problem] = []
    for member, spec in child.columns.items():
        problems += column_problems(f"{where}/columns/{member}", members[member], table, spec)
    for path, name in child.parent_key.items():
        mine = table.column(name)
        if mine is None:
            problems.append(_no_column(f"{where}/parent_key/{path}", table, name, f"the parent's {path}"))
            continue
        theirs = _parent_column(parent_sink, parent, path)
        if theirs is None:
            problems.append(Problem(f"{where}/parent_key/{path}", f"the parent table {parent.name} keeps no column "
                                    f"for {path}, so a child row cannot be joined on it",
                                    f"map {path} to a column of {parent.name}"))  # fmt: skip
        elif (mine.type, mine.repeated) != (theirs.type, theirs.repeated):
            problems.append(Problem(f"{where}/parent_key/{path}", f"{table.name}.{name} is {mine.spelled} and "
                                    f"{parent.name}.{theirs.name} is {theirs.spelled}: the join compares them as "
                                    "stored", "keep the key in the same type in both tables"))  # fmt: skip
    if child.order_by and table.column(child.order_by) is None:
        problems.append(_no_column(f"{where}/order_by", table, child.order_by, "the element's position"))
    problems += partition_problems(f"{where}/partition_column", table, child.partition_column,
                                   _mapped_as(child.columns, child.partition_column or ""))  # fmt: skip
    return problems


def _parent_column(sink: TableSink, table: BqTable, path: str) -> BqColumn | None:
    """The parent's column a parent_key path is joined to, as contract_sql._parent_column finds it."""
    if path in sink.columns:
        return table.column(sink.columns[path].column)
    head, _, rest = path.partition(".")
    if head in sink.columns and rest:
        column = table.column(sink.columns[head].column)
        return next((m for m in column.fields if m.name == rest), None) if column else None
    return None


def dead_letter_table_problems(spec: DeadLetterTable, tables: dict[str, BqTable | None],
                               dataset: str) -> list[Problem]:  # fmt: skip
    where = f"dead_letters/table ({spec.table})"
    table = tables.get(spec.table)
    if table is None:
        return [
            Problem(
                where,
                f"no table {dataset}.{spec.table}",
                "create the dead-letter table, or name the one the pipeline writes to",
            )
        ]
    problems: list[Problem] = []
    payload = table.column(spec.payload)
    if payload is None:
        problems.append(_no_column(f"{where}/payload", table, spec.payload, "the rejected bytes"))
    elif payload.type not in ("STRING", "BYTES") or payload.repeated:
        problems.append(
            Problem(
                f"{where}/payload",
                f"{table.name}.{spec.payload} is {payload.spelled}; the rejected bytes are read from STRING or BYTES",
                "name the payload column",
            )
        )
    for key, name in spec.columns.items():
        column = table.column(name)
        if column is None:
            problems.append(_no_column(f"{where}/{key}", table, name, key))
        elif key in TIME_COLUMNS and column.type != "TIMESTAMP":
            problems.append(
                Problem(
                    f"{where}/{key}",
                    f"{table.name}.{name} is {column.spelled}, and reconcile reads {key} as TIMESTAMP",
                    f"name a TIMESTAMP column, or leave {key} out",
                )
            )
    problems += partition_problems(f"{where}/partition_column", table, spec.partition_column, None)
    return problems


def bigquery_problems(contract: Contract, tables: dict[str, BqTable | None], dataset: str) -> list[Problem]:
    """Every BigQuery problem of a contract, given each table it names (None: not found)."""
    problems: list[Problem] = []
    for i, sink in enumerate(contract.tables):
        problems += table_problems(i, sink, tables, dataset)
    if contract.dead_letters.table:
        problems += dead_letter_table_problems(contract.dead_letters.table, tables, dataset)
    return problems


def tables_named(contract: Contract) -> list[str]:
    """Every table a contract names, in order, once."""
    names = []
    for sink in contract.tables:
        names += [sink.table, *(c.table for c in sink.children)]
    if contract.dead_letters.table:
        names.append(contract.dead_letters.table.table)
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------------- GCS


@dataclass
class PathCheck:
    """What the path templates made of a sample of the tree: files per type, and the ones no template placed."""

    sampled: int = 0
    placed: dict[str, list[str]] = field(default_factory=dict)
    unplaced: list[str] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)


def place_sample(gcs: GcsSink, relatives: list[str]) -> PathCheck:
    """Each sampled path (relative to the root) matched against the templates of the contract's types."""
    check = PathCheck(sampled=len(relatives))
    for relative in relatives:
        for event_type, template in gcs.paths.items():
            found = template.match(relative, event_type)
            if found is not None:
                check.placed.setdefault(event_type, []).append(relative)
                if not found[1]:
                    check.inconsistent.append(relative)
                break
        else:
            check.unplaced.append(relative)
    return check


def path_problems(gcs: GcsSink, check: PathCheck) -> list[Problem]:
    if not check.sampled:
        return [
            Problem(
                "gcs/root",
                f"no files under {gcs.root}: the path templates were not tried",
                "check them again once the pipeline has written files",
                warning=True,
            )
        ]
    problems = []
    if not check.placed:
        example = check.unplaced[0]
        return [Problem("gcs/paths", f"none of the {check.sampled} sampled files under {gcs.root} matches a path "
                        f"template (e.g. {example})", f"write a template that matches {example}: "
                        f"{suggest_template(example)!r}")]  # fmt: skip
    if check.unplaced:
        example = check.unplaced[0]
        problems.append(Problem("gcs/paths", f"{len(check.unplaced)} of {check.sampled} sampled files match no "
                                f"template and are not read (e.g. {example})",
                                f"if they hold events, write a template that matches them: "
                                f"{suggest_template(example)!r}", warning=True))  # fmt: skip
    if check.inconsistent:
        problems.append(
            Problem(
                "gcs/paths",
                f"{len(check.inconsistent)} sampled files repeat a time token with "
                f"different values (e.g. {check.inconsistent[0]}): reconcile reports them misplaced",
                "check that the folder and the file name come from the same time",
                warning=True,
            )
        )
    return problems


def suggest_template(relative: str) -> str:
    """A path template for one file's path (reconcile.contract_init guesses the whole tree's)."""
    from reconcile.contract_init import template_of

    return template_of(relative)


def sniff(body: bytes) -> tuple[bool, str | None, list[Any]]:
    """(gzipped, format: jsonl | json_array | json_object | None when not JSON, the records) of one file."""
    zipped = body[:2] == b"\x1f\x8b"
    if zipped:
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError):
            return True, None, []
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return zipped, None, []
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, list):
        return zipped, "json_array", whole
    if isinstance(whole, dict):
        # One line and one object is either; a JSON object spread over lines is json_object only.
        return zipped, "json_object" if "\n" in text else "jsonl_or_object", [whole]
    records = []
    for line in text.splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                return zipped, None, records
    return zipped, "jsonl", records


def format_problems(gcs: GcsSink, name: str, body: bytes) -> list[Problem]:
    """Whether one sampled file is in the contract's format, gzip and record shape."""
    zipped, found, records = sniff(body)
    problems = []
    if zipped != gcs.gzip:
        problems.append(Problem("gcs/gzip", f"{name} is {'gzipped' if zipped else 'not gzipped'}",
                                f"write gzip: {'true' if zipped else 'false'}"))  # fmt: skip
    if found is None:
        return [
            *problems,
            Problem(
                "gcs/format",
                f"{name} is not JSON ({gcs.format} expected)",
                "check gcs/root and the path templates: they should place event files only",
            ),
        ]
    fits = found == gcs.format or (found == "jsonl_or_object" and gcs.format in ("jsonl", "json_object"))
    if not fits:
        problems.append(Problem("gcs/format", f"{name} is {_format_words(found)}, not {_format_words(gcs.format)}",
                                f"write format: {found}"))  # fmt: skip
        return problems
    record = next((r for r in records if isinstance(r, dict)), None)
    if record is None:
        return [*problems, Problem("gcs/format", f"{name} holds no JSON object", "check the path templates",
                                   warning=True)]  # fmt: skip
    event = _at(record, gcs.record) if gcs.record else record
    if not isinstance(event, dict) or "event_type" not in event:
        holder = next((k for k, v in record.items() if isinstance(v, dict) and "event_type" in v), None)
        fix = f"write record: {holder}" if holder else 'write record: the field holding the event ("" for the record)'
        problems.append(Problem("gcs/record", f"the records of {name} hold no event at {gcs.record or 'their root'} "
                                f"(keys: {', '.join(list(record)[:8])})", fix))  # fmt: skip
    for key, path in gcs.metadata.items():
        if _at(record, path) is None:
            problems.append(
                Problem(
                    f"gcs/metadata/{key}",
                    f"the records of {name} have no {path}",
                    f"write the record field holding {key}, or leave it out",
                )
            )
    return problems


def _format_words(name: str) -> str:
    return {"jsonl": "JSON lines", "json_array": "one JSON array", "json_object": "one JSON object per file",
            "jsonl_or_object": "one JSON object on one line"}.get(name, name)  # fmt: skip


def _at(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc
