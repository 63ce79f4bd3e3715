"""Sink contracts: where a pipeline puts each event it reads from the topic, declared in a YAML file.

    >>> contract = load_contract("my_pipeline.sinks.yaml")     # doctest: +SKIP
    >>> contract = default_contract()                          # this project's own pipeline

The file's shape is reconcile/sink_contract.schema.json (JSON Schema: editors validate the file as it is typed,
and load_contract checks every file against it first). What the schema cannot say is checked here against the
event schema (eventmodel.schema): every field path exists, every field of a table's type is kept or declared
omitted, a table matched by natural key keeps the key, a child table's parent key finds its event. Each problem
is a ContractError naming the place in the file and the fix.

This project's own pipeline is described by default_contract(), built from the same names the pipeline writes
with (eventmodel.resources, eventmodel.rows, pipeline.core): `workbench sinks show` prints it as YAML, and the
default reconcile goes through it, so there is one reconcile, driven by a contract.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from endpoints.errors import FixableError
from eventmodel import resources as names
from eventmodel import rows
from eventmodel.history import NATURAL_KEYS
from eventmodel.schema import EVENT_TIME_FIELD, EVENT_TYPES, MAX_PAYLOAD_BYTES, SCHEMAS, Field, field_paths

CONTRACT_VERSION = 1
SCHEMA_FILE = "sink_contract.schema.json"
DEDUPLICATED, AT_LEAST_ONCE = "deduplicated", "at_least_once"
DEAD_LETTERED, DROPPED_OK = "dead_lettered", "dropped_ok"
# The assessment's folder tree and file name (pipeline.core.file_path writes exactly this).
DEFAULT_PATH = "{type}/{YYYY}/{MM}/{DD}/{HH}/{mm}/{type}_{YYYY}{MM}{DD}{HH}{mm}{NNNN}.json"
# Time tokens of a path template, coarsest first, with the strftime directive each stands for.
TIME_TOKENS: dict[str, str] = {"YYYY": "%Y", "MM": "%m", "DD": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
_TOKEN = re.compile(r"\{([^{}]*)\}")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


class ContractError(FixableError):
    """A sink contract that cannot be used: where in the file, what is wrong, and what to write instead."""


@dataclass(frozen=True)
class Value:
    """How a sink keeps one field's value, when not as the event's own type: compared after converting."""

    stored_as: str | None = None  # string | timestamp | datetime | date | float64 | numeric | int64 | json | ...
    truncate: str | None = None  # second | minute | hour | day: the published time is truncated the same
    tolerance: float | None = None  # numbers compared after rounding both to a multiple of this
    case: str | None = None  # upper | lower: both sides compared in this case

    @property
    def normalises(self) -> bool:
        """Whether the published value must be changed the same way before comparing (not just read back)."""
        return bool(self.truncate or self.tolerance or self.case)


PLAIN = Value()


@dataclass(frozen=True)
class Column:
    column: str
    value: Value = PLAIN


@dataclass(frozen=True)
class ChildTable:
    """A table holding a records field of the event (order items), one row per element."""

    table: str
    field: str  # the records field, e.g. "items"
    parent_key: dict[str, str]  # event field path -> the child's column
    columns: dict[str, Column]  # member name -> column
    order_by: str | None = None
    partition_column: str | None = None


@dataclass(frozen=True)
class TableSink:
    """One BigQuery table holding events of one type."""

    table: str
    event_type: str
    columns: dict[str, Column] = field(default_factory=dict)  # field path -> column
    event_column: str | None = None  # a JSON/STRING column with the whole event
    omit: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)  # event_id, message_id, run_id, publish_time, landed_time
    children: tuple[ChildTable, ...] = ()
    partition_column: str | None = None

    @property
    def entry(self) -> str:
        return f"bigquery:{self.table}"

    @property
    def by_event_id(self) -> bool:
        return bool(self.metadata.get("event_id"))

    def values(self) -> dict[str, Value]:
        found = {p: c.value for p, c in self.columns.items() if c.value != PLAIN}
        for child in self.children:
            found.update({f"{child.field}.{m}": c.value for m, c in child.columns.items() if c.value != PLAIN})
        return found


@dataclass(frozen=True)
class PathTemplate:
    """A GCS path template of one type: its text, and what its tokens say."""

    text: str

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        """A regular expression matching a relative path, one named group per token occurrence."""
        out, seen = [], {}
        position = 0
        for match in _TOKEN.finditer(self.text):
            out.append(re.escape(self.text[position : match.start()]))
            token = match.group(1)
            seen[token] = seen.get(token, 0) + 1
            group = f"{_group(token)}_{seen[token]}"
            if token == "type":
                out.append(f"(?P<{group}>[a-z_]+)")
            elif token in TIME_TOKENS:
                out.append(f"(?P<{group}>\\d{{{4 if token == 'YYYY' else 2}}})")
            elif set(token) == {"N"}:
                out.append(f"(?P<{group}>\\d{{{len(token)},}})")  # at least: a sequence may outgrow its digits
            else:  # "*"
                out.append(f"(?P<{group}>[^/]*)")
            position = match.end()
        out.append(re.escape(self.text[position:]))
        return re.compile("^" + "".join(out) + "$")

    @property
    def time_tokens(self) -> tuple[str, ...]:
        """The time tokens the template holds, coarsest first (what a file's place says of the time)."""
        present = set(_TOKEN.findall(self.text))
        return tuple(t for t in TIME_TOKENS if t in present)

    @property
    def time_format(self) -> str:
        """strftime/FORMAT_TIMESTAMP format of the time the template places a file by, to its finest token."""
        return "".join(TIME_TOKENS[t] for t in self.time_tokens)

    def folder(self, event_type: str) -> str:
        """The fixed folder the template starts with, its {type} filled in ("order/"; "" when it starts with time)."""
        head = self.text.replace("{type}", event_type).split("{", 1)[0]
        return head.rsplit("/", 1)[0] + "/" if "/" in head else ""

    @property
    def suffix(self) -> str:
        """What every name of the template ends with (".json")."""
        return self.text.rsplit("}", 1)[-1] if "}" in self.text else self.text

    def match(self, relative: str, event_type: str) -> tuple[str | None, bool] | None:
        """(the file's time at the template's grain, e.g. "202502081309", or None; whether every repeat of a
        token agrees) for a path relative to the root; None when the path is not this type's template."""
        found = self.pattern.match(relative)
        if not found:
            return None
        groups = found.groupdict()
        values: dict[str, set[str]] = {}
        for name, text in groups.items():
            token = name.rsplit("_", 1)[0]
            values.setdefault(token, set()).add(text)
        if values.get("type", {event_type}) != {event_type}:
            return None
        consistent = all(len(v) == 1 for t, v in values.items() if t in {_group(x) for x in TIME_TOKENS})
        # The first occurrence of each token (the folder's, in the assessment's layout) says where the file is.
        when = "".join(groups[f"{_group(t)}_1"] for t in self.time_tokens) if self.time_tokens else None
        return when, consistent


def _group(token: str) -> str:
    """A regex group name for a token (YYYY and yyyy would clash otherwise; N-runs and * get fixed names)."""
    if token in TIME_TOKENS:
        return {"YYYY": "year", "MM": "month", "DD": "day", "HH": "hour", "mm": "minute", "ss": "second"}[token]
    if token == "type":
        return "type"
    return "sequence" if set(token) == {"N"} else "any"


@dataclass(frozen=True)
class GcsSink:
    root: str | None
    format: str = "jsonl"
    gzip: bool = False
    record: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    paths: dict[str, PathTemplate] = field(default_factory=dict)
    placed_by: str = "event_time"
    tolerance_s: float = 0.0
    values: dict[str, Value] = field(default_factory=dict)

    def entry(self, event_type: str) -> str:
        """The report's name of one type's files (a contract entry per type folder)."""
        return f"gcs:{event_type}"

    @property
    def by_event_id(self) -> bool:
        return bool(self.metadata.get("event_id"))


@dataclass(frozen=True)
class DeadLetterTable:
    table: str
    payload: str
    columns: dict[str, str] = field(default_factory=dict)  # reason, error, event_id, message_id, run_id, ...
    partition_column: str | None = None
    payload_cut_bytes: int | None = None


@dataclass(frozen=True)
class DeadLetterFiles:
    prefix: str
    format: str = "jsonl"
    gzip: bool = False
    payload: str = "payload"
    payload_encoding: str = "text"
    reason: str | None = None


@dataclass(frozen=True)
class DeadLetters:
    topic: str | None = None
    table: DeadLetterTable | None = None
    gcs: DeadLetterFiles | None = None
    reason_codes: str = "any"  # "workbench": each dead letter must carry the expected reason code


@dataclass(frozen=True)
class Contract:
    name: str
    duplicates: str = DEDUPLICATED
    malformed: str = DEAD_LETTERED
    natural_keys: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(NATURAL_KEYS))
    gcs: GcsSink | None = None
    dataset: str | None = None
    tables: tuple[TableSink, ...] = ()
    dead_letters: DeadLetters = field(default_factory=DeadLetters)
    source: str = "built-in"

    @functools.cached_property
    def entries(self) -> list[str]:
        """Every place the contract names, as the report counts them."""
        found = [self.gcs.entry(t) for t in EVENT_TYPES] if self.gcs else []
        for t in self.tables:
            found.append(t.entry)
            found.extend(f"bigquery:{c.table}" for c in t.children)
        letters = self.dead_letters
        if letters.table:
            found.append(f"dead_letters:table:{letters.table.table}")
        if letters.topic:
            found.append(f"dead_letters:topic:{letters.topic}")
        if letters.gcs:
            found.append(f"dead_letters:gcs:{letters.gcs.prefix}")
        return found

    def needs_published_events(self) -> bool:
        """Whether reconcile must read what was published, field by field (a sink without our event ids, or one
        that keeps values converted), rather than the manifest's ids and digests alone."""
        sinks: list[Any] = [*self.tables, *([self.gcs] if self.gcs else [])]
        return any(not s.by_event_id or any(v.normalises for v in _values(s).values()) or _omits(s) for s in sinks)


def _values(sink: TableSink | GcsSink) -> dict[str, Value]:
    return sink.values() if isinstance(sink, TableSink) else sink.values


def _omits(sink: TableSink | GcsSink) -> bool:
    return bool(sink.omit) if isinstance(sink, TableSink) else False


# ------------------------------------------------------------------------------------------------ loading


@functools.cache
def json_schema() -> dict[str, Any]:
    """The contract file's JSON Schema, as shipped in the package."""
    return json.loads(resources.files("reconcile").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


def load_contract(path: str | Path) -> Contract:
    """The contract in a YAML (or JSON) file, checked; ContractError naming the place and the fix."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError(f"cannot read the sink contract {path}: {exc.strerror}", "pass --sinks FILE") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ContractError(
            f"{path} is not YAML{where}: {getattr(exc, 'problem', exc)}", "fix the YAML syntax"
        ) from None
    return parse_contract(document, source=str(path))


def parse_contract(document: Any, source: str = "<contract>") -> Contract:
    """A contract from its parsed document: checked against the JSON Schema, then against the event schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json_schema())
    problems = sorted(validator.iter_errors(document), key=lambda e: (len(e.absolute_path), list(e.absolute_path)))
    if problems:
        first = problems[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ContractError(
            f"{source}: at {where}: {first.message}{more}",
            f"write it as reconcile/{SCHEMA_FILE} describes (`workbench sinks show` prints a complete example)",
        )
    return _build(document, source)


def _build(doc: dict[str, Any], source: str) -> Contract:
    keys = {t: tuple(NATURAL_KEYS[t]) for t in EVENT_TYPES}
    for event_type, paths in ((doc.get("identity") or {}).get("natural_keys") or {}).items():
        for path in paths:
            _known_path(source, f"identity/natural_keys/{event_type}", event_type, path)
        keys[event_type] = tuple(paths)
    gcs = _gcs(source, doc["gcs"]) if doc.get("gcs") else None
    bigquery = doc.get("bigquery") or {}
    tables = tuple(_table(source, i, t) for i, t in enumerate(bigquery.get("tables") or ()))
    for i, table in enumerate(tables):
        if not table.by_event_id:
            kept = _kept_paths(table)
            lacking = [p for p in keys[table.event_type] if p not in kept]
            if lacking:
                raise ContractError(
                    f"{source}: bigquery/tables/{i} ({table.table}) names no event_id column, so its rows are found "
                    f"by the natural key of {table.event_type} ({', '.join(keys[table.event_type])}), but it keeps "
                    f"no column for {', '.join(lacking)}",
                    "map those fields to columns, name an event_id column under metadata, or change "
                    "identity/natural_keys",
                )
    return Contract(
        name=doc.get("name") or Path(source).name,
        duplicates=doc.get("duplicates", DEDUPLICATED),
        malformed=doc.get("malformed", DEAD_LETTERED),
        natural_keys=keys,
        gcs=gcs,
        dataset=bigquery.get("dataset"),
        tables=tables,
        dead_letters=_dead_letters(doc.get("dead_letters") or {}),
        source=source,
    )


def _known_path(source: str, where: str, event_type: str, path: str) -> Field:
    known = field_paths(event_type)
    if path not in known:
        raise ContractError(
            f"{source}: at {where}: {event_type} has no field {path!r}",
            f"use one of: {', '.join(sorted(known))}",
        )
    return known[path]


def _value(spec: dict[str, Any]) -> Value:
    return Value(spec.get("stored_as"), spec.get("truncate"), spec.get("tolerance"), spec.get("case"))


def _column(spec: str | dict[str, Any]) -> Column:
    return Column(spec) if isinstance(spec, str) else Column(spec["column"], _value(spec))


def _check_value(source: str, where: str, f: Field, value: Value) -> None:
    if value.truncate and f.kind != "timestamp":
        raise ContractError(f"{source}: at {where}: truncate applies to times, and this field is a {f.kind}",
                            "remove truncate")  # fmt: skip
    if value.tolerance and f.kind not in ("number", "integer"):
        raise ContractError(f"{source}: at {where}: tolerance applies to numbers, and this field is a {f.kind}",
                            "remove tolerance")  # fmt: skip
    if value.case and f.kind not in ("enum", "string", "uuid"):
        raise ContractError(f"{source}: at {where}: case applies to text, and this field is a {f.kind}",
                            "remove case")  # fmt: skip


def _table(source: str, index: int, spec: dict[str, Any]) -> TableSink:
    event_type = spec["type"]
    where = f"bigquery/tables/{index}"
    columns = {path: _column(c) for path, c in (spec.get("columns") or {}).items()}
    for path, column in columns.items():
        f = _known_path(source, f"{where}/columns", event_type, path)
        _check_value(source, f"{where}/columns/{path}", f, column.value)
    children = []
    for j, child in enumerate(spec.get("children") or ()):
        cwhere = f"{where}/children/{j}"
        f = _known_path(source, cwhere + "/field", event_type, child["field"])
        if f.kind != "records":
            raise ContractError(f"{source}: at {cwhere}/field: {child['field']} is a {f.kind}, not an array of records",
                                "a child table holds an array of records (order items)")  # fmt: skip
        members = {m.name: m for m in f.fields}
        for member, column in (child.get("columns") or {}).items():
            if member not in members:
                raise ContractError(f"{source}: at {cwhere}/columns: {child['field']} has no member {member!r}",
                                    f"use one of: {', '.join(members)}")  # fmt: skip
            _check_value(source, f"{cwhere}/columns/{member}", members[member], _column(column).value)
        for path in child["parent_key"]:
            _known_path(source, f"{cwhere}/parent_key", event_type, path)
        children.append(ChildTable(child["table"], child["field"], dict(child["parent_key"]),
                                   {m: _column(c) for m, c in child["columns"].items()}, child.get("order_by"),
                                   child.get("partition_column")))  # fmt: skip
    omit = tuple(spec.get("omit") or ())
    for path in omit:
        _known_path(source, f"{where}/omit", event_type, path)
    table = TableSink(spec["table"], event_type, columns, spec.get("event_column"), omit,
                      {k: v for k, v in (spec.get("metadata") or {}).items() if v}, tuple(children),
                      spec.get("partition_column"))  # fmt: skip
    if not table.event_column:
        kept = _kept_paths(table)
        # event_type is the table's own type when no column keeps it (a table per type rarely repeats it).
        lost = [f.name for f in SCHEMAS[event_type] if f.name != "event_type" and not _covered(f.name, kept, omit)]
        if lost:
            raise ContractError(
                f"{source}: at {where} ({table.table}): {event_type} field(s) {', '.join(lost)} are neither kept in a "
                "column nor declared omitted",
                "map each to a column (columns: {field: column}), or list it under omit if the table drops it",
            )
    for child in table.children:
        unkept = [
            path for path in child.parent_key if path not in table.columns and path.split(".")[0] not in table.columns
        ]
        if unkept:
            raise ContractError(
                f"{source}: at {where}/children ({child.table}): its parent key names {', '.join(unkept)}, which the "
                f"table {table.table} keeps in no column of its own",
                "join the child on columns the parent table has (map those fields under columns)",
            )
        parent_keys = set(child.parent_key)
        if not table.by_event_id and not set(NATURAL_KEYS[event_type]) <= parent_keys:
            raise ContractError(
                f"{source}: at {where}/children ({child.table}): its parent key ({', '.join(child.parent_key)}) does "
                f"not identify one {event_type} event (its natural key is {', '.join(NATURAL_KEYS[event_type])})",
                "join the child table on every natural-key field of its parent event",
            )
    return table


def _kept_paths(table: TableSink) -> set[str]:
    """The field paths a table keeps (a record column keeps its members; an event column keeps everything)."""
    if table.event_column:
        return set(field_paths(table.event_type))
    kept = set(table.columns)
    for path in list(kept):
        kept.update(p for p in field_paths(table.event_type) if p.startswith(f"{path}."))
    for child in table.children:
        kept.add(child.field)
        kept.update(f"{child.field}.{m}" for m in child.columns)
    return kept


def _covered(name: str, kept: set[str], omit: tuple[str, ...]) -> bool:
    return name in kept or name in omit or any(p.startswith(f"{name}.") for p in (*kept, *omit))


def parse_duration(text: str) -> float:
    """Seconds of a contract duration: 500ms, 30s, 10m, 2h, or a bare number of seconds."""
    found = _DURATION.match(str(text).strip())
    if not found:
        raise ContractError(f"not a duration: {text!r}", "write it as 500ms, 30s, 10m or 2h")
    number, unit = float(found.group(1)), found.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def _gcs(source: str, spec: dict[str, Any]) -> GcsSink:
    paths = {t: PathTemplate((spec.get("paths") or {}).get(t, DEFAULT_PATH)) for t in EVENT_TYPES}
    placed_by = spec.get("placed_by", "event_time")
    for event_type, template in paths.items():
        for token in _TOKEN.findall(template.text):
            if token not in TIME_TOKENS and token not in ("type", "*") and set(token) != {"N"}:
                raise ContractError(f"{source}: at gcs/paths/{event_type}: unknown token {{{token}}}",
                                    "use {type} {YYYY} {MM} {DD} {HH} {mm} {ss} {NNNN} or {*}")  # fmt: skip
        if placed_by != "unchecked" and not template.time_tokens:
            raise ContractError(f"{source}: at gcs/paths/{event_type}: placed_by {placed_by}, but no time in the path",
                                "add time tokens ({YYYY}/{MM}/...), or set placed_by: unchecked")  # fmt: skip
    values = {}
    for path, value in (spec.get("values") or {}).items():
        matched = [t for t in EVENT_TYPES if path in field_paths(t)]
        if not matched:
            raise ContractError(f"{source}: at gcs/values: no event type has a field {path!r}",
                                "name a field path of an event (docs/generator.md)")  # fmt: skip
        values[path] = _value(value)
    tolerance = parse_duration(spec["tolerance"]) if spec.get("tolerance") else 0.0
    if placed_by == "processing_time" and not tolerance:
        raise ContractError(
            f"{source}: at gcs: placed_by processing_time needs a tolerance",
            "add tolerance: 10m (how far a file's folder time may be from when it was written)",
        )
    return GcsSink(spec.get("root"), spec.get("format", "jsonl"), bool(spec.get("gzip")), spec.get("record", ""),
                   {k: v for k, v in (spec.get("metadata") or {}).items() if v}, paths, placed_by, tolerance,
                   values)  # fmt: skip


def _dead_letters(spec: dict[str, Any]) -> DeadLetters:
    table = None
    if spec.get("table"):
        t = dict(spec["table"])
        table = DeadLetterTable(t.pop("table"), t.pop("payload"), partition_column=t.pop("partition_column", None),
                                payload_cut_bytes=t.pop("payload_cut_bytes", None), columns=t)  # fmt: skip
    files = DeadLetterFiles(**spec["gcs"]) if spec.get("gcs") else None
    return DeadLetters(spec.get("topic"), table, files, spec.get("reason_codes", "any"))


# -------------------------------------------------------------------------------------- the default contract


def default_document(
    output_root: str | None = "./output", dataset: str | None = names.DATASET, topic: str | None = None
) -> dict[str, Any]:
    """This project's own pipeline as a contract document (what `workbench sinks show` prints): the names come
    from where the pipeline takes them, so the contract cannot drift from the pipeline."""
    metadata = {rows.EVENT_ID: rows.EVENT_ID, rows.MESSAGE_ID: rows.MESSAGE_ID, rows.RUN_ID: rows.RUN_ID,
                rows.PUBLISH_TIME: rows.PUBLISH_TIME, "landed_time": rows.INGEST_TIME}  # fmt: skip
    document: dict[str, Any] = {
        "version": CONTRACT_VERSION,
        "name": "event-workbench pipeline (built-in)",
        "duplicates": DEDUPLICATED,
        "malformed": DEAD_LETTERED,
    }
    if output_root:
        document["gcs"] = {
            "root": output_root,
            "format": "jsonl",
            "gzip": False,
            "record": "event",  # pipeline.core.file_line: event_id, message_id, publish_time, attributes, event
            "metadata": {
                "event_id": "event_id",
                "message_id": "message_id",
                "publish_time": "publish_time",
                "run_id": f"attributes.{names.ATTR_RUN_ID}",
            },
            "paths": {t: DEFAULT_PATH for t in EVENT_TYPES},
            "placed_by": "event_time",
        }
    if dataset:
        document["bigquery"] = {
            "dataset": dataset,
            "tables": [
                {
                    "table": rows.table_of(t),
                    "type": t,
                    "partition_column": EVENT_TIME_FIELD[t],  # ddl/1*_*.sql PARTITION BY DATE(<event time>)
                    "columns": {f.name: f.name for f in SCHEMAS[t]},  # records and structs as ARRAY<STRUCT>/STRUCT
                    "metadata": dict(metadata),
                }
                for t in EVENT_TYPES
            ],
        }
    letters: dict[str, Any] = {"reason_codes": "workbench"}
    if topic:
        letters["topic"] = topic
    if dataset:
        letters["table"] = {
            "table": rows.DEAD_LETTER_TABLE,
            "payload": rows.PAYLOAD,
            "reason": rows.REASON,
            "error": rows.DETAIL,
            "event_id": rows.EVENT_ID,
            "message_id": rows.MESSAGE_ID,
            "run_id": rows.RUN_ID,
            "stage": "stage",
            "publish_time": rows.PUBLISH_TIME,
            "landed_time": rows.INGEST_TIME,
            "partition_column": rows.INGEST_TIME,  # ddl/13_dead_letters.sql PARTITION BY DATE(ingest_time)
            "payload_cut_bytes": MAX_PAYLOAD_BYTES,  # eventmodel.rows.dead_letter_row cuts an oversize payload
        }
    document["dead_letters"] = letters
    return document


@functools.lru_cache(maxsize=32)
def default_contract(
    output_root: str | None = "./output", dataset: str | None = names.DATASET, topic: str | None = None
) -> Contract:
    """This project's pipeline as a Contract (checked like any user's)."""
    return parse_contract(default_document(output_root, dataset, topic), source="built-in")


def to_yaml(document: dict[str, Any]) -> str:
    import yaml

    header = f"# Event Workbench sink contract (reconcile/{SCHEMA_FILE}); `workbench reconcile RUN --sinks FILE`\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)
