"""The DDL as text: every statement parses as BigQuery SQL, and the columns and options it declares agree with
eventmodel.schema and eventmodel.rows. These run without the emulator; they also cover what the emulator does
not keep (partitioning, clustering and table options are not in its metadata)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import sqlglot
from ddl_helpers import OPS_DIR, REPO, sql_files
from sqlglot import exp

from ddl.apply import emulator_gap, render_file
from ddl.model import parse_model
from endpoints.sql_statements import split_statements, strip_comments
from eventmodel import reasons
from eventmodel import rows as R
from eventmodel import schema as S

# Statements sqlglot 30 cannot parse as BigQuery although BigQuery runs them: (pattern, why). Anything else that
# fails to parse, or that sqlglot only keeps as an opaque Command, fails the test.
SQLGLOT_GAPS = (
    (re.compile(r"\bAPPENDS\s*\(\s*TABLE\b", re.I), "TABLE arguments of table-valued functions (APPENDS)"),
    (re.compile(r"^\s*EXECUTE\s+IMMEDIATE\b", re.I), "EXECUTE IMMEDIATE (kept as an opaque Command)"),
    (re.compile(r"^\s*CREATE\s+SNAPSHOT\s+TABLE\b", re.I), "CREATE SNAPSHOT TABLE (kept as an opaque Command)"),
    (re.compile(r"\bCLONE\b.*\bFOR\s+SYSTEM_TIME\b", re.I | re.S), "CLONE ... FOR SYSTEM_TIME (an opaque Command)"),
)


def _all_statements() -> list[tuple[str, str]]:
    out = []
    for path in sql_files():
        text = render_file(path, project="p", dataset="events", history_uri="gs://bucket/history")
        out += [(f"{path.relative_to(REPO)}#{i}", sql) for i, sql in enumerate(split_statements(text), 1)]
    return out


STATEMENTS = _all_statements()


# A scripting loop: sqlglot 30 parses its header and first body statement, then keeps END FOR as a Command, so
# the header's query and each statement of the body are parsed on their own.
LOOP = re.compile(r"^\s*FOR\s+(\w+)\s+IN\s*(\(.*?\))\s*DO\b(.*)\bEND\s+FOR\s*$", re.I | re.S)


def parse_statement(sql: str) -> list[exp.Expression]:
    """The statement parsed strictly; a FOR loop as its header query followed by its body's statements."""
    loop = LOOP.match(strip_comments(sql))
    if loop:
        parsed = [sqlglot.parse_one(loop.group(2), read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)]
        for body in split_statements(loop.group(3)):
            parsed += parse_statement(body)
        return parsed
    parsed = sqlglot.parse(sql, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
    assert len(parsed) == 1, f"{sql[:60]!r} holds {len(parsed)} statements: a missing semicolon?"
    return parsed


@pytest.mark.parametrize(("label", "sql"), STATEMENTS, ids=[label for label, _ in STATEMENTS])
def test_every_statement_parses_as_bigquery(label, sql):
    gap = next((why for pattern, why in SQLGLOT_GAPS if pattern.search(strip_comments(sql))), None)
    if gap:
        # A known sqlglot gap must really be one: if sqlglot learns it, the entry above should go.
        with pytest.raises(sqlglot.errors.ParseError):
            parsed = sqlglot.parse(sql, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
            if all(isinstance(e, exp.Command) for e in parsed):
                raise sqlglot.errors.ParseError(gap)
        return
    for parsed in parse_statement(sql):
        assert not isinstance(parsed, exp.Command), f"{label} parsed only as an opaque command"


def test_statement_splitter_agrees_with_sqlglot():
    text = "SELECT 'a;b' AS x; -- c; d\nSELECT \"e;\" /* f; */ AS y;\nSELECT `g;h` FROM t; # i;\n"
    assert split_statements(text) == ["SELECT 'a;b' AS x", '-- c; d\nSELECT "e;" /* f; */ AS y', "SELECT `g;h` FROM t"]
    for path in sql_files():
        if path.parent == OPS_DIR:
            continue
        text = render_file(path, project="p", dataset="events")
        assert len(split_statements(text)) == len(sqlglot.parse(text, read="bigquery")), path.name


@pytest.fixture(scope="module")
def model():
    return parse_model(project="p", dataset="events")


def _schema_columns(fields: tuple[S.Field, ...]) -> list[tuple[str, str, bool, list]]:
    """(name, BigQuery type prefix, required, members) as eventmodel.schema and eventmodel.rows declare them.

    An array (records) is a REPEATED column, which has no NOT NULL in BigQuery: absent means empty."""
    return [
        (f.name, R.BIGQUERY_TYPES[f.kind], f.required and f.kind != "records", _schema_columns(f.fields))
        for f in fields
    ]


def _ddl_columns(columns) -> list[tuple[str, str, bool, list]]:
    def kind(type_text: str) -> str:
        # Compare nested types by shape: STRUCT<...> -> STRUCT, ARRAY<STRUCT<...>> -> ARRAY<STRUCT>.
        if type_text.startswith("ARRAY<STRUCT"):
            return "ARRAY<STRUCT>"
        return type_text.split("<")[0]

    return [(c.name, kind(c.type), c.required, _ddl_columns(c.fields)) for c in columns]


def contract_problems(model, schemas=S.SCHEMAS) -> list[str]:
    """Every way the DDL tables differ from eventmodel.schema + eventmodel.rows metadata, in words."""
    problems = []
    for event_type, fields in schemas.items():
        table = model[R.TABLES[event_type]]
        ddl = _ddl_columns(table.columns)
        expected = _schema_columns(fields) + [
            (name, R.METADATA_TYPES[name], name in R.REQUIRED_METADATA, []) for name in R.METADATA_COLUMNS
        ]

        # Nested members are NULLABLE in the DDL on purpose (bqemulator rejects NOT NULL inside STRUCT; the
        # validator guarantees presence), so their mode is not compared.
        def loosen(cols):
            return [(n, t, None, loosen(m)) for n, t, _, m in cols]

        for want, got in zip(expected, ddl, strict=False):
            if (want[0], want[1], want[2], loosen(want[3])) != (got[0], got[1], got[2], loosen(got[3])):
                problems.append(f"{table.name}: expected column {want}, DDL has {got}")
        if len(expected) != len(ddl):
            names = [c[0] for c in ddl]
            missing = [c[0] for c in expected if c[0] not in names]
            extra = [n for n in names if n not in [c[0] for c in expected]]
            problems.append(f"{table.name}: missing columns {missing}, extra columns {extra}")
    return problems


def test_event_tables_match_the_event_schema_and_metadata(model):
    assert contract_problems(model) == []


def test_contract_check_notices_a_new_schema_field(model):
    grown = dict(S.SCHEMAS)
    grown[S.ORDER] = (*S.SCHEMAS[S.ORDER], S.Field("coupon_code", "string"))
    assert any("coupon_code" in p for p in contract_problems(model, grown))


def test_contract_check_notices_a_type_change(model):
    changed = dict(S.SCHEMAS)
    changed[S.INVENTORY] = tuple(
        replace(f, kind="number") if f.name == "quantity_change" else f for f in S.SCHEMAS[S.INVENTORY]
    )
    assert any("quantity_change" in p for p in contract_problems(model, changed))


def test_dead_letter_table_matches_rows_module(model):
    table = model[R.DEAD_LETTER_TABLE]
    assert [c.name for c in table.columns] == list(R.DEAD_LETTER_COLUMNS)
    assert {c.name: c.type for c in table.columns} == R.DEAD_LETTER_TYPES
    assert {c.name for c in table.columns if c.required} == R.DEAD_LETTER_REQUIRED


@pytest.mark.parametrize("event_type", S.EVENT_TYPES)
def test_event_tables_partition_by_the_events_own_day(model, event_type):
    table = model[R.TABLES[event_type]]
    assert table.partition == f"DATE({S.EVENT_TIME_FIELD[event_type]})"


def test_cluster_keys_are_top_level_scalar_columns(model):
    for table in model.values():
        types = {c.name: c.type for c in table.columns}
        assert len(table.cluster) <= 4, table.name  # BigQuery's limit
        for key in table.cluster:
            assert key in types, f"{table.name} clusters on unknown column {key}"
            assert not types[key].startswith(("ARRAY", "STRUCT", "JSON")), f"{table.name}: {key} cannot cluster"


def test_cost_options_are_declared(model):
    # The emulator drops these, so the DDL text is where they are checked.
    assert model["user_activity"].options["require_partition_filter"] == "TRUE"
    for name in ("orders", "inventory"):  # their views need every partition: see the DDL comments
        assert model[name].options["require_partition_filter"] == "FALSE"
    assert int(model[R.DEAD_LETTER_TABLE].options["partition_expiration_days"]) == 30
    for name in R.TABLES.values():
        assert "partition_expiration_days" not in model[name].options, f"{name} must keep its history"


def test_dataset_time_travel_window_is_deliberate():
    text = render_file(REPO / "ddl" / "00_datasets.sql", project="p", dataset="events")
    hours = int(re.search(r"max_time_travel_hours\s*=\s*(\d+)", text).group(1))
    assert 48 <= hours <= 168 and hours % 24 == 0  # BigQuery accepts whole days from 2 to 7


def test_history_landing_tables_follow_the_live_tables(model):
    for event_type, table in R.TABLES.items():
        landing = model[R.HISTORY_TABLES[event_type]]
        assert landing.sources == [table]
    text = (REPO / "ddl" / "20_history_landing.sql").read_text()
    assert text.count("EXCEPT (" + ", ".join(R.METADATA_COLUMNS) + ")") == len(R.TABLES)


def test_history_merge_inserts_every_live_column(model):
    merges = [e for e in _merge_script() if isinstance(e, exp.Merge)]
    assert len(merges) == len(R.TABLES)
    for merge in merges:
        target = model[merge.this.name]
        insert = merge.find(exp.Insert)
        columns = [c.name for c in insert.this.expressions]
        assert columns == [c.name for c in target.columns], target.name


ENUM_COLUMNS = {"status": S.ORDER_STATUSES, "activity_type": S.ACTIVITY_TYPES, "reason": S.INVENTORY_REASONS}


def test_enum_literals_in_the_sql_exist_in_the_schema():
    """A view comparing activity_type to a value the schema does not know would silently count zero."""
    seen = 0
    for _label, sql in STATEMENTS:
        if any(p.search(strip_comments(sql)) for p, _ in SQLGLOT_GAPS):
            continue
        for comparison in sqlglot.parse_one(sql, read="bigquery").find_all(exp.EQ, exp.NEQ, exp.In):
            column = comparison.find(exp.Column)
            if column is None or column.name not in ENUM_COLUMNS:
                continue
            for literal in comparison.find_all(exp.Literal):
                if literal.is_string:
                    seen += 1
                    assert literal.this in ENUM_COLUMNS[column.name], f"{column.name} = {literal.this!r}"
    assert seen >= 3  # the session counts compare activity_type: the check did look at something


def test_emulator_gaps_only_match_what_they_describe():
    assert emulator_gap("CREATE SNAPSHOT TABLE IF NOT EXISTS a CLONE b") is not None
    assert emulator_gap("CREATE SNAPSHOT TABLE a CLONE b") is None  # the one form bqemulator does run
    assert emulator_gap("LOAD DATA INTO t FROM FILES (format = 'CSV', uris = ['gs://b/x'])") is not None
    assert emulator_gap("-- LOAD DATA in a comment\nSELECT 1") is None
    for _label, sql in STATEMENTS[: len(STATEMENTS)]:
        if "ddl/ops" not in _label:
            assert emulator_gap(sql) is None, f"{_label}: the applied DDL should run on the emulator as written"


def _event_id_windows(sql: str) -> list[list[str]]:
    """The PARTITION BY column lists of every window in a statement that partitions by event_id."""
    windows = []
    for window in sqlglot.parse_one(sql, read="bigquery").find_all(exp.Window):
        keys = [c.name for c in window.args.get("partition_by") or [] if isinstance(c, exp.Column)]
        if R.EVENT_ID in keys:
            windows.append(keys)
    return windows


def test_every_view_reads_each_event_id_once(model):
    """A view either deduplicates by event_id itself or reads only views that do; raw tables never leak through."""
    views_sql = {}
    for _label, sql in STATEMENTS:
        tree = sqlglot.parse_one(sql, read="bigquery") if "ddl/30_views.sql" in _label else None
        if isinstance(tree, exp.Create) and tree.kind in ("VIEW", "FUNCTION"):
            target = tree.this.this if isinstance(tree.this, exp.UserDefinedFunction) else tree.this
            views_sql[target.name] = sql
    assert {n for n, t in model.items() if t.kind != "table"} == set(views_sql)

    deduped: set[str] = set()
    for name, table in model.items():  # DDL order: a view's sources are defined before it
        if table.kind == "table":
            continue
        if _event_id_windows(views_sql[name]):
            deduped.add(name)
        else:
            assert table.sources and set(table.sources) <= deduped, f"{name} reads {table.sources} without dedup"
    assert deduped  # the check found the dedup windows at all


def test_dedup_windows_also_key_on_the_event_time_and_cluster_columns(model):
    """Duplicates share their event time and cluster columns, so keying the window on them too keeps the result
    and lets a filter on them through the view reach the table's partitions and blocks (docs/data-model.md)."""
    time_field = {R.TABLES[t]: f for t, f in S.EVENT_TIME_FIELD.items()}
    checked = 0
    for _label, sql in STATEMENTS:
        if "ddl/30_views.sql" not in _label:
            continue
        for keys in _event_id_windows(sql):
            tree = sqlglot.parse_one(sql, read="bigquery")
            tables = {t.name for t in tree.find_all(exp.Table)} & set(time_field)
            assert len(tables) == 1, _label
            table = tables.pop()
            assert keys == [R.EVENT_ID, time_field[table], *model[table].cluster], _label
            checked += 1
    assert checked == 3  # orders_deduped, inventory_deduped, user_sessions_between


def _merge_script() -> list[exp.Expression]:
    text = render_file(OPS_DIR / "history_merge.sql", project="p", dataset="events")
    return [e for sql in split_statements(text) for e in parse_statement(sql)]


def required_paths(event_type: str) -> set[str]:
    """Every field path eventmodel.schema requires outside arrays of records, e.g. "shipping_address.city".

    The members of a records array (an order's items lines) are NULLABLE in the live table, so a NULL there
    cannot fail the MERGE; the backfill leaves them to the batch pipeline's validator (history_merge.sql)."""
    arrays = {f.name for f in S.SCHEMAS[event_type] if f.kind == "records"}
    return {
        path
        for path, f in S.field_paths(event_type).items()
        if f.required and path not in arrays and path.split(".")[0] not in arrays
    }


def _null_checked_paths(statement: exp.Expression) -> set[str]:
    """The field paths a statement's missing_fields list names: IF(<path> IS NULL, '<path>', NULL) entries."""
    named = set()
    for alias in statement.find_all(exp.Alias):
        if alias.alias != "missing_fields":
            continue
        for literal in alias.this.find_all(exp.Literal):
            if literal.is_string and literal.this not in (", ", ""):
                named.add(literal.this)
        for check in alias.this.find_all(exp.Is):
            column = check.this
            if isinstance(column, exp.Column):
                parts = [p.name for p in column.parts]
                if parts[0] == "line":  # UNNEST(<records>) AS line: the record's own name is in the label
                    continue
                assert ".".join(parts) in named, f"{'.'.join(parts)} is checked but not named in missing_fields"
    return named


def test_history_merge_routes_every_required_null_to_the_dead_letters():
    """Both the dead-letter step and the MERGE name exactly the fields eventmodel.schema requires."""
    script = _merge_script()
    letters = [e for e in script if isinstance(e, exp.Insert) and e.this.this.name == R.DEAD_LETTER_TABLE]
    merges = [e for e in script if isinstance(e, exp.Merge)]
    assert len(letters) == len(merges) == len(R.TABLES)
    by_table = {v: k for k, v in R.TABLES.items()}
    for letter, merge in zip(letters, merges, strict=True):
        event_type = by_table[merge.this.name]
        assert _null_checked_paths(letter) == required_paths(event_type), f"dead letters of {event_type}"
        assert _null_checked_paths(merge) == required_paths(event_type), f"MERGE into {merge.this.name}"
        literals = {lit.this for lit in letter.find_all(exp.Literal) if lit.is_string}
        assert {reasons.NULL_FIELD, event_type} <= literals, "the reason code and event type of the dead letter"


def test_history_merge_is_split_by_year():
    """One job modifies at most 4,000 partitions: the MERGEs run inside a loop over the landed years."""
    text = render_file(OPS_DIR / "history_merge.sql", project="p", dataset="events")
    loops = [s for s in split_statements(text) if LOOP.match(strip_comments(s))]
    assert len(loops) == 1
    assert strip_comments(loops[0]).count("MERGE ") == len(R.TABLES)
    assert "MERGE " not in strip_comments(text.replace(loops[0], ""))
    for table, field in ((R.TABLES[t], S.EVENT_TIME_FIELD[t]) for t in S.EVENT_TYPES):
        bound = (
            f"live.{field} >= TIMESTAMP(DATE(year.value, 1, 1)) "
            f"AND live.{field} < TIMESTAMP(DATE(year.value + 1, 1, 1))"
        )
        assert bound in loops[0], f"the MERGE into {table} is bounded to the loop's year"


def test_history_loads_name_the_live_tables_event_columns_all_nullable(model):
    """LOAD DATA OVERWRITE without a column list would auto-detect and replace the landing schema (FLOAT64 for
    NUMERIC, unknown fields as columns): each load lists the live table's event columns, same types, no NOT NULL."""
    text = render_file(OPS_DIR / "history_load.sql", project="p", dataset="events", history_uri="gs://b/h")
    loads = [sqlglot.parse_one(s, read="bigquery") for s in split_statements(text)]
    assert loads and all(isinstance(load, exp.LoadData) and load.args.get("overwrite") for load in loads)
    for load in loads:
        landing = load.this.this.name
        live = model[landing.removeprefix("history_")]
        listed = [(c.name, c.args["kind"].sql("bigquery")) for c in load.this.expressions]
        expected = [(c.name, c.type) for c in live.columns if c.name not in R.METADATA_COLUMNS]
        assert listed == expected, landing
        assert not any(c.constraints for c in load.this.expressions), f"{landing}: a landing column is NOT NULL"


def test_the_snapshot_run_book_is_a_scheduled_query_after_the_streaming_buffer_clears():
    """Scheduled with `bq query --schedule` (a multi-line script pasted into JSON params was invalid), dated by the
    scheduler's @run_date (a missed day can be re-run by hand with --parameter), and late enough after midnight
    that the day's streamed rows have left the streaming buffer (up to 90 minutes), which snapshots leave out."""
    text = (OPS_DIR / "snapshots.sql").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("--"))
    assert "bq query --use_legacy_sql=false" in header and '--schedule="every day 02:07"' in header
    assert "--parameter=run_date:DATE:" in header and "transfer_config" not in header
    hour, minute = map(int, re.search(r'--schedule="every day (\d\d):(\d\d)"', header).groups())
    assert hour * 60 + minute > 90 and minute != 0, "past the 90-minute buffer, and off the hour"
    code = strip_comments(text)
    assert "@run_date" in code and "CURRENT_DATE" not in code


def test_undoing_a_backfill_deletes_its_rows_instead_of_swapping_in_an_older_clone():
    code = strip_comments((OPS_DIR / "time_travel.sql").read_text())
    assert "CLONE `${project}.${dataset}.orders` FOR SYSTEM_TIME" not in code, "a clone would drop rows streamed since"
    deletes = re.findall(r"DELETE FROM `\$\{project\}\.\$\{dataset\}\.(\w+)`\s+WHERE run_id = ", code)
    assert sorted(deletes) == sorted(R.TABLES.values())
