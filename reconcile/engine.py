"""The engines the comparison runs on: DuckDB (local, in process) and BigQuery (real GCP, or the emulator).

Both take the comparison's statements in BigQuery SQL (reconcile.queries); DuckDB runs them transpiled. Each
engine knows how to bring the tables the comparison needs (manifest, known_runs, sink_events, dead_letters)
into itself in bulk: DuckDB reads CSV and JSON-lines files and Arrow tables; BigQuery loads files with load
jobs and reads its own event tables where they are.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from eventmodel.schema import SCHEMAS, Field
from publisher.manifest import EVENT_COLUMNS
from reconcile import queries as Q

# The columns of the two unified tables, with their BigQuery types (DuckDB gets the same through the
# transpiler); reconcile.queries documents what each holds.
SINK_EVENT_COLUMNS: dict[str, str] = {
    "sink": "STRING",
    "location": "STRING",
    "event_id": "STRING",
    "message_id": "STRING",
    "run_id": "STRING",
    "publish_time": "TIMESTAMP",
    "landed_time": "TIMESTAMP",
    "event_type": "STRING",
    "container_type": "STRING",
    "event_minute": "STRING",
    "container_minute": "STRING",
    "name_ok": "BOOL",
    "canonical_digest": "STRING",
}
DEAD_LETTER_COLUMNS: dict[str, str] = {
    "sink": "STRING",
    "location": "STRING",
    "event_id": "STRING",
    "source_message_id": "STRING",
    "run_id": "STRING",
    "reason": "STRING",
    "stage": "STRING",
    "payload_digest": "STRING",
    "payload_cut": "BOOL",
    "publish_time": "TIMESTAMP",
    "landed_time": "TIMESTAMP",
}
FILE_COLUMNS: dict[str, str] = {
    "path": "STRING",
    "uri": "STRING",
    "container_type": "STRING",
    "container_minute": "STRING",
    "name_ok": "BOOL",
    "updated": "TIMESTAMP",
}
TABLES = ("manifest", "known_runs", "files", "sink_events", "dead_letters", "event_status")
# DuckDB's read_json keeps per-file state for every file of one call: 550,000 files (a backfilled year, about one
# file per event) took it past 18 GB and out of memory. A bounded number of files per call keeps it flat.
FILES_PER_READ = 20_000


def _create_empty(columns: dict[str, str]) -> str:
    return ", ".join(f"{name} {kind}" for name, kind in columns.items())


class DuckDBEngine:
    """The local engine: one in-memory DuckDB database per reconcile (spilling to a temporary folder)."""

    name = "duckdb"

    def __init__(self, threads: int | None = None, memory_limit: str | None = None) -> None:
        import duckdb

        self._spill = tempfile.mkdtemp(prefix="reconcile-duckdb-")
        self.con = duckdb.connect(config={"temp_directory": self._spill})
        # FORMAT_TIMESTAMP and friends work in UTC, as BigQuery does.
        self.con.execute("SET TimeZone = 'UTC'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self.tables = {name: name for name in TABLES}
        self.reset()

    def reset(self) -> None:
        """Empty sink tables, ready for a (re)load of every sink."""
        self.con.execute(f"CREATE OR REPLACE TABLE sink_events ({self._columns(SINK_EVENT_COLUMNS)})")
        self.con.execute(f"CREATE OR REPLACE TABLE dead_letters ({self._columns(DEAD_LETTER_COLUMNS)})")
        self.con.execute(f"CREATE OR REPLACE TABLE files ({self._columns(FILE_COLUMNS)})")

    @staticmethod
    def _columns(columns: dict[str, str]) -> str:
        return Q.to_duckdb(f"CREATE TABLE x ({_create_empty(columns)})").split("(", 1)[1].rsplit(")", 1)[0]

    def run(self, sql: str) -> list[dict[str, Any]]:
        cursor = self.con.execute(Q.to_duckdb(sql))
        if cursor.description is None:
            return []
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def load_manifest(self, csv_paths: list[Path]) -> None:
        files = ", ".join(f"'{_quote(p)}'" for p in csv_paths)
        types = ", ".join(f"'{c}': 'VARCHAR'" for c in EVENT_COLUMNS)
        self.con.execute(
            f"CREATE OR REPLACE TABLE manifest AS SELECT * FROM read_csv([{files}], header = true, "
            f"columns = {{{types}}}, union_by_name = true)"
        )

    def load_known_runs(self, run_ids: Iterable[str]) -> None:
        self.con.execute("CREATE OR REPLACE TABLE known_runs (run_id VARCHAR)")
        self.con.executemany("INSERT INTO known_runs VALUES (?)", [(r,) for r in run_ids])

    def load_files(self, files: list[dict[str, Any]]) -> None:
        self._insert_rows("files", files, FILE_COLUMNS)

    def load_gcs_lines(self, event_type: str, paths: list[str], scope: str, root: str | None = None) -> None:
        """Read one type folder's JSON lines (bulk, in DuckDB) into sink_events, through queries.gcs_select."""
        for start in range(0, len(paths), FILES_PER_READ):
            self._load_gcs_chunk(event_type, paths[start : start + FILES_PER_READ], scope)

    def _load_gcs_chunk(self, event_type: str, paths: list[str], scope: str) -> None:
        listed = ", ".join(f"'{_quote(p)}'" for p in paths)
        event = "event"
        typed = ",\n       ".join(
            f"{_duck_value(f, f'json_extract({event}, {_path(f.name)})')} AS {f.name}" for f in SCHEMAS[event_type]
        )
        staging = f"gcs_{event_type}"
        # Lines are read loosely (JSON for the event) and typed here with TRY_CAST: a line someone broke must
        # show up as an altered or missing event, never stop the whole reconcile.
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {staging} AS
SELECT filename AS path, event_id, message_id, TRY_CAST(publish_time AS TIMESTAMPTZ) AS publish_time,
       json_extract_string(attributes, '$.run_id') AS run_id,
       {typed}
FROM read_json([{listed}], format = 'newline_delimited', filename = true, ignore_errors = true,
               columns = {{'event_id': 'VARCHAR', 'message_id': 'VARCHAR', 'publish_time': 'VARCHAR',
                           'attributes': 'JSON', 'event': 'JSON'}})"""
        )
        self.con.execute(
            Q.to_duckdb(
                f"INSERT INTO sink_events SELECT * FROM ({Q.gcs_select(event_type, staging, 'files', 'lambda')}) "
                f"WHERE {scope}"
            )
        )
        self.con.execute(f"DROP TABLE {staging}")

    def load_select(self, table: str, sql: str, client: Any) -> None:
        """Rows of a SELECT over BigQuery's tables (run by BigQuery, only the narrow result comes back)."""
        arrow = client.query(sql).result().to_arrow(create_bqstorage_client=False)
        if arrow.num_rows:
            self.load_arrow(table, arrow)

    def load_arrow(self, table: str, arrow: Any) -> None:
        """Append an Arrow table (rows a BigQuery SELECT returned) to sink_events or dead_letters."""
        self.con.register("_incoming", arrow)
        try:
            self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
        finally:
            self.con.unregister("_incoming")

    def load_dead_letter_rows(self, rows: list[dict[str, Any]]) -> None:
        self._insert_rows("dead_letters", rows, DEAD_LETTER_COLUMNS)

    def _insert_rows(self, table: str, rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
        if not rows:
            return
        import pyarrow as pa

        arrow = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=_arrow_schema(columns))
        self.load_arrow(table, arrow)

    def close(self) -> None:
        import shutil

        self.con.close()
        shutil.rmtree(self._spill, ignore_errors=True)


def _arrow_schema(columns: dict[str, str]):
    import pyarrow as pa

    kinds = {"STRING": pa.string(), "BOOL": pa.bool_(), "TIMESTAMP": pa.timestamp("us", tz="UTC")}
    return pa.schema([(name, kinds[kind]) for name, kind in columns.items()])


def _quote(path: Any) -> str:
    return str(path).replace("'", "''")


def _path(name: str) -> str:
    return f"'$.\"{name}\"'"


def _duck_value(field: Field, json_expr: str) -> str:
    """DuckDB SQL turning a JSON value into the event table's column type (NULL where it does not fit).

    Its BigQuery twin is _bq_value: loading is per engine (sqlglot cannot transpile BigQuery's SAFE. prefix and
    JSON_QUERY_ARRAY), while everything after the load, the comparison, is one SQL for both.
    """
    text = f"json_extract_string({json_expr}, '$')"
    if field.kind == "timestamp":
        return f"TRY_CAST(upper({text}) AS TIMESTAMPTZ)"
    if field.kind == "number":
        return f"TRY_CAST({text} AS DECIMAL(38, 9))"
    if field.kind == "integer":
        return f"TRY_CAST({text} AS BIGINT)"
    if field.kind == "record":
        members = ", ".join(
            f"{sub.name} := {_duck_value(sub, f'json_extract({json_expr}, {_path(sub.name)})')}" for sub in field.fields
        )
        return f"struct_pack({members})"
    if field.kind == "records":
        # One json_transform of the whole array: ~8x faster than typing each element's fields one by one, and
        # a value that does not fit still becomes NULL (json_transform is the lenient one; _strict would raise).
        structure = orjson.dumps([_duck_structure(field.fields)]).decode()
        return f"json_transform({json_expr}, '{structure}')"
    return text


_DUCK_TYPES = {"timestamp": "TIMESTAMPTZ", "number": "DECIMAL(38, 9)", "integer": "BIGINT"}


def _duck_structure(fields: tuple[Field, ...]) -> dict[str, Any]:
    """json_transform's structure for records: the event table's member types, by schema kind."""
    return {
        f.name: _duck_structure(f.fields) if f.kind == "record" else
        [_duck_structure(f.fields)] if f.kind == "records" else _DUCK_TYPES.get(f.kind, "VARCHAR")
        for f in fields
    }  # fmt: skip


# Reading each GCS line whole as one STRING column: CSV with a delimiter and no quote character that a JSON
# line never holds (JSON escapes control characters), so BigQuery parses nothing and a broken line stays a
# row (SAFE.PARSE_JSON makes it NULL), exactly as DuckDB reads lines loosely and types them with TRY_CAST.
LINE_DELIMITER = "\x01"


def _bq_value(field: Field, json_expr: str, path: str) -> str:
    """BigQuery SQL turning the JSON value at `path` of `json_expr` into the event table's column type."""
    text = f"JSON_VALUE({json_expr}, '{path}')"
    if field.kind == "timestamp":
        return f"SAFE.TIMESTAMP(UPPER({text}))"
    if field.kind == "number":
        return f"SAFE_CAST({text} AS NUMERIC)"
    if field.kind == "integer":
        return f"SAFE_CAST({text} AS INT64)"
    if field.kind == "record":
        members = ", ".join(f"{_bq_value(sub, json_expr, f'{path}.{sub.name}')} AS {sub.name}" for sub in field.fields)
        return f"STRUCT({members})"
    if field.kind == "records":
        members = ", ".join(f"{_bq_value(sub, '_element', f'$.{sub.name}')} AS {sub.name}" for sub in field.fields)
        return (
            f"ARRAY(SELECT AS STRUCT {members} FROM UNNEST(JSON_QUERY_ARRAY({json_expr}, '{path}')) AS _element "
            "WITH OFFSET AS _position ORDER BY _position)"
        )
    return text


def bigquery_typed_lines(event_type: str, lines: str) -> str:
    """BigQuery SQL: a (path, line) source of one type folder as the typed table queries.gcs_select reads."""
    typed = ",\n       ".join(f"{_bq_value(f, 'doc', f'$.event.{f.name}')} AS {f.name}" for f in SCHEMAS[event_type])
    return f"""(
SELECT path, JSON_VALUE(doc, '$.event_id') AS event_id, JSON_VALUE(doc, '$.message_id') AS message_id,
       SAFE.TIMESTAMP(JSON_VALUE(doc, '$.publish_time')) AS publish_time,
       JSON_VALUE(doc, '$.attributes.run_id') AS run_id,
       {typed}
FROM (SELECT path, SAFE.PARSE_JSON(line) AS doc FROM {lines}))"""


class BigQueryEngine:
    """The comparison inside BigQuery, next to the data: scratch tables in a dataset of their own.

    The manifest, the file listing and the dead-letter topic's messages are loaded with load jobs; the event
    tables and dead_letters are read where they are (INSERT ... SELECT, nothing leaves BigQuery); the GCS tree
    is read through one external table per type folder (gs:// roots on real BigQuery) or, on the emulator,
    which has no external tables, from lines loaded with a load job. The scratch dataset expires its tables
    after a day and is dropped by close().
    """

    name = "bigquery"

    def __init__(self, client: Any, project: str, dataset: str, external: bool = False, location: str | None = None):
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        self._bq = bigquery
        self.client = client
        self.project = project
        self.dataset = dataset
        self.external = external  # read gs:// through external tables (real BigQuery only)
        # One scratch dataset, table names of this reconcile's own: two reconciles never share a table.
        self._suffix = secrets.token_hex(4)
        self._names = {name: f"{name}_{self._suffix}" for name in (*TABLES, *(f"gcs_lines_{t}" for t in SCHEMAS))}
        self.tables = {name: f"`{project}.{dataset}.{self._names[name]}`" for name in TABLES}
        ds = bigquery.Dataset(f"{project}.{dataset}")
        ds.default_table_expiration_ms = 24 * 3600 * 1000  # scratch: gone a day later even if never cleaned
        if location:
            ds.location = location
        try:
            client.get_dataset(ds.reference)  # an existing one is used as it is (it fixes the location)
        except NotFound:
            client.create_dataset(ds, exists_ok=True)
        self.reset()

    def reset(self) -> None:
        for name, columns in (("sink_events", SINK_EVENT_COLUMNS), ("dead_letters", DEAD_LETTER_COLUMNS),
                              ("files", FILE_COLUMNS)):  # fmt: skip
            self.run(f"CREATE OR REPLACE TABLE {self.tables[name]} ({_create_empty(columns)})")

    def run(self, sql: str) -> list[dict[str, Any]]:
        return [dict(row) for row in self.client.query(sql).result()]

    def _load(self, name: str, body: bytes, columns: dict[str, str], source_format: str, append: bool, **extra):
        import io

        bq = self._bq
        config = bq.LoadJobConfig(
            schema=[bq.SchemaField(c, "BOOLEAN" if k == "BOOL" else k) for c, k in columns.items()],
            source_format=source_format,
            write_disposition=bq.WriteDisposition.WRITE_APPEND if append else bq.WriteDisposition.WRITE_TRUNCATE,
            **extra,
        )
        table = f"{self.project}.{self.dataset}.{self._names.get(name, name)}"
        self.client.load_table_from_file(io.BytesIO(body), table, job_config=config).result()

    def load_rows(self, name: str, rows: list[dict[str, Any]], columns: dict[str, str], append: bool = False) -> None:
        """Replace (or append to) table `name` with rows, by a load job of newline-delimited JSON."""
        import orjson

        body = b"".join(orjson.dumps({c: _json_value(r.get(c)) for c in columns}) + b"\n" for r in rows)
        self._load(name, body, columns, self._bq.SourceFormat.NEWLINE_DELIMITED_JSON, append)

    def load_manifest(self, csv_paths: list[Path]) -> None:
        columns = dict.fromkeys(EVENT_COLUMNS, "STRING")
        for i, path in enumerate(csv_paths):
            self._load("manifest", Path(path).read_bytes(), columns, self._bq.SourceFormat.CSV, append=i > 0,
                       skip_leading_rows=1, allow_quoted_newlines=True)  # fmt: skip

    def load_known_runs(self, run_ids: Iterable[str]) -> None:
        self.load_rows("known_runs", [{"run_id": r} for r in run_ids], {"run_id": "STRING"})

    def load_files(self, files: list[dict[str, Any]]) -> None:
        self.load_rows("files", files, FILE_COLUMNS)

    def load_gcs_lines(self, event_type: str, paths: list[str], scope: str, root: str | None = None) -> None:
        """One type folder into sink_events: an external table over root/<type>/* (real BigQuery, gs://), or the
        lines of the local copies `paths` loaded as (path, line) rows."""
        lines = f"{self.project}.{self.dataset}.{self._names[f'gcs_lines_{event_type}']}"
        if self.external:
            if not paths:
                return
            self.run(
                f"CREATE OR REPLACE EXTERNAL TABLE `{lines}_external` (line STRING) OPTIONS (format = 'CSV', "
                f"uris = ['{root.rstrip('/')}/{event_type}/*.json'], field_delimiter = '{LINE_DELIMITER}', "
                "quote = '', allow_jagged_rows = TRUE)"
            )
            source = f"(SELECT _FILE_NAME AS path, line FROM `{lines}_external`)"
        else:
            rows = [{"path": p, "line": raw.decode("utf-8", "replace")}
                    for p in paths for raw in Path(p).read_bytes().splitlines() if raw.strip()]  # fmt: skip
            if not rows:
                return
            self.load_rows(f"gcs_lines_{event_type}", rows, {"path": "STRING", "line": "STRING"})
            source = f"`{lines}`"
        typed = bigquery_typed_lines(event_type, source)
        self.run(
            f"INSERT INTO {self.tables['sink_events']} SELECT * FROM "
            f"({Q.gcs_select(event_type, typed, self.tables['files'])}) WHERE {scope}"
        )

    def load_select(self, table: str, sql: str, client: Any = None) -> None:
        """Rows of a SELECT over BigQuery's own tables into sink_events or dead_letters, inside BigQuery."""
        self.run(f"INSERT INTO {self.tables[table]} {sql}")

    def load_dead_letter_rows(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.load_rows("dead_letters", rows, DEAD_LETTER_COLUMNS, append=True)

    def close(self) -> None:
        """Drop this reconcile's scratch tables (the dataset stays for the next one)."""
        for name in self._names.values():
            for table in (name, f"{name}_external"):
                self.client.delete_table(f"{self.project}.{self.dataset}.{table}", not_found_ok=True)


def _json_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
