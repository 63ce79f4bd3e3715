"""The per-source SELECTs of a reconcile, generated from a sink contract (reconcile.contract).

Every sink is turned into rows of the comparison's two unified tables (reconcile.queries: sink_events and
dead_letters) by a SELECT written in BigQuery Standard SQL: it runs inside BigQuery (real, or the emulator) for the
BigQuery tables, and in the engine (BigQuery, or DuckDB through sqlglot) for the GCS records. Each SELECT first
gives the sink's rows the event's own shape (typed_table_sql: columns named and typed as eventmodel.schema and
ddl/ say, whatever the table calls and types them), then computes from that shape what the comparison needs: the
canonical digest (eventmodel.canonical) under the sink's declared conversions, the natural-key digest of a sink
that keeps no event id, the event's time and its place. The published side goes through the same canonical SQL
(published_sql), so a declared conversion is applied alike to both and only an undeclared difference remains.

This project's own pipeline is the built-in contract (reconcile.contract.default_contract): its SELECTs are the
ones reconcile always ran, now generated.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from eventmodel.canonical import Comparison, canonical_parts_sql, canonical_sql, key_sql
from eventmodel.schema import EVENT_TIME_FIELD, SCHEMAS, Field
from reconcile import queries as Q
from reconcile.contract import ChildTable, Contract, DeadLetterTable, GcsSink, TableSink, Value

# The metadata columns a typed SELECT carries beside the event's own keep the comparison's names (event_id,
# message_id, run_id, publish_time, landed_time, event_time): no event field has them, so a reconcile's scope
# (run.py _scope) applies to a typed row as it is.
METADATA_KEYS = ("event_id", "message_id", "run_id", "publish_time", "landed_time")
_BQ_TYPES = {"timestamp": "TIMESTAMP", "number": "NUMERIC", "integer": "INT64"}


def comparison(sink: TableSink | GcsSink) -> Comparison:
    """How a sink's copy is compared with the published event: its declared conversions, what it omits, and
    the records it keeps as a set (a child table with no position column)."""
    if isinstance(sink, GcsSink):
        return Comparison(values=dict(sink.values))
    unordered = frozenset(c.field for c in sink.children if not c.order_by)
    return Comparison(values=sink.values(), omit=frozenset(sink.omit), unordered=unordered)


def _bq_type(f: Field) -> str:
    if f.kind == "record":
        return "STRUCT<" + ", ".join(f"{s.name} {_bq_type(s)}" for s in f.fields) + ">"
    if f.kind == "records":
        return "ARRAY<STRUCT<" + ", ".join(f"{s.name} {_bq_type(s)}" for s in f.fields) + ">>"
    return _BQ_TYPES.get(f.kind, "STRING")


def converted(f: Field, column: str, value: Value) -> str:
    """BigQuery SQL reading a column kept as `value.stored_as` back as the field's own type (NULL where it does
    not convert: a value the sink garbled is then "altered", never a failed reconcile)."""
    stored = value.stored_as
    if not stored or stored in ("struct", "array"):
        return column
    kind = f.kind
    if kind == "timestamp":
        if stored == "timestamp":
            return column
        return f"SAFE_CAST({column} AS TIMESTAMP)"  # STRING (RFC 3339), DATE (midnight UTC), DATETIME (as UTC)
    if kind == "number":
        return column if stored == "numeric" else f"SAFE_CAST({column} AS NUMERIC)"
    if kind == "integer":
        return column if stored == "int64" else f"SAFE_CAST({column} AS INT64)"
    return column if stored == "string" else f"CAST({column} AS STRING)"


# ------------------------------------------------------------------------------------------- BigQuery tables


def _date_literal(when: datetime, kind: str) -> str:
    text = when.strftime("%Y-%m-%d")
    return f"DATE('{text}')" if kind == "date" else f"DATETIME('{when.strftime('%Y-%m-%d %H:%M:%S')}')"


def partition_filter(column: str, stored_as: str | None, event_times: tuple[datetime, datetime]) -> str:
    """A constant range on a partition column (what prunes, and what require_partition_filter asks for), in the
    column's own type: TIMESTAMP literals for a TIMESTAMP column, DATE or DATETIME ones for those."""
    low, high = event_times
    if stored_as in ("date", "datetime"):
        return f"`{column}` BETWEEN {_date_literal(low, stored_as)} AND {_date_literal(high, stored_as)}"
    return f"`{column}` BETWEEN {Q.timestamp_literal(low)} AND {Q.timestamp_literal(high)}"


def _partition_type(table: TableSink | ChildTable, column: str) -> str | None:
    for spec in table.columns.values():
        if spec.column == column:
            return spec.value.stored_as
    return None


def _field_expr(table: TableSink, f: Field, src: str, children: dict[str, str]) -> str | None:
    """The SQL giving one top-level field of the event from a table row, or None when the table omits it."""
    if f.name in table.omit:
        return None
    if table.event_column:
        from reconcile.engine import _bq_value

        return _bq_value(f, f"{src}.`{table.event_column}`", f"$.{f.name}", parsed=False)
    if f.name in children:
        return f"{children[f.name]}.{f.name}"
    if f.name in table.columns:
        spec = table.columns[f.name]
        return converted(f, f"{src}.`{spec.column}`", spec.value)
    if f.kind == "record":
        members = []
        for sub in f.fields:
            path = f"{f.name}.{sub.name}"
            spec = table.columns.get(path)
            expr = converted(sub, f"{src}.`{spec.column}`", spec.value) if spec else f"CAST(NULL AS {_bq_type(sub)})"
            members.append(f"{expr} AS {sub.name}")
        return f"STRUCT({', '.join(members)})"
    if f.name == "event_type":
        return f"'{table.event_type}'"
    return None


def _child_join(table: TableSink, child: ChildTable, alias: str, src: str, fqn: Callable[[str], str],
                bound: Callable[[TableSink | ChildTable], str | None]) -> str:  # fmt: skip
    """LEFT JOIN of a child table's rows gathered back into the records field, joined on the parent key."""
    f = next(x for x in SCHEMAS[table.event_type] if x.name == child.field)
    members = []
    for sub in f.fields:
        spec = child.columns.get(sub.name)
        expr = converted(sub, f"c.`{spec.column}`", spec.value) if spec else f"CAST(NULL AS {_bq_type(sub)})"
        members.append(f"{expr} AS {sub.name}")
    keys = list(child.parent_key.items())
    key_columns = ", ".join(f"c.`{column}` AS k{i}" for i, (_, column) in enumerate(keys))
    group = ", ".join(f"k{i}" for i in range(len(keys)))
    order = f" ORDER BY c.`{child.order_by}`" if child.order_by else ""
    where = bound(child)
    condition = " AND ".join(f"{alias}.k{i} = {_parent_column(table, path, src)}" for i, (path, _) in enumerate(keys))
    return (
        f"LEFT JOIN (SELECT {key_columns}, ARRAY_AGG(STRUCT({', '.join(members)}){order}) AS {child.field} "
        f"FROM {fqn(child.table)} AS c{f' WHERE {where}' if where else ''} GROUP BY {group}) AS {alias} "
        f"ON {condition}"
    )


def _parent_column(table: TableSink, path: str, src: str) -> str:
    """The parent row's own column for a key path, as stored (a child table joins on the stored values)."""
    if path in table.columns:
        return f"{src}.`{table.columns[path].column}`"
    head, _, rest = path.partition(".")
    if head in table.columns and rest:
        return f"{src}.`{table.columns[head].column}`.{rest}"
    raise ValueError(f"{table.table} keeps no column for {path}")


def typed_table_sql(table: TableSink, fqn: Callable[[str], str],
                    bound: Callable[[TableSink | ChildTable], str | None]) -> str:  # fmt: skip
    """A SELECT of a table's rows in the event's own shape (ddl/ column names and types), plus the
    metadata columns; `bound` gives each table's partition filter (or None)."""
    src = "src"
    children = {c.field: f"child{i}" for i, c in enumerate(table.children)}
    fields = []
    time_expr = "CAST(NULL AS TIMESTAMP)"
    for f in SCHEMAS[table.event_type]:
        expr = _field_expr(table, f, src, children)
        if expr is not None:
            fields.append(f"{expr} AS {f.name}")
            if f.name == EVENT_TIME_FIELD[table.event_type]:
                time_expr = expr
    fields.append(f"{time_expr} AS event_time")
    for key in METADATA_KEYS:
        column = table.metadata.get(key)
        kind = "TIMESTAMP" if key in ("publish_time", "landed_time") else "STRING"
        fields.append(f"{f'{src}.`{column}`' if column else f'CAST(NULL AS {kind})'} AS {key}")
    joins = " ".join(_child_join(table, c, children[c.field], src, fqn, bound) for c in table.children)
    where = bound(table)
    return f"SELECT {', '.join(fields)} FROM {fqn(table.table)} AS {src} {joins}{f' WHERE {where}' if where else ''}"


def _event_time(event_type: str, prefix: str, how: Comparison) -> str:
    return f"{prefix}{EVENT_TIME_FIELD[event_type]}" if EVENT_TIME_FIELD[event_type] not in how.omit else "NULL"


def table_select(table: TableSink, contract: Contract, fqn: Callable[[str], str],
                 event_times: tuple[datetime, datetime], scope: str = "TRUE") -> str:  # fmt: skip
    """sink_events rows of one BigQuery table of the contract in `scope` (a condition on the comparison's columns:
    run_id, publish_time, event_time), its reads bounded by partition column. The rows are bounded by their event
    time as well, at the top of the statement, where a reader (or the tests' strict client) sees the bound."""

    def bound(t: TableSink | ChildTable) -> str | None:
        if not t.partition_column:
            return None
        return partition_filter(t.partition_column, _partition_type(t, t.partition_column), event_times)

    how = comparison(table)
    event_type = table.event_type
    key = (
        "CAST(NULL AS STRING)"
        if table.by_event_id
        else key_sql(event_type, contract.natural_keys[event_type], "l.", how)
    )
    time = _event_time(event_type, "l.", how)
    event_type_expr = "l.event_type" if "event_type" not in how.omit else f"'{event_type}'"
    return f"""
SELECT '{Q.BIGQUERY}' AS sink, '{table.table}' AS location, l.event_id AS event_id,
       l.message_id AS message_id, l.run_id AS run_id, l.publish_time AS publish_time,
       l.landed_time AS landed_time, {event_type_expr} AS event_type, '{event_type}' AS container_type,
       FORMAT_TIMESTAMP('%Y%m%d%H%M', {time}) AS event_minute, CAST(NULL AS STRING) AS container_minute,
       TRUE AS name_ok, {canonical_sql(event_type, "l.", how=how)} AS canonical_digest,
       '{table.entry}' AS entry, {key} AS key_digest, {time} AS event_time,
       CAST(NULL AS STRING) AS expected_digest
FROM ({typed_table_sql(table, fqn, bound)}) AS l
WHERE {_time_bound(table, how, event_times)}{scope}"""


def _time_bound(table: TableSink, how: Comparison, event_times: tuple[datetime, datetime]) -> str:
    field = EVENT_TIME_FIELD[table.event_type]
    if field in how.omit:
        return ""
    low, high = event_times
    return f"l.{field} BETWEEN {Q.timestamp_literal(low)} AND {Q.timestamp_literal(high)} AND "


# ------------------------------------------------------------------------------------------------ GCS records


def _json_path(dotted: str) -> str:
    return "$." + ".".join(f'"{p}"' for p in dotted.split("."))


def gcs_event_path(gcs: GcsSink) -> str:
    """The JSON path of the event in a record ("$" when the record is the event)."""
    return _json_path(gcs.record) if gcs.record else "$"


def gcs_typed_duckdb(gcs: GcsSink, event_type: str, docs: str) -> str:
    """DuckDB SQL: the records of `docs` (path, doc JSON) typed as the event table, plus the metadata columns."""
    from reconcile.engine import _duck_value

    event = f"json_extract(doc, '{gcs_event_path(gcs)}')"
    typed = ",\n       ".join(
        f"{_duck_value(f, f'json_extract({event}, {_quoted_path(f.name)})')} AS {f.name}" for f in SCHEMAS[event_type]
    )
    meta = []
    for key in ("event_id", "message_id", "run_id", "publish_time"):
        where = gcs.metadata.get(key)
        text = f"json_extract_string(doc, '{_json_path(where)}')" if where else "NULL"
        meta.append(f"TRY_CAST({text} AS TIMESTAMPTZ) AS {key}" if key == "publish_time"
                    else f"{text} AS {key}")  # fmt: skip
    return f"SELECT path, {', '.join(meta)},\n       {typed}\nFROM {docs}"


def _quoted_path(name: str) -> str:
    return f"'$.\"{name}\"'"


def gcs_typed_bigquery(gcs: GcsSink, event_type: str, lines: str) -> str:
    """BigQuery SQL: (path, line) records typed as the event table, plus the metadata columns."""
    from reconcile.engine import _bq_value

    base = gcs_event_path(gcs)
    typed = ",\n       ".join(
        _bq_value(f, "doc", f"{base}.{f.name}" if base != "$" else f"$.{f.name}") + f" AS {f.name}"
        for f in SCHEMAS[event_type]
    )
    meta = []
    for key in ("event_id", "message_id", "run_id", "publish_time"):
        where = gcs.metadata.get(key)
        text = f"JSON_VALUE(doc, '{_json_path(where)}')" if where else "CAST(NULL AS STRING)"
        meta.append(f"SAFE.TIMESTAMP({text}) AS {key}" if key == "publish_time" and where
                    else f"CAST(NULL AS TIMESTAMP) AS {key}" if key == "publish_time"
                    else f"{text} AS {key}")  # fmt: skip
    return f"""(
SELECT path, {", ".join(meta)},
       {typed}
FROM (SELECT path, SAFE.PARSE_JSON(line) AS doc FROM {lines}))"""


def gcs_select(gcs: GcsSink, contract: Contract, event_type: str, source: str, files: str,
               arrays: str = "subquery") -> str:  # fmt: skip
    """sink_events rows from a typed source of one type's records (gcs_typed_*) joined with the file listing
    (path, the type and time its place says, name_ok). Where the contract places files by processing time, or
    not at all, the listing already judged the place (reconcile.sources), so the record's time is not asked."""
    how = comparison(gcs)
    template = gcs.paths[event_type]
    time = _event_time(event_type, "l.", how)
    placed = {"event_time": time, "publish_time": "l.publish_time"}.get(gcs.placed_by)
    minute = f"FORMAT_TIMESTAMP('{template.time_format}', {placed})" if placed else "f.container_minute"
    key = (
        "CAST(NULL AS STRING)" if gcs.by_event_id else key_sql(event_type, contract.natural_keys[event_type], "l.", how)
    )
    return f"""
SELECT '{Q.GCS}' AS sink, l.path AS location, l.event_id AS event_id, l.message_id AS message_id,
       l.run_id AS run_id, l.publish_time AS publish_time, f.updated AS landed_time, l.event_type,
       f.container_type, {minute} AS event_minute, f.container_minute, f.name_ok,
       {canonical_sql(event_type, "l.", arrays, how)} AS canonical_digest,
       '{gcs.entry(event_type)}' AS entry, {key} AS key_digest, {time} AS event_time,
       CAST(NULL AS STRING) AS expected_digest
FROM {source} AS l JOIN {files} AS f ON f.path = l.path"""


# -------------------------------------------------------------------------------------------- dead letters


def _payload_digest(table: DeadLetterTable) -> str:
    """MD5 hex of the payload's bytes: of the column as it is (MD5 takes STRING as its UTF-8 bytes, or BYTES), or
    of the decoded bytes where a row says it keeps them in base64. Each branch hashes its own type: no cast from
    STRING to BYTES, which bqemulator refuses for text that is not ASCII."""
    payload = f"src.`{table.payload}`"
    encoding = table.columns.get("payload_encoding")
    if not encoding:
        return f"TO_HEX(MD5({payload}))"
    return f"IF(src.`{encoding}` = 'base64', TO_HEX(MD5(FROM_BASE64({payload}))), TO_HEX(MD5({payload})))"


def dead_letter_table_select(table: DeadLetterTable, fqn: Callable[[str], str], since: datetime,
                             scope: str = "TRUE") -> str:  # fmt: skip
    """dead_letters rows of a dead-letter table in `scope` (a condition on run_id, publish_time, landed_time)
    ingested since `since`, by its partition column when the contract names one (at the top of the statement too,
    where a reader sees the bound)."""
    c = table.columns

    def col(key: str, kind: str = "STRING") -> str:
        return f"src.`{c[key]}`" if c.get(key) else f"CAST(NULL AS {kind})"

    cut = "FALSE"
    if table.payload_cut_bytes and c.get("error"):
        # eventmodel.rows.dead_letter_row cuts an oversize payload in the table (the topic keeps it whole)
        cut = f"(LENGTH(payload) = {table.payload_cut_bytes} AND error LIKE '%payload cut to%')"
    partition = table.partition_column
    kept = {"event_id", "source_message_id", "run_id", "reason", "stage", "payload", "payload_digest", "error",
            "publish_time", "landed_time"}  # fmt: skip
    extra = f", src.`{partition}` AS {partition}" if partition and partition not in kept else ""
    bound = f"{partition} >= {Q.timestamp_literal(since)}" if partition else "TRUE"
    inner_bound = f" WHERE src.`{partition}` >= {Q.timestamp_literal(since)}" if partition else ""
    return f"""
SELECT '{Q.DEAD_LETTER_TABLE}' AS sink, '{table.table}' AS location, event_id, source_message_id, run_id, reason,
       stage, payload_digest, {cut} AS payload_cut, publish_time, landed_time,
       'dead_letters:table:{table.table}' AS entry
FROM (SELECT {col("event_id")} AS event_id, {col("message_id")} AS source_message_id, {col("run_id")} AS run_id,
             {col("reason")} AS reason, {col("stage")} AS stage, src.`{table.payload}` AS payload,
             {_payload_digest(table)} AS payload_digest,
             {col("error")} AS error, {col("publish_time", "TIMESTAMP")} AS publish_time,
             {col("landed_time", "TIMESTAMP")} AS landed_time{extra}
      FROM {fqn(table.table)} AS src{inner_bound})
WHERE {bound} AND {scope}"""


# ---------------------------------------------------------------------------------------- the published side


def published_typed_duckdb(event_type: str, published: str) -> str:
    """DuckDB SQL: the published events of one type (the manifests' `event` JSON) typed as the event table."""
    from reconcile.engine import _duck_value

    typed = ",\n       ".join(
        f"{_duck_value(f, f'json_extract(event, {_quoted_path(f.name)})')} AS {f.name}" for f in SCHEMAS[event_type]
    )
    return f"SELECT run_id, event_id, {typed} FROM {published} WHERE event_type = '{event_type}' AND event IS NOT NULL"


def published_typed_bigquery(event_type: str, published: str) -> str:
    from reconcile.engine import _bq_value

    typed = ",\n       ".join(_bq_value(f, "doc", f"$.{f.name}") + f" AS {f.name}" for f in SCHEMAS[event_type])
    return (
        f"SELECT run_id, event_id, {typed} FROM (SELECT run_id, event_id, SAFE.PARSE_JSON(event) AS doc FROM "
        f"{published} WHERE event_type = '{event_type}' AND event IS NOT NULL)"
    )


def expected_select(sink: TableSink | GcsSink, contract: Contract, event_type: str, typed: str,
                    arrays: str) -> str:  # fmt: skip
    """Rows of `expected` for one entry: each published event's key digest and canonical digest as that sink keeps
    it (its declared conversions applied to the published values)."""
    how = comparison(sink)
    key = key_sql(event_type, contract.natural_keys[event_type], "p.", how)
    return (
        f"SELECT '{entry_of(sink, event_type)}' AS entry, p.run_id, p.event_id, '{event_type}' AS event_type, "
        f"{key} AS key_digest, "
        f"{canonical_sql(event_type, 'p.', arrays, how)} AS digest FROM ({typed}) AS p"
    )


def entry_of(sink: TableSink | GcsSink, event_type: str) -> str:
    return sink.entry(event_type) if isinstance(sink, GcsSink) else sink.entry


def _in_list(values: list[str]) -> str:
    return ", ".join(Q._string(v) for v in values) or "NULL"


def parts_select(sink: TableSink | GcsSink, contract: Contract, event_type: str, source: str, arrays: str,
                 event_ids: list[str], keys: list[str], extra_where: str = "",
                 by_key: bool | None = None) -> str:  # fmt: skip
    """Each canonical part (one per leaf field, a records field is one) of the copies in `source` (a typed
    SELECT or table) of the events `event_ids` (or, in a sink that keeps no event id, of the keys `keys`): what
    an altered event's copy holds, field by field, set beside the published one (the report's "which field")."""
    how = comparison(sink)
    parts = canonical_parts_sql(event_type, "l.", arrays, how)
    columns = ", ".join(f"{p} AS part{i}" for i, p in enumerate(parts))
    key = key_sql(event_type, contract.natural_keys[event_type], "l.", how)
    by_key = not sink.by_event_id if by_key is None else by_key
    match = f"{key} IN ({_in_list(keys)})" if by_key else f"l.event_id IN ({_in_list(event_ids)})"
    return (
        f"SELECT l.event_id AS event_id, {key} AS key_digest, {columns} FROM {source} AS l WHERE {extra_where}{match}"
    )


def table_parts_select(table: TableSink, contract: Contract, fqn: Callable[[str], str],
                       event_times: tuple[datetime, datetime], event_ids: list[str],
                       keys: list[str]) -> str:  # fmt: skip
    """parts_select over one BigQuery table of the contract, read within the same partition bounds."""

    def bound(t: TableSink | ChildTable) -> str | None:
        if not t.partition_column:
            return None
        return partition_filter(t.partition_column, _partition_type(t, t.partition_column), event_times)

    how = comparison(table)
    typed = f"({typed_table_sql(table, fqn, bound)})"
    return parts_select(table, contract, table.event_type, typed, "subquery", event_ids, keys,
                        _time_bound(table, how, event_times))  # fmt: skip
