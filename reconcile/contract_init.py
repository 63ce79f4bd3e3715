"""A starting sink contract guessed from the live sinks (`workbench sinks init`): pure functions over the tables'
schemas (reconcile.contract_check.BqTable) and a sample of the GCS tree (relative paths and a few files' bytes).

    >>> template_of("order/2025/02/08/13/09/order_2025020813090001.json")
    '{type}/{YYYY}/{MM}/{DD}/{HH}/{mm}/{type}_{YYYY}{MM}{DD}{HH}{mm}{NNNN}.json'
    >>> field_of_column("user_activity", "session_id"), field_of_column("order", "ship_city")
    ('metadata.session_id', 'shipping_address.city')

What it guesses, in order: which tables are dead-letter tables (a payload column beside a reason or error, or a
name saying so), which are child tables of a records field (the records' member columns plus the parent's
natural-key columns), which hold whole events (a JSON column, or a STRING one named like payload/event), and the
event type of the rest (the type whose fields most columns match). Columns match fields by path (`shipping_address_
city`), by leaf name (`session_id` -> metadata.session_id), by a shortened parent (`ship_city` -> shipping_address.
city) and, for the event's own time, by the usual names (`event_time`). stored_as comes from the column's type,
partition_column from the table's time partitioning. What it cannot tell is marked `# TODO:` in the file; a field
left without a column goes under omit (with a TODO), so that the file loads.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from eventmodel.history import NATURAL_KEYS
from eventmodel.schema import EVENT_TIME_FIELD, EVENT_TYPES, SCHEMAS, Field, field_paths
from reconcile.contract import CONTRACT_VERSION, DEFAULT_PATH, PathTemplate
from reconcile.contract_check import BqColumn, BqTable, _conversion, sniff

EVENT_TIME_NAMES = ("event_time", "event_timestamp", "event_ts", "event_at", "occurred_at", "ts")
LANDED_NAMES = ("landed_time", "landed_at", "ingest_time", "ingested_at", "ingestion_time", "processed_at",
                "processing_time", "loaded_at", "load_time", "inserted_at", "insert_time", "received_at",
                "written_at")  # fmt: skip
PAYLOAD_NAMES = ("payload", "raw_payload", "raw", "data", "message", "raw_message", "original_message", "body")
EVENT_COLUMN_NAMES = ("payload", "event", "event_json", "event_payload", "data", "json", "raw", "body", "record")
REASON_NAMES = ("reason", "reason_code", "error_kind", "error_type", "error_code", "failure_reason")
ERROR_NAMES = ("error", "error_message", "detail", "details", "error_detail", "message_error", "exception")
POSITION_NAMES = ("line_no", "line_number", "line", "position", "pos", "idx", "index", "item_index", "seq",
                  "ordinal", "item_no")  # fmt: skip
DEAD_LETTER_WORDS = ("dead", "dlq", "reject", "error", "invalid", "quarantine", "bad", "failed")
TIME_ORDER = ("YYYY", "MM", "DD", "HH", "mm", "ss")
KEY_TOKENS = {"year": "YYYY", "yyyy": "YYYY", "month": "MM", "day": "DD", "dd": "DD", "hour": "HH", "hh": "HH",
              "h": "HH", "minute": "mm", "min": "mm", "mi": "mm"}  # fmt: skip
SUFFIXES = (".jsonl.gz", ".json.gz", ".ndjson.gz", ".jsonl", ".ndjson", ".json", ".gz", ".txt")


# --------------------------------------------------------------------------------------------- columns


def _candidates(event_type: str) -> dict[str, Field]:
    """Field paths a table column can hold: top-level fields and record members (not records members: those sit
    in an ARRAY column or a child table)."""
    records = {f.name for f in SCHEMAS[event_type] if f.kind == "records"}
    return {p: f for p, f in field_paths(event_type).items() if p.split(".")[0] not in records or "." not in p}


def field_of_column(event_type: str, column: str, taken: frozenset[str] = frozenset()) -> str | None:
    """The field path a column name stands for, or None: by path, by leaf name, by a shortened parent name, and
    the event's own time by its usual names."""
    name = column.lower()
    paths = [p for p in _candidates(event_type) if p not in taken]
    for path in paths:
        if name in (path, path.replace(".", "_")):
            return path
    leaves = [p for p in paths if "." in p and p.rsplit(".", 1)[1] == name]
    if len(leaves) == 1:
        return leaves[0]
    for path in paths:
        if "." in path:
            parent, leaf = path.rsplit(".", 1)
            head = name[: -len(leaf) - 1] if name.endswith(f"_{leaf}") else ""
            if len(head) >= 3 and parent.startswith(head):
                return path
    time_field = EVENT_TIME_FIELD[event_type]
    if name in EVENT_TIME_NAMES and time_field not in taken:
        return time_field
    return None


@dataclass
class Matched:
    columns: dict[str, Any] = field(default_factory=dict)  # field path -> column name or {column, stored_as}
    unfit: dict[str, str] = field(default_factory=dict)  # field path -> why the like-named column cannot hold it
    used: set[str] = field(default_factory=set)


def _spec(f: Field, column: BqColumn) -> tuple[Any, str | None]:
    """The contract's value for a field kept in a column (a name, or {column, stored_as}), or (None, why not)."""
    fits, needed = _conversion(f, column, None)
    if not fits:
        return None, f"{column.name} is {column.spelled}, which cannot hold a {f.kind}"
    own = {"timestamp": "TIMESTAMP", "number": "NUMERIC", "integer": "INT64"}.get(f.kind, "STRING")
    if f.kind in ("record", "records") or (column.type == own and not column.repeated):
        return column.name, None
    return {"column": column.name, "stored_as": needed}, None


def match_columns(event_type: str, table: BqTable, skip: set[str] = frozenset()) -> Matched:  # type: ignore[assignment]
    """Each column of the table that stands for a field of the type, mapped with its stored_as."""
    found = Matched()
    paths = field_paths(event_type)
    for column in table.columns:
        if column.name in skip:
            continue
        taken = frozenset(found.columns) | frozenset(found.unfit)
        path = field_of_column(event_type, column.name, taken)
        if path is None or (paths[path].kind in ("record", "records")) != (column.type == "STRUCT"):
            continue
        spec, why = _spec(paths[path], column)
        if spec is None:
            found.unfit[path] = why or ""
        else:
            found.columns[path] = spec
            found.used.add(column.name)
    # A record kept whole makes its members' own columns redundant, and the other way round.
    for path in list(found.columns):
        if "." in path and path.split(".")[0] in found.columns:
            found.used.discard(_name(found.columns.pop(path)))
    return found


def _name(spec: Any) -> str:
    return spec if isinstance(spec, str) else spec["column"]


def _named(table: BqTable, names: tuple[str, ...], types: tuple[str, ...]) -> str | None:
    for wanted in names:
        column = table.column(wanted)
        if column is not None and column.type in types and not column.repeated:
            return column.name
    return None


def metadata_of(table: BqTable) -> dict[str, str]:
    """The pipeline's own columns beside the fields: event_id, message_id, run_id, publish_time, landed_time."""
    found = {}
    for key in ("event_id", "message_id", "run_id"):
        if name := _named(table, (key,), ("STRING",)):
            found[key] = name
    if name := _named(table, ("publish_time", "published_at"), ("TIMESTAMP",)):
        found["publish_time"] = name
    if name := _named(table, LANDED_NAMES, ("TIMESTAMP",)):
        found["landed_time"] = name
    return found


def type_scores(table: BqTable) -> dict[str, float]:
    """How many columns of the table stand for fields of each type, plus a half for a table named like it."""
    scores = {}
    for event_type in EVENT_TYPES:
        score = float(len(match_columns(event_type, table).columns))
        scores[event_type] = score + (0.5 if event_type in table.name.lower() else 0)
    return scores


def named_type(name: str) -> str | None:
    """The event type a table's name mentions (the longest, so user_activity_events is not 'order' by accident)."""
    lower = name.lower()
    return next((t for t in sorted(EVENT_TYPES, key=len, reverse=True) if t in lower), None)


def guess_type(table: BqTable) -> str | None:
    scores = type_scores(table)
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    return best if top >= 2 and top > second else None


# ---------------------------------------------------------------------------------------- table kinds


def dead_letter_of(table: BqTable) -> dict[str, str] | None:
    """The dead_letters/table entry of a table that looks like one (a payload column beside a reason or error, or
    a name that says so), else None."""
    payload = _named(table, PAYLOAD_NAMES, ("STRING", "BYTES"))
    reason = _named(table, REASON_NAMES, ("STRING",))
    error = _named(table, tuple(n for n in ERROR_NAMES if n != reason), ("STRING",))
    named = any(word in table.name.lower() for word in DEAD_LETTER_WORDS)
    if payload is None or not (reason or error or named):
        return None
    entry = {"table": table.name, "payload": payload}
    if reason:
        entry["reason"] = reason
    if error:
        entry["error"] = error
    for key, name in metadata_of(table).items():
        entry[key] = name
    if stage := _named(table, ("stage", "failed_stage"), ("STRING",)):
        entry["stage"] = stage
    if table.partition_field:
        entry["partition_column"] = table.partition_field
    return entry


def event_column_of(table: BqTable) -> str | None:
    """A column holding the whole event: a JSON column, or a STRING one named like payload/event/data."""
    json_columns = [c.name for c in table.columns if c.type == "JSON" and not c.repeated]
    if json_columns:
        return json_columns[0]
    return _named(table, EVENT_COLUMN_NAMES, ("STRING",))


@dataclass(frozen=True)
class ChildGuess:
    table: str
    event_type: str
    field: str
    members: dict[str, Any]
    parent_key: dict[str, str]
    lacking_keys: tuple[str, ...]
    order_by: str | None
    partition_column: str | None


def child_of(table: BqTable) -> ChildGuess | None:
    """The records field a table holds one element per row of: at least half of the records' members (two or
    more) by name, and a column of the parent's natural key."""
    for event_type in EVENT_TYPES:
        for f in SCHEMAS[event_type]:
            if f.kind != "records":
                continue
            members: dict[str, Any] = {}
            for member in f.fields:
                column = table.column(member.name)
                if column is not None:
                    spec, _ = _spec(member, column)
                    if spec is not None:
                        members[member.name] = spec
            if len(members) < max(2, len(f.fields) / 2):
                continue
            keys = {}
            for path in NATURAL_KEYS[event_type]:
                name = field_of_column_in(table, event_type, path)
                if name:
                    keys[path] = name
            if not keys:
                continue
            lacking = tuple(p for p in NATURAL_KEYS[event_type] if p not in keys)
            order_by = _named(table, POSITION_NAMES, ("INT64",))
            partition = table.partition_field
            return ChildGuess(table.name, event_type, f.name, members, keys, lacking, order_by, partition)
    return None


def field_of_column_in(table: BqTable, event_type: str, path: str) -> str | None:
    """The table's column that stands for a field path, if any."""
    for column in table.columns:
        if field_of_column(event_type, column.name) == path:
            return column.name
    return None


# ------------------------------------------------------------------------------------------ GCS paths


def _suffix(name: str) -> tuple[str, str]:
    lower = name.lower()
    for suffix in SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return name, ""


def _time_key_value(segment: str, state: list[str]) -> str | None:
    """A folder of the time: 2025, 02 (after the year), 2025-02-08, dt=2025-02-08, hour=13."""
    key, sep, value = segment.partition("=")
    if not sep:
        key, value = "", segment
    prefix = f"{key}=" if sep else ""
    if re.fullmatch(r"(19|20)\d\d-\d\d-\d\d", value):
        state.extend(("YYYY", "MM", "DD"))
        return f"{prefix}{{YYYY}}-{{MM}}-{{DD}}"
    if re.fullmatch(r"(19|20)\d{6}", value):
        state.extend(("YYYY", "MM", "DD"))
        return f"{prefix}{{YYYY}}{{MM}}{{DD}}"
    if re.fullmatch(r"(19|20)\d\d", value) and not state:
        state.append("YYYY")
        return f"{prefix}{{YYYY}}"
    if re.fullmatch(r"\d\d", value):
        token = KEY_TOKENS.get(key.lower()) if key else None
        if token is None and state and len(state) < len(TIME_ORDER):
            token = TIME_ORDER[len(state)]
        if token:
            state.append(token)
            return f"{prefix}{{{token}}}"
    return None


def template_of(relative: str) -> str:
    """A path template for one file's path relative to the root: the type's name becomes {type}, the time folders
    and a file name's time digits time tokens, a sequence after them {NNNN}, and other varying text {*}."""
    event_type = named_type(relative)
    segments = relative.split("/")
    state: list[str] = []
    digits: list[str] = []  # the folder time's digits, to recognise them again in the file name
    out = []
    for segment in segments[:-1]:
        if event_type and segment == event_type:
            out.append("{type}")
            continue
        before = len(state)
        token = _time_key_value(segment, state)
        if token is not None:
            digits.append(re.sub(r"\D", "", segment.partition("=")[2] or segment))
            out.append(token)
        elif re.search(r"\d", segment):
            del state[before:]
            out.append("{*}")
        else:
            out.append(segment.replace("{", "").replace("}", ""))
    stem, suffix = _suffix(segments[-1])
    name = "{*}"
    if event_type and event_type in stem:
        head, _, rest = stem.partition(event_type)
        sep = rest[:1] if rest[:1] in "_-." else ""
        rest = rest[len(sep) :]
        lead = "{*}" if head else ""
        name = f"{lead}{{type}}{sep}{_digits_template(rest, ''.join(digits), state)}" if rest else f"{lead}{{type}}"
    return "/".join([*out, name + suffix])


def _digits_template(rest: str, folder: str, state: list[str]) -> str:
    if not rest.isdigit():
        return "{*}"
    tokens = [t for t in TIME_ORDER if t in state]
    if folder and rest.startswith(folder):
        lead, tail = "".join(f"{{{t}}}" for t in tokens), rest[len(folder) :]
    elif len(rest) >= 12 and rest[:2] in ("19", "20"):
        tokens = list(TIME_ORDER[:5])
        lead, tail = "{YYYY}{MM}{DD}{HH}{mm}", rest[12:]
    else:
        return "{" + "N" * len(rest) + "}"
    if not tail:
        return lead
    if len(tail) == 2 and int(tail) < 60 and "mm" in tokens and "ss" not in tokens:
        return lead + "{ss}"
    return lead + "{" + "N" * len(tail) + "}"


# ---------------------------------------------------------------------------------------------- the guess


@dataclass
class Guess:
    """A starting contract: the document, comments by the path of the key they sit above, and the header."""

    document: dict[str, Any]
    comments: dict[tuple[Any, ...], str] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)

    def todo(self, path: tuple[Any, ...], text: str) -> None:
        self.note(path, f"TODO: {text}")

    def note(self, path: tuple[Any, ...], text: str) -> None:
        self.comments[path] = f"{self.comments[path]}\n{text}" if path in self.comments else text

    @property
    def todos(self) -> list[str]:
        return [line for c in [*self.header, *self.comments.values()] for line in c.split("\n") if "TODO:" in line]


def _table_entry(guess: Guess, index: int, table: BqTable, event_type: str, event_column: str | None,
                 children: list[ChildGuess]) -> dict[str, Any]:  # fmt: skip
    here: tuple[Any, ...] = ("bigquery", "tables", index)
    metadata = metadata_of(table)
    skip = set(metadata.values()) | ({event_column} if event_column else set())
    matched = match_columns(event_type, table, skip)
    entry: dict[str, Any] = {"table": table.name, "type": event_type}
    if table.partition_field:
        entry["partition_column"] = table.partition_field
    elif table.time_partitioned:
        unknown = (
            f"{table.name} reports no partitioning column (ingestion-time partitioning, or a table the local "
            "emulator made by DDL): if it is partitioned by a column, write partition_column: COLUMN"
        )
        if table.require_partition_filter:
            guess.todo((*here, "table"), unknown + " (it requires a partition filter: BigQuery refuses reads without)")
        else:
            guess.note((*here, "table"), unknown)
    if event_column:
        entry["event_column"] = event_column
    if matched.columns:
        entry["columns"] = matched.columns
    mine = [c for c in children if c.event_type == event_type and c.field not in matched.columns]
    if mine and not event_column:
        entry["children"] = []
        for child in mine:
            spec: dict[str, Any] = {"table": child.table, "field": child.field, "parent_key": child.parent_key}
            if child.order_by:
                spec["order_by"] = child.order_by
            if child.partition_column:
                spec["partition_column"] = child.partition_column
            spec["columns"] = child.members
            position = (*here, "children", len(entry["children"]))
            if child.lacking_keys and not metadata.get("event_id"):
                keys = ", ".join(NATURAL_KEYS[event_type])
                guess.todo((*position, "parent_key"), f"{child.table} has no column for {', '.join(child.lacking_keys)}"
                           f": its rows do not name one {event_type} event (natural key {keys}), and the contract "
                           "does not load until they do")  # fmt: skip
            lacking_members = [m.name for m in _records(event_type, child.field).fields if m.name not in child.members]
            if lacking_members:
                spec["columns"] = dict(child.members)
                guess.todo((*position, "columns"), f"no column found for {', '.join(lacking_members)}: name it here")
            if not child.order_by:
                guess.note((*position, "field"), "no position column found: elements are compared as a set "
                                                 "(order_by: COLUMN if the table keeps their order)")  # fmt: skip
            entry["children"].append(spec)
            children.remove(child)
    if not event_column:
        kept = set(matched.columns) | {c.field for c in mine}
        omit = _unkept(event_type, kept)
        if omit:
            entry["omit"] = omit
            why = "; ".join(f"{p}: {matched.unfit[p]}" for p in omit if p in matched.unfit)
            guess.todo((*here, "omit"), f"no column found for {', '.join(omit)}{f' ({why})' if why else ''}: map each "
                       "the table keeps under columns and remove it here; leave the ones it drops")  # fmt: skip
        if not metadata.get("event_id"):
            lost = [p for p in NATURAL_KEYS[event_type] if p not in _kept_with_members(event_type, kept)]
            if lost:
                guess.todo(
                    (*here, "table"),
                    f"rows of {table.name} are found by the natural key of {event_type} "
                    f"({', '.join(NATURAL_KEYS[event_type])}), and no column keeps {', '.join(lost)}: the "
                    "contract does not load until one does (or an event_id column is named under metadata)",
                )
    if metadata:
        entry["metadata"] = metadata
    unused = [c.name for c in table.columns if c.name not in matched.used and c.name not in skip]
    if unused:
        guess.note((*here, "table"), f"columns not mapped: {', '.join(unused)}")
    return entry


def _records(event_type: str, name: str) -> Field:
    return next(f for f in SCHEMAS[event_type] if f.name == name)


def _kept_with_members(event_type: str, kept: set[str]) -> set[str]:
    return kept | {p for p in field_paths(event_type) if any(p.startswith(f"{k}.") for k in kept)}


def _unkept(event_type: str, kept: set[str]) -> list[str]:
    """Field paths with no column, coarsest first (a record with no member kept is omitted whole); event_type is
    the table's own type and needs none."""
    omit = []
    for f in SCHEMAS[event_type]:
        if f.name == "event_type" or f.name in kept:
            continue
        if f.kind == "record":
            members = [f"{f.name}.{m.name}" for m in f.fields]
            kept_members = [m for m in members if m in kept]
            omit += [m for m in members if m not in kept] if kept_members else [f.name]
        else:
            omit.append(f.name)
    return omit


def bigquery_guess(guess: Guess, dataset: str, tables: list[BqTable]) -> None:
    """The bigquery and dead_letters/table sections of the document, from every table of the dataset."""
    views = [t.name for t in tables if t.kind != "TABLE"]
    if views:
        guess.header.append(f"views and other non-tables not used: {', '.join(views)}")
    tables = [t for t in tables if t.kind == "TABLE"]
    letters = [entry for t in tables if (entry := dead_letter_of(t))]
    rest = [t for t in tables if t.name not in {e["table"] for e in letters}]
    children = [c for t in rest if (c := child_of(t)) is not None and guess_type(t) in (None, c.event_type)]
    child_names = {c.table for c in children}
    entries: list[dict[str, Any]] = []
    unused: list[str] = []
    for table in rest:
        if table.name in child_names:
            continue
        event_column = event_column_of(table)
        event_type = (named_type(table.name) or guess_type(table)) if event_column else guess_type(table)
        if event_type is None:
            unused.append(table.name)
            continue
        entries.append(_table_entry(guess, len(entries), table, event_type, event_column, children))
    seen: dict[str, str] = {}
    for i, entry in enumerate(entries):
        first = seen.setdefault(entry["type"], entry["table"])
        if first != entry["table"]:
            guess.todo(("bigquery", "tables", i, "table"), f"{first} holds {entry['type']} events too: remove this "
                       "entry unless the pipeline writes every event to both")  # fmt: skip
    for child in children:  # no parent table of its type took it
        unused.append(child.table)
        guess.header.append(f"TODO: {child.table} looks like the {child.field} of {child.event_type} events, but no "
                            f"{child.event_type} table was found to attach it to")  # fmt: skip
    if unused:
        guess.header.append(f"tables not used (no event type matched): {', '.join(unused)}")
    if entries:
        guess.document["bigquery"] = {"dataset": dataset, "tables": entries}
    else:
        guess.header.append(f"TODO: no table of {dataset} matched an event type: add bigquery/tables by hand")
    if len(letters) > 1:
        several = ", ".join(e["table"] for e in letters)
        guess.header.append(f"TODO: several tables look like dead-letter tables ({several}): the first is used")
    if letters:
        guess.document.setdefault("dead_letters", {})["table"] = letters[0]


def gcs_guess(guess: Guess, root: str, relatives: list[str], samples: dict[str, bytes]) -> None:
    """The gcs section: a path template per type from the sampled paths, and the format, record, metadata and
    placement from the sampled files (relative path -> bytes)."""
    here = ("gcs",)
    gcs: dict[str, Any] = {"root": root}
    guess.document["gcs"] = gcs
    by_type: dict[str, Counter[str]] = {t: Counter() for t in EVENT_TYPES}
    for relative in relatives:
        event_type = named_type(relative)
        if event_type:
            by_type[event_type][template_of(relative)] += 1
    paths = {t: c.most_common(1)[0][0] for t, c in by_type.items() if c}
    if not paths:
        gcs.update(format="jsonl", gzip=False, record="", paths={t: DEFAULT_PATH for t in EVENT_TYPES},
                   placed_by="event_time")  # fmt: skip
        what = f"none of the {len(relatives)} sampled files" if relatives else "no file"
        guess.todo((*here, "root"), f"{what} under {root} names an event type: the format and paths below are the "
                                    "built-in pipeline's; write yours")  # fmt: skip
        return
    missing = [t for t in EVENT_TYPES if t not in paths]
    shown = paths[next(iter(paths))]
    for event_type in missing:
        paths[event_type] = shown
    zipped, found, records = _sampled_records(samples)
    gcs["format"] = "jsonl" if found in (None, "jsonl_or_object") else found
    gcs["gzip"] = zipped
    record, metadata = _record_shape(records)
    gcs["record"] = record
    if metadata:
        gcs["metadata"] = metadata
    gcs["paths"] = paths
    if missing:
        guess.todo((*here, "paths"), f"no sampled file of {', '.join(missing)}: its template is guessed from another "
                                     "type's")  # fmt: skip
    for event_type, counts in by_type.items():
        others = sum(counts.values()) - counts[paths[event_type]]
        if others:
            guess.todo((*here, "paths"), f"{others} sampled {event_type} files fit another template than "
                                         f"{paths[event_type]!r}")  # fmt: skip
    if found is None:
        guess.todo((*here, "format"), "no sampled file could be read as JSON: say the format")
    placed, note = _placement(paths, samples, record, metadata)
    gcs["placed_by"] = placed
    if placed == "processing_time":
        gcs["tolerance"] = "10m"
        guess.todo((*here, "placed_by"), note)
    elif note:
        guess.note((*here, "placed_by"), note)


def _sampled_records(samples: dict[str, bytes]) -> tuple[bool, str | None, list[Any]]:
    kinds: Counter[tuple[bool, str | None]] = Counter()
    records: list[Any] = []
    for body in samples.values():
        zipped, found, mine = sniff(body)
        kinds[(zipped, found)] += 1
        records += [r for r in mine if isinstance(r, dict)]
    if not kinds:
        return False, None, []
    (zipped, found), _ = kinds.most_common(1)[0]
    return zipped, found, records


def _record_shape(records: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """Where the event sits in a record ("" for the record itself) and the metadata fields beside it."""
    if not records:
        return "", {}
    first = records[0]
    if "event_type" in first:
        return "", {}
    holder = next((k for k, v in first.items() if isinstance(v, dict) and "event_type" in v), "")
    metadata = {k: k for k in ("event_id", "message_id", "publish_time", "run_id") if k in first}
    attributes = first.get("attributes")
    if "run_id" not in metadata and isinstance(attributes, dict) and "run_id" in attributes:
        metadata["run_id"] = "attributes.run_id"
    return holder, metadata


def _event_time(record: dict[str, Any], holder: str, event_type: str) -> datetime | None:
    event = record.get(holder) if holder else record
    value = event.get(EVENT_TIME_FIELD[event_type]) if isinstance(event, dict) else None
    return _parse(value)


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _placement(paths: dict[str, str], samples: dict[str, bytes], holder: str,
               metadata: dict[str, str]) -> tuple[str, str]:  # fmt: skip
    """Which time the sampled files' places say: the events' own time, their publish time, or neither (processing
    time); with a note of what was seen."""
    agree = {"event_time": 0, "publish_time": 0}
    seen = 0
    for relative, body in samples.items():
        event_type = named_type(relative)
        if event_type is None:
            continue
        template = PathTemplate(paths[event_type])
        placed = template.match(relative, event_type)
        if placed is None or placed[0] is None:
            continue
        for record in sniff(body)[2]:
            if not isinstance(record, dict):
                continue
            seen += 1
            times = {"event_time": _event_time(record, holder, event_type),
                     "publish_time": _parse(record.get(metadata["publish_time"])) if "publish_time" in metadata
                     else None}  # fmt: skip
            for key, moment in times.items():
                if moment is not None and moment.strftime(template.time_format) == placed[0]:
                    agree[key] += 1
    if not seen:
        if not any(PathTemplate(t).time_tokens for t in paths.values()):
            return "unchecked", ""
        return "event_time", "TODO: no sampled record to compare with its place: check placed_by"
    if agree["event_time"] == seen:
        return "event_time", f"every one of {seen} sampled records sits in its own event time's folder"
    if agree["publish_time"] == seen:
        return "publish_time", f"every one of {seen} sampled records sits in its publish time's folder"
    return "processing_time", (
        f"{seen - agree['event_time']} of {seen} sampled records sit outside their event time's "
        "folder: placed by processing time? set the tolerance, or placed_by: unchecked"
    )


def starting_contract(dataset: str | None, tables: list[BqTable], root: str | None, relatives: list[str],
                      samples: dict[str, bytes], name: str | None = None) -> Guess:  # fmt: skip
    """The starting contract of a dataset's tables and a GCS tree's sample (either may be absent)."""
    guess = Guess({"version": CONTRACT_VERSION, "name": name or f"{dataset or root} (from workbench sinks init)",
                   "duplicates": "deduplicated", "malformed": "dead_lettered"})  # fmt: skip
    guess.note(("duplicates",), "deduplicated: a re-sent event must land once; at_least_once: copies are counted")
    guess.note(("malformed",), "dead_lettered: a bad message must reach a dead-letter place; dropped_ok: may vanish")
    if root:
        gcs_guess(guess, root, relatives, samples)
    if dataset:
        bigquery_guess(guess, dataset, tables)
    letters = guess.document.setdefault("dead_letters", {})
    guess.note(("dead_letters",), "topic: NAME if the pipeline also sends dead letters to a Pub/Sub topic; "
                                  "gcs: {prefix: ...} for files of rejected payloads")  # fmt: skip
    letters.setdefault("reason_codes", "any")
    return guess


# ------------------------------------------------------------------------------------------ the YAML text


def _flow(value: Any) -> str:
    """A value in YAML flow style on one line (quoted where YAML needs it)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=1 << 20, allow_unicode=True, sort_keys=False)
    return text.strip()[1:-1]


def _inline(path: tuple[Any, ...], value: Any) -> bool:
    if isinstance(value, list):
        return all(not isinstance(v, dict | list) for v in value)
    if isinstance(value, dict):
        flat = all(not isinstance(v, dict | list) for v in value.values())
        return flat and len(path) >= 2 and (path[-2] == "columns" or path[-1] in ("parent_key", "metadata"))
    return True


def render(guess: Guess, preamble: list[str] = ()) -> str:  # type: ignore[assignment]
    """The document as commented YAML: each comment above the key it is about."""
    lines = [f"# {line}" if line else "#" for line in preamble]
    lines += [f"# {h}" for h in guess.header]

    def comment(path: tuple[Any, ...], indent: str) -> None:
        for text in guess.comments.get(path, "").split("\n") if path in guess.comments else ():
            lines.append(f"{indent}# {text}")

    def walk(node: dict[str, Any], path: tuple[Any, ...], indent: str, first: str = "") -> None:
        for i, (key, value) in enumerate(node.items()):
            lead = first if i == 0 and first else indent
            here = (*path, key)
            comment(here, first[:-2] if i == 0 and first else indent)
            if _inline(here, value):
                lines.append(f"{lead}{key}: {_flow(value)}")
            elif isinstance(value, dict):
                lines.append(f"{lead}{key}:")
                walk(value, here, indent + "  ")
            else:
                lines.append(f"{lead}{key}:")
                for j, item in enumerate(value):
                    walk(item, (*here, j), indent + "    ", first=indent + "  - ")

    walk(guess.document, (), "")
    return "\n".join(lines) + "\n"
