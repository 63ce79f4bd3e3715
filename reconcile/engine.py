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
from typing import Any, Protocol

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
    "entry": "STRING",  # the contract entry the row came from (reconcile.contract: gcs, bigquery:TABLE)
    "key_digest": "STRING",  # the natural key's digest, for a sink that keeps no event id (else NULL)
    "event_time": "TIMESTAMP",  # the event's own time as the sink holds it
    # the canonical digest of the published event as this sink keeps it (its declared conversions), set when
    # identities are resolved (reconcile.run._resolve_identities); NULL: the manifest's canonical_digest applies
    "expected_digest": "STRING",
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
    "entry": "STRING",
}
# The published events, for a contract that needs them (reconcile.contract.Contract.needs_published_events): the
# manifests' `event` column of this run and of the runs whose events its sinks may hold beside its own.
PUBLISHED_COLUMNS: dict[str, str] = {"run_id": "STRING", "event_id": "STRING", "event_type": "STRING",
                                     "expected": "STRING", "event": "STRING"}  # fmt: skip
# Per contract entry, what each published event looks like in that sink: its key and canonical digest there.
EXPECTED_COLUMNS: dict[str, str] = {"entry": "STRING", "run_id": "STRING", "event_id": "STRING",
                                    "event_type": "STRING", "key_digest": "STRING", "digest": "STRING"}  # fmt: skip
FILE_COLUMNS: dict[str, str] = {
    "path": "STRING",
    "uri": "STRING",
    "container_type": "STRING",
    "container_minute": "STRING",
    "name_ok": "BOOL",
    "updated": "TIMESTAMP",
}
# The manifest columns the comparison reads: all but the published JSON (`event`) and what only `workbench check`
# reads, from the CSVs themselves (`scenario`, `outcome_ms`). bqemulator's CSV sniffer found no columns at all in a
# body with them, and a column nothing reads is better not loaded anyway.
MANIFEST_COLUMNS = tuple(c for c in EVENT_COLUMNS if c not in ("event", "scenario", "outcome_ms"))
TABLES = ("manifest", "known_runs", "files", "sink_events", "dead_letters", "event_status", "published", "expected")
# DuckDB's read_json keeps per-file state for every file of one call: 550,000 files (a backfilled year, about one
# file per event) took it past 18 GB and out of memory. A bounded number of files per call keeps it flat.
FILES_PER_READ = 20_000


def _create_empty(columns: dict[str, str]) -> str:
    return ", ".join(f"{name} {kind}" for name, kind in columns.items())


class Engine(Protocol):
    """What a reconcile asks of the engine it compares on (reconcile.run, reconcile.altered): the tables of
    reconcile.queries filled in bulk, then the comparison's statements run. DuckDBEngine and BigQueryEngine are the
    two; ReconcileTarget.make_engine picks one."""

    name: str  # the report's `engine`
    tables: dict[str, str]  # each table of TABLES as a statement names it here
    arrays: str  # how the canonical SQL spells records fields here (eventmodel.canonical.ARRAY_STYLES)
    # Reads the GCS tree where it lies (BigQuery's external tables over gs:// folders): no local copies are made,
    # and only JSON lines can be read so.
    external: bool

    def run(self, sql: str) -> list[dict[str, Any]]:
        """One statement in BigQuery SQL; its rows."""
        ...

    def load_manifest(self, csv_paths: list[Path]) -> None: ...

    def load_known_runs(self, run_ids: Iterable[str]) -> None: ...

    def load_files(self, files: list[dict[str, Any]]) -> None: ...

    def load_gcs_lines(self, event_type: str, paths: list[str], scope: str, root: str | None = None,
                       prefixes: list[str] = (), gcs: Any = None, contract: Any = None) -> None: ...  # fmt: skip

    def load_select(self, table: str, sql: str, client: Any, location: str | None = None) -> None:
        """Rows of a SELECT over BigQuery's own tables into sink_events or dead_letters."""
        ...

    def load_dead_letter_rows(self, rows: list[dict[str, Any]]) -> None: ...

    def load_published(self, csv_paths: dict[str, list[Path]]) -> None: ...

    def typed_published(self, event_type: str) -> str: ...

    def gcs_parts(self, gcs: Any, contract: Any, event_type: str, paths: list[str], ids: list[str],
                  keys: list[str]) -> list[dict[str, Any]] | None:  # fmt: skip
        """The canonical parts of some events' copies in local GCS files (reconcile.altered); None: this engine
        does not read files again."""
        ...

    def close(self) -> None: ...


class DuckDBEngine:
    """The local engine: one in-memory DuckDB database per reconcile (spilling to a temporary folder)."""

    name = "duckdb"
    external = False  # the GCS tree is read from local files (copies of gs:// objects)

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
        self._typed: set[str] = set()
        self.reset()

    def reset(self) -> None:
        """Empty sink tables, ready for a (re)load of every sink."""
        self.con.execute(f"CREATE OR REPLACE TABLE sink_events ({self._columns(SINK_EVENT_COLUMNS)})")
        self.con.execute(f"CREATE OR REPLACE TABLE dead_letters ({self._columns(DEAD_LETTER_COLUMNS)})")
        self.con.execute(f"CREATE OR REPLACE TABLE files ({self._columns(FILE_COLUMNS)})")
        self.con.execute(f"CREATE OR REPLACE TABLE published ({self._columns(PUBLISHED_COLUMNS)})")
        self._typed.clear()
        self.con.execute(f"CREATE OR REPLACE TABLE expected ({self._columns(EXPECTED_COLUMNS)})")

    arrays = "lambda"  # how the canonical SQL spells records fields here (eventmodel.canonical.ARRAY_STYLES)

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
        # By name, every column text: a version 3 manifest has no `event` column, and nothing here reads it.
        self.con.execute(
            f"CREATE OR REPLACE TABLE manifest AS SELECT * FROM read_csv([{files}], header = true, "
            "all_varchar = true, union_by_name = true)"
        )

    def load_known_runs(self, run_ids: Iterable[str]) -> None:
        self.con.execute("CREATE OR REPLACE TABLE known_runs (run_id VARCHAR)")
        self.con.executemany("INSERT INTO known_runs VALUES (?)", [(r,) for r in run_ids])

    def load_files(self, files: list[dict[str, Any]]) -> None:
        self._insert_rows("files", files, FILE_COLUMNS)

    def load_gcs_lines(
        self, event_type: str, paths: list[str], scope: str, root: str | None = None, prefixes: list[str] = (),
        gcs: Any = None, contract: Any = None,
    ) -> None:  # fmt: skip
        """Read one type's GCS records (bulk, in DuckDB) into sink_events, through contract_sql.gcs_select: the
        contract's file format and record layout (the built-in contract's when none is given). `paths` are
        already the files to read (reconcile.run selects them); `prefixes` is for engines that list."""
        contract = contract or _default_contract()
        gcs = gcs or contract.gcs
        for start in range(0, len(paths), FILES_PER_READ):
            self._load_gcs_chunk(gcs, contract, event_type, paths[start : start + FILES_PER_READ], scope)

    def _load_gcs_chunk(self, gcs: Any, contract: Any, event_type: str, paths: list[str], scope: str) -> None:
        from reconcile import contract_sql

        listed = ", ".join(f"'{_quote(p)}'" for p in paths)
        staging = f"gcs_{event_type}"
        # Records are read loosely (each one JSON value) and typed afterwards with TRY_CAST: a record someone broke
        # must show up as an altered or missing event, never stop the whole reconcile.
        docs = _duck_records(listed, gcs)
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {staging} AS {contract_sql.gcs_typed_duckdb(gcs, event_type, docs)}"
        )
        select = contract_sql.gcs_select(gcs, contract, event_type, staging, "files", "lambda")
        self.con.execute(Q.to_duckdb(f"INSERT INTO sink_events SELECT * FROM ({select}) WHERE {scope}"))
        self.con.execute(f"DROP TABLE {staging}")

    def gcs_parts(self, gcs: Any, contract: Any, event_type: str, paths: list[str], ids: list[str],
                  keys: list[str]) -> list[dict[str, Any]]:  # fmt: skip
        """The canonical parts of the copies of some events in some GCS files (reconcile.altered)."""
        from reconcile import contract_sql

        listed = ", ".join(f"'{_quote(p)}'" for p in paths)
        docs = _duck_records(listed, gcs)
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE gcs_parts AS {contract_sql.gcs_typed_duckdb(gcs, event_type, docs)}"
        )
        try:
            return self.run(contract_sql.parts_select(gcs, contract, event_type, "gcs_parts", "lambda", ids, keys))
        finally:
            self.con.execute("DROP TABLE gcs_parts")

    def typed_published(self, event_type: str) -> str:
        """A table of the published events of one type, typed as the event table (contract_sql.expected_select)."""
        from reconcile import contract_sql

        name = f"published_{event_type}"
        if name not in self._typed:  # typed once per type, for every sink of it (JSON parsing is the cost)
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {name} AS {contract_sql.published_typed_duckdb(event_type, 'published')}"
            )
            self._typed.add(name)
        return f"SELECT * FROM {name}"

    def load_published(self, csv_paths: dict[str, list[Path]]) -> None:
        """The `event` column of the manifests of each run (run id -> its events-*.csv) into `published`."""
        self._typed.clear()  # typed_published reads `published` again
        for run_id, paths in csv_paths.items():
            if not paths:
                continue
            files = ", ".join(f"'{_quote(p)}'" for p in paths)
            self.con.execute(
                # One line per event: a re-send (publish --duplicate-rate) is a second line of the same event.
                f"INSERT INTO published SELECT DISTINCT '{_quote(run_id)}', event_id, event_type, expected, event "
                f"FROM read_csv([{files}], header = true, all_varchar = true, union_by_name = true) "
                "WHERE outcome = 'published' AND event IS NOT NULL AND event != ''"
            )

    def load_select(self, table: str, sql: str, client: Any, location: str | None = None) -> None:
        """Rows of a SELECT over BigQuery's tables (run by BigQuery in `location`, the events dataset's; only the
        narrow result comes back)."""
        arrow = client.query(sql, location=location).result().to_arrow(create_bqstorage_client=False)
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


_DUCK_FORMATS = {"jsonl": "newline_delimited", "json_array": "array", "json_object": "unstructured"}


def _duck_records(listed: str, gcs: Any) -> str:
    """DuckDB SQL: (path, doc) of every record of the listed files, each record one JSON value, in the contract's
    file format (lines, an array, one object per file; gzip too)."""
    return (
        f"(SELECT filename AS path, json AS doc FROM read_json([{listed}], format = '{_DUCK_FORMATS[gcs.format]}', "
        f"records = false, filename = true, ignore_errors = true, columns = {{'json': 'JSON'}}, "
        f"compression = '{'gzip' if gcs.gzip else 'auto_detect'}'))"
    )


def _default_contract() -> Any:
    from reconcile.contract import default_contract

    return default_contract()


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


def _bq_value(field: Field, json_expr: str, path: str, parsed: bool = True) -> str:
    """BigQuery SQL turning the JSON value at `path` of `json_expr` into the event table's column type.

    parsed: `json_expr` is a JSON value (SAFE.PARSE_JSON of a line), so a records field that is not an array (a
    garbled copy, a malformed event) is read as empty rather than failing the statement: JSON_TYPE guards it, as
    bqemulator fails JSON_QUERY_ARRAY on a string. A STRING column (a contract's event_column) is read unguarded:
    JSON_TYPE takes JSON only."""
    text = f"JSON_VALUE({json_expr}, '{path}')"
    if field.kind == "timestamp":
        return f"SAFE.TIMESTAMP(UPPER({text}))"
    if field.kind == "number":
        return f"SAFE_CAST({text} AS NUMERIC)"
    if field.kind == "integer":
        return f"SAFE_CAST({text} AS INT64)"
    if field.kind == "record":
        members = ", ".join(f"{_bq_value(sub, json_expr, f'{path}.{sub.name}', parsed)} AS {sub.name}"
                            for sub in field.fields)  # fmt: skip
        return f"STRUCT({members})"
    if field.kind == "records":
        members = ", ".join(f"{_bq_value(sub, '_element', f'$.{sub.name}')} AS {sub.name}" for sub in field.fields)
        array = f"JSON_QUERY_ARRAY({json_expr}, '{path}')"
        if parsed:
            array = f"IF(JSON_TYPE(JSON_QUERY({json_expr}, '{path}')) = 'array', {array}, [])"
        return (
            f"ARRAY(SELECT AS STRUCT {members} FROM UNNEST({array}) AS _element "
            "WITH OFFSET AS _position ORDER BY _position)"
        )
    return text


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
        # Every job names its location: BigQuery runs a job where its datasets are, and a job in a regional dataset
        # that does not say so is looked for in the US (cloud.google.com/bigquery/docs/locations, "Specify
        # locations"). The caller passes the events dataset's; the scratch dataset must be in the same one.
        # One scratch dataset, table names of this reconcile's own: two reconciles never share a table.
        self._suffix = secrets.token_hex(4)
        self._names = {name: f"{name}_{self._suffix}" for name in (*TABLES, *(f"gcs_lines_{t}" for t in SCHEMAS))}
        self.tables = {name: f"`{project}.{dataset}.{self._names[name]}`" for name in TABLES}
        ds = bigquery.Dataset(f"{project}.{dataset}")
        ds.default_table_expiration_ms = 24 * 3600 * 1000  # scratch: gone a day later even if never cleaned
        if location:
            ds.location = location
        try:
            found = client.get_dataset(ds.reference)  # an existing one is used as it is (it fixes the location)
        except NotFound:
            found = client.create_dataset(ds, exists_ok=True)
        self.location = location or found.location
        self.reset()

    def reset(self) -> None:
        for name, columns in (("sink_events", SINK_EVENT_COLUMNS), ("dead_letters", DEAD_LETTER_COLUMNS),
                              ("files", FILE_COLUMNS), ("published", PUBLISHED_COLUMNS),
                              ("expected", EXPECTED_COLUMNS)):  # fmt: skip
            self.run(f"CREATE OR REPLACE TABLE {self.tables[name]} ({_create_empty(columns)})")

    arrays = "subquery"

    def run(self, sql: str) -> list[dict[str, Any]]:
        return [dict(row) for row in self.client.query(sql, location=self.location).result()]

    def _load(self, name: str, body: Any, columns: dict[str, str], source_format: str, append: bool, **extra):
        """One load job of `body` (bytes, or a binary file) into table `name`."""
        import io

        bq = self._bq
        config = bq.LoadJobConfig(
            schema=[bq.SchemaField(c, "BOOLEAN" if k == "BOOL" else k) for c, k in columns.items()],
            source_format=source_format,
            write_disposition=bq.WriteDisposition.WRITE_APPEND if append else bq.WriteDisposition.WRITE_TRUNCATE,
            **extra,
        )
        table = f"{self.project}.{self.dataset}.{self._names.get(name, name)}"
        source = io.BytesIO(body) if isinstance(body, bytes) else body
        start = source.tell()

        def load() -> None:
            source.seek(start)  # a retry sends the whole body again, as a new job (a new job id)
            self.client.load_table_from_file(
                source, table, job_config=config, location=self.location, rewind=False
            ).result()

        retry_rate_limited(load)

    def load_rows(self, name: str, rows: list[dict[str, Any]], columns: dict[str, str], append: bool = False) -> None:
        """Replace (or append to) table `name` with rows, by a load job of newline-delimited JSON."""
        import orjson

        body = b"".join(orjson.dumps({c: _json_value(r.get(c)) for c in columns}) + b"\n" for r in rows)
        self._load(name, body, columns, self._bq.SourceFormat.NEWLINE_DELIMITED_JSON, append)

    def load_manifest(self, csv_paths: list[Path]) -> None:
        """All of the run's events-W.csv in one load job. A job per CSV would append to the table once per
        publishing worker, and a standard table takes 5 metadata updates per 10 s (load and query jobs that
        write to it count: cloud.google.com/bigquery/quotas, "Standard tables", "Maximum rate of table metadata
        update operations per table"), so a many-worker load-test run failed there with rateLimitExceeded."""
        # Without `event` (the published JSON, which the comparison never reads from here: load_published takes it
        # when a contract needs it); bqemulator's CSV reader also failed to sniff lines holding quoted JSON.
        names = MANIFEST_COLUMNS
        columns = dict.fromkeys(names, "STRING")
        with tempfile.TemporaryFile() as body:
            # One header line, skipped: loaded header-less with skip_leading_rows=0, bqemulator lost the first row
            # (tests/reconcile/test_read_bounds.py); with a header, both skip exactly that line.
            body.write(",".join(names).encode() + b"\n")
            concatenate_csvs(csv_paths, body, names)
            body.seek(0)
            self._load("manifest", body, columns, self._bq.SourceFormat.CSV, append=False,
                       skip_leading_rows=1, allow_quoted_newlines=True)  # fmt: skip

    def load_known_runs(self, run_ids: Iterable[str]) -> None:
        self.load_rows("known_runs", [{"run_id": r} for r in run_ids], {"run_id": "STRING"})

    def load_files(self, files: list[dict[str, Any]]) -> None:
        self.load_rows("files", files, FILE_COLUMNS)

    def load_gcs_lines(
        self, event_type: str, paths: list[str], scope: str, root: str | None = None, prefixes: list[str] = (),
        gcs: Any = None, contract: Any = None,
    ) -> None:  # fmt: skip
        """One type's GCS records into sink_events: an external table over the folders `prefixes` (real BigQuery,
        gs://, JSON lines; reconcile.bounds.folder_prefixes), or the records of the local copies `paths` (any
        format of the contract) loaded as (path, line)."""
        from reconcile import contract_sql

        contract = contract or _default_contract()
        gcs = gcs or contract.gcs
        lines = f"{self.project}.{self.dataset}.{self._names[f'gcs_lines_{event_type}']}"
        if self.external:
            if not paths or not prefixes:
                return
            self.run(external_table_ddl(f"{lines}_external", prefixes))
            source = external_lines(f"`{lines}_external`", prefixes)
        else:
            rows = [{"path": p, "line": record} for p in paths for record in file_records(p, gcs.format, gcs.gzip)]
            if not rows:
                return
            self.load_rows(f"gcs_lines_{event_type}", rows, {"path": "STRING", "line": "STRING"})
            source = f"`{lines}`"
        typed = contract_sql.gcs_typed_bigquery(gcs, event_type, source)
        select = contract_sql.gcs_select(gcs, contract, event_type, typed, self.tables["files"])
        self.run(f"INSERT INTO {self.tables['sink_events']} SELECT * FROM ({select}) WHERE {scope}")

    def typed_published(self, event_type: str) -> str:
        """The published events of one type, typed as the event table (contract_sql.expected_select)."""
        from reconcile import contract_sql

        return contract_sql.published_typed_bigquery(event_type, self.tables["published"])

    def load_published(self, csv_paths: dict[str, list[Path]]) -> None:
        """The `event` column of the manifests of each run (run id -> its events-*.csv) into `published`."""
        import csv

        rows, seen = [], set()
        wanted = ("event_id", "event_type", "expected", "event")
        for run_id, paths in csv_paths.items():
            for path in paths:
                with Path(path).open(newline="", encoding="utf-8") as f:
                    for r in csv.DictReader(f):
                        # One row per event: a re-send is a second line of the same event.
                        if r.get("outcome") == "published" and r.get("event") and (run_id, r["event_id"]) not in seen:
                            seen.add((run_id, r["event_id"]))
                            rows.append({"run_id": run_id, **{c: r.get(c) for c in wanted}})
        if rows:
            self.load_rows("published", rows, PUBLISHED_COLUMNS)

    def load_select(self, table: str, sql: str, client: Any = None, location: str | None = None) -> None:
        """Rows of a SELECT over BigQuery's own tables into sink_events or dead_letters, inside BigQuery (in this
        engine's location, which is the events dataset's: check_locations saw to it)."""
        self.run(f"INSERT INTO {self.tables[table]} {sql}")

    def load_dead_letter_rows(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.load_rows("dead_letters", rows, DEAD_LETTER_COLUMNS, append=True)

    def gcs_parts(self, gcs: Any, contract: Any, event_type: str, paths: list[str], ids: list[str],
                  keys: list[str]) -> None:  # fmt: skip
        """None: the altered events' files are not loaded again here (a load job per file set, for a note's
        detail); reconcile.altered says which field only for the event tables then."""
        return None

    def close(self) -> None:
        """Drop this reconcile's scratch tables (the dataset stays for the next one)."""
        for name in self._names.values():
            for table in (name, f"{name}_external"):
                self.client.delete_table(f"{self.project}.{self.dataset}.{table}", not_found_ok=True)


def file_records(path: str, fmt: str, gzip: bool = False) -> list[str]:
    """The records of one GCS file as JSON texts, one each: its lines (jsonl), its array's elements (json_array),
    or its whole body (json_object); gunzipped when it is gzip (its magic bytes decide, as eventmodel.history)."""
    from eventmodel.history import gunzipped

    body = b"".join(gunzipped([Path(path).read_bytes()]))
    if fmt == "jsonl":
        return [raw.decode("utf-8", "replace") for raw in body.splitlines() if raw.strip()]
    if fmt == "json_array":
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return [body.decode("utf-8", "replace")]  # a broken file: one record that types to nothing
        return (
            [orjson.dumps(e).decode() for e in parsed] if isinstance(parsed, list) else [orjson.dumps(parsed).decode()]
        )
    return [body.decode("utf-8", "replace").replace("\n", " ")]


def concatenate_csvs(csv_paths: list[Path], out: Any, columns: tuple[str, ...] = EVENT_COLUMNS) -> None:
    """The rows of every events-W.csv, one header-less CSV of `columns` in order, written to the binary file
    `out`: what one load job reads. A CSV whose header is not `columns` (other columns, or in another order) is
    rewritten to them; the others are copied byte for byte."""
    import csv
    import io
    import shutil

    expected = ",".join(columns).encode()
    for path in csv_paths:
        with Path(path).open("rb") as f:
            header = f.readline().rstrip(b"\r\n")
            if header == expected:
                start = out.tell()
                shutil.copyfileobj(f, out, 1 << 20)
                if out.tell() > start:
                    out.seek(-1, io.SEEK_CUR)
                    if out.read(1) != b"\n":
                        out.write(b"\n")
                continue
        with Path(path).open(newline="", encoding="utf-8") as f:
            text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
            writer = csv.writer(text)
            for row in csv.DictReader(f):
                writer.writerow([row.get(c) or "" for c in columns])
            text.detach()


# Load jobs are not retried by the client library (only queries are, google.cloud.bigquery.retry), and a rate
# error is transient: wait and send the job again, within about half a minute (past a 10 s quota window).
RATE_LIMIT_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 16.0)


def rate_limited(exc: BaseException) -> bool:
    """A BigQuery error that says "too fast, try again": reason rateLimitExceeded (a 403; quotaExceeded is not
    transient and is not retried), cloud.google.com/bigquery/docs/error-messages."""
    errors = getattr(exc, "errors", None) or []
    return any((e or {}).get("reason") == "rateLimitExceeded" for e in errors)


def retry_rate_limited(call: Any, delays: tuple[float, ...] = RATE_LIMIT_DELAYS_S, sleep: Any = None) -> Any:
    """call(), again after each of `delays` while BigQuery answers rateLimitExceeded; any other error at once."""
    import time

    from google.api_core.exceptions import GoogleAPICallError

    sleep = sleep or time.sleep
    for delay in (*delays, None):
        try:
            return call()
        except GoogleAPICallError as exc:
            if delay is None or not rate_limited(exc):
                raise
            sleep(delay)
    return None


def external_uris(prefixes: list[str]) -> list[str]:
    """An external table's source URIs for gs:// folders: every .json object under each (one wildcard, at the
    end of the name: cloud.google.com/bigquery/docs/external-data-cloud-storage, "Wildcard support for Cloud
    Storage URIs"). The URIs decide which objects a query of the table reads, so they are the files billed."""
    return [f"{p.rstrip('/')}/*.json" for p in prefixes]


def external_table_ddl(table: str, prefixes: list[str]) -> str:
    """CREATE EXTERNAL TABLE reading each line of the .json objects under `prefixes` as one STRING column."""
    uris = ", ".join(Q._string(u) for u in external_uris(prefixes))
    return (
        f"CREATE OR REPLACE EXTERNAL TABLE `{table}` (line STRING) OPTIONS (format = 'CSV', uris = [{uris}], "
        f"field_delimiter = '{LINE_DELIMITER}', quote = '', allow_jagged_rows = TRUE)"
    )


def external_config(prefixes: list[str]) -> Any:
    """The same table as external_table_ddl, as a query's temporary table definition (a dry run creates nothing)."""
    from google.cloud import bigquery

    config = bigquery.ExternalConfig("CSV")
    config.source_uris = external_uris(prefixes)
    config.schema = [bigquery.SchemaField("line", "STRING")]
    config.options.field_delimiter = LINE_DELIMITER
    config.options.quote_character = ""
    config.options.allow_jagged_rows = True
    return config


def external_lines(table: str, prefixes: list[str]) -> str:
    """(path, line) rows of an external table, kept to the objects under `prefixes` by _FILE_NAME as well: the
    URIs already select them; the filter states the bound in the statement itself, where a review (or the
    tests' strict client) sees it."""
    return f"(SELECT _FILE_NAME AS path, line FROM {table} WHERE {Q.file_name_filter(prefixes)})"


def dry_run_bytes(client: Any, sql: str, location: str | None, table_definitions: dict | None = None) -> int:
    """What BigQuery would scan for `sql`, without running it: a dry run (no cost, nothing written), the query
    cache off so that the estimate is the full read (cloud.google.com/bigquery/docs/samples/bigquery-query-dry-run)."""
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
    if table_definitions:
        config.table_definitions = table_definitions
    job = client.query(sql, job_config=config, location=location)
    return int(job.total_bytes_processed or 0)


def _json_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
