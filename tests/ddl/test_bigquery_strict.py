"""Strict BigQuery mode (endpoints/bigquery_strict.py): each rule fires on a bad statement and lets a good one
through, as pure functions and against a real bqemulator, which itself accepts every one of the bad statements.

Here, beside the DDL tests, because its partition rules are the DDL's (ddl.model.partition_rules, injected by
tests/conftest.py) and every DDL and run-book statement must pass them; tests/endpoints/ has the factories."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest
from ddl_helpers import PROJECT
from events import T0, activity, uid
from google.api_core.exceptions import BadRequest, Conflict
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddl.apply import DDL_DIR
from ddl.model import parse_model, partition_filter_columns, partition_rules
from endpoints import bigquery_strict as strict
from endpoints.bigquery import bigquery_client
from endpoints.bigquery_strict import StrictClient, StrictModeError, partition_filter_problems
from eventmodel import rows as R

RULES = {"user_activity": "timestamp"}
FAST = Retry(initial=0.2, maximum=1.0, deadline=10.0)
T = "`p.events.user_activity`"

# The event-table SELECT that reconcile sent to BigQuery at 11d9a96 (reconcile/queries.py bigquery_select with
# reconcile/run.py _scope, rendered for user_activity): it bounds the run by run_id and publish_time only, so
# BigQuery refuses it (issue #20, defect 1). Kept verbatim as the known-bad example the rule must catch.
RECONCILE_AT_11D9A96 = """
SELECT 'bigquery' AS sink, 'user_activity' AS location, event_id, message_id, run_id,
       publish_time, ingest_time AS landed_time, event_type, 'user_activity' AS container_type,
       FORMAT_TIMESTAMP('%Y%m%d%H%M', timestamp) AS event_minute, CAST(NULL AS STRING) AS container_minute,
       TRUE AS name_ok, TO_HEX(MD5(CONCAT(COALESCE(event_type, CHR(9216)), CHR(31), COALESCE(user_id, CHR(9216)), CHR(31), COALESCE(activity_type, CHR(9216)), CHR(31), COALESCE(ip_address, CHR(9216)), CHR(31), COALESCE(user_agent, CHR(9216)), CHR(31), COALESCE(CAST(UNIX_MICROS(timestamp) AS STRING), CHR(9216)), CHR(31), COALESCE(metadata.session_id, CHR(9216)), CHR(31), COALESCE(metadata.platform, CHR(9216))))) AS canonical_digest
FROM `{table}` WHERE (run_id IN ('run-1') OR ((run_id IS NULL OR run_id NOT IN ('run-1', 'run-0')) AND publish_time BETWEEN TIMESTAMP('2026-12-01T10:00:00.000000Z') AND TIMESTAMP('2026-12-01T10:30:00.000000Z')))"""  # noqa: E501

REFUSED = {
    "no filter": f"SELECT * FROM {T}",
    "other columns only": f"SELECT * FROM {T} WHERE run_id = 'r' AND publish_time > TIMESTAMP '2024-01-01'",
    "OR with another column": f"SELECT * FROM {T} WHERE timestamp > TIMESTAMP '2024-01-01' OR run_id = 'r'",
    "partition column against a column": f"SELECT * FROM {T} WHERE TIMESTAMP_ADD(timestamp, INTERVAL 1 HOUR) > x",
    "partition column against a subquery": f"SELECT * FROM {T} WHERE timestamp > (SELECT MAX(t) FROM p.events.x)",
    "in a CTE": f"WITH a AS (SELECT * FROM {T}) SELECT COUNT(*) FROM a WHERE run_id = 'r'",
    "in a subquery": f"SELECT * FROM p.events.orders WHERE customer_id IN (SELECT user_id FROM {T})",
    "in a derived table": f"SELECT * FROM (SELECT * FROM {T}) AS x WHERE x.run_id = 'r'",
    "in a join": f"SELECT * FROM p.events.orders AS o JOIN {T} AS u ON u.user_id = o.customer_id "
    "WHERE o.order_date > TIMESTAMP '2024-01-01'",
    "one branch of a UNION": f"SELECT event_id FROM p.events.orders UNION ALL SELECT event_id FROM {T}",
    "CTAS": f"CREATE TABLE p.events.copy AS SELECT * FROM {T}",
    "INSERT ... SELECT": f"INSERT INTO p.events.copy SELECT * FROM {T}",
    "DELETE": f"DELETE FROM {T} WHERE run_id = 'r'",
    "UPDATE": f"UPDATE {T} SET run_id = 'x' WHERE run_id = 'r'",
    "MERGE target": f"MERGE {T} AS live USING p.events.history_user_activity AS h ON live.user_id = h.user_id "
    "WHEN NOT MATCHED THEN INSERT ROW",
    "reconcile at 11d9a96": RECONCILE_AT_11D9A96.format(table="p.events.user_activity"),
}

ACCEPTED = {
    "a range": f"SELECT * FROM {T} WHERE timestamp >= TIMESTAMP '2024-01-01' AND timestamp < TIMESTAMP '2024-02-01'",
    "a function of the column": f"SELECT * FROM {T} AS u WHERE DATE(u.timestamp) BETWEEN '2024-01-01' AND @until",
    "beside other predicates": f"SELECT * FROM {T} WHERE run_id = 'r' AND (timestamp > CURRENT_TIMESTAMP())",
    "every OR branch on the column": f"SELECT * FROM {T} WHERE timestamp < '2020-01-01' OR timestamp > '2024-01-01'",
    "IN a list of days": f"SELECT * FROM {T} WHERE DATE(timestamp) IN ('2024-01-01', '2024-01-02')",
    "inside the CTE": f"WITH a AS (SELECT * FROM {T} WHERE timestamp > '2024-01-01') SELECT * FROM a",
    "pushed down from the CTE's reader": f"WITH a AS (SELECT * FROM {T}) SELECT * FROM a WHERE timestamp > '2024'",
    "in the JOIN condition": f"SELECT * FROM p.events.orders AS o JOIN {T} AS u "
    "ON u.user_id = o.customer_id AND u.timestamp > '2024-01-01'",
    "DELETE with a bound": f"DELETE FROM {T} WHERE run_id = 'r' AND timestamp < TIMESTAMP '2024-01-01'",
    "MERGE bounded in ON": f"MERGE {T} AS live USING p.events.history_user_activity AS h "
    "ON live.timestamp > '2024-01-01' AND live.user_id = h.user_id WHEN NOT MATCHED THEN INSERT ROW",
    "a script variable": f"DECLARE since TIMESTAMP DEFAULT @t; SELECT * FROM {T} WHERE timestamp > since",
    "the table's DDL": "CREATE TABLE p.events.user_activity (timestamp TIMESTAMP) PARTITION BY DATE(timestamp)",
    "a view over it (checked when queried)": f"CREATE OR REPLACE VIEW p.events.v AS SELECT * FROM {T}",
    "an INSERT into it": "INSERT INTO p.events.user_activity (event_id) VALUES ('e')",
    "another table of that name's prefix": "SELECT * FROM p.events.history_user_activity",
    "a CTE that shadows the name": "WITH user_activity AS (SELECT 1 AS x) SELECT * FROM user_activity",
}


# ------------------------------------------------------------------------------------------- pure rule


@pytest.mark.parametrize("sql", REFUSED.values(), ids=REFUSED.keys())
def test_a_read_without_a_partition_filter_is_refused_in_bigquerys_words(sql):
    assert partition_filter_problems(sql, RULES, "p") == [
        "Cannot query over table 'p.events.user_activity' without a filter over column(s) 'timestamp' "
        "that can be used for partition elimination"
    ]


@pytest.mark.parametrize("sql", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_read_with_a_partition_filter_passes(sql):
    assert partition_filter_problems(sql, RULES, "p") == []


def test_the_table_is_named_with_the_default_project_when_the_sql_leaves_it_out():
    [message] = partition_filter_problems("SELECT * FROM events.user_activity", RULES, "my-project")
    assert "'my-project.events.user_activity'" in message


def test_the_rules_are_read_from_the_ddl(tmp_path):
    assert partition_rules() == partition_filter_columns(parse_model()) == {"user_activity": "timestamp"}
    # tests/conftest.py hands them to every strict client of the suite (and of the processes it starts).
    assert strict.rules_from_environment() == partition_rules()
    # A table whose DDL turns the option on becomes a rule, with its own partitioning column.
    for path in DDL_DIR.glob("*.sql"):
        (tmp_path / path.name).write_text(path.read_text().replace("= FALSE", "= TRUE"), encoding="utf-8")
    rules = partition_filter_columns(parse_model(ddl_dir=tmp_path))
    assert rules == {"orders": "order_date", "inventory": "timestamp", "user_activity": "timestamp",
                     R.DEAD_LETTER_TABLE: "ingest_time"}  # fmt: skip


def test_every_ddl_and_run_book_statement_passes_the_rule():
    from ddl_helpers import sql_files

    from ddl.apply import render_file

    for path in sql_files():
        text = render_file(path, project="p", dataset="events", history_uri="gs://b/h")
        assert partition_filter_problems(text, partition_rules(), "p") == [], path.name


def test_location_rule_names_the_rule():
    assert strict.location_problem("query", "europe-west3") is None
    error = strict.location_problem("get_job", None, "job-1")
    assert isinstance(error, StrictModeError)
    assert "get_job of job job-1 names no location" in error.message and strict.JOBS_GET_DOC in error.message


def test_strict_mode_follows_the_variable():
    assert strict.strict_enabled({strict.STRICT_ENV: "1"}) and not strict.strict_enabled({})
    plain = object()
    assert strict.maybe_strict(plain, {}) is plain
    assert isinstance(strict.maybe_strict(plain, {strict.STRICT_ENV: "1"}), StrictClient)
    assert os.environ[strict.STRICT_ENV] == "1", "tests/conftest.py runs the suite in strict mode"


def test_the_registry_claims_an_id_once_per_project_and_location(tmp_path):
    registry = strict.JobRegistry(tmp_path)
    assert registry.claim("http://e", "p", "US", "j")
    assert not registry.claim("http://e", "p", "us", "j")
    assert registry.claim("http://e", "p", "EU", "j") and registry.claim("http://e", "q", "US", "j")
    assert registry.claim("http://other", "p", "US", "j")
    registry.forget("http://e")
    assert registry.claim("http://e", "p", "US", "j")


def test_one_emulator_is_one_registry_endpoint_however_its_address_is_written():
    written = ("127.0.0.1:9050", "http://127.0.0.1:9050", "http://127.0.0.1:9050/")
    assert {strict.endpoint_of(bigquery_client("p", address)) for address in written} == {"http://127.0.0.1:9050"}


# ---------------------------------------------------------------------------------- on the emulator


def _query(client, sql: str, **kwargs) -> list[dict]:
    return [dict(r) for r in client.query(sql, job_retry=None, retry=FAST, **kwargs).result(timeout=60)]


@pytest.fixture
def activity_dataset(bq_client, dataset) -> str:
    """The applied model with one user_activity row."""
    row = R.event_row(activity(uid("strict-s"), "login", T0), message_id="m1", publish_time=T0, attributes={})
    assert bq_client.insert_rows_json(f"{PROJECT}.{dataset}.user_activity", [row], retry=FAST) == []
    return dataset


@pytest.mark.integration
def test_the_factorys_client_is_strict_and_refuses_an_unfiltered_read(strict_bigquery, bq_client, activity_dataset):
    table = f"{PROJECT}.{activity_dataset}.user_activity"
    assert isinstance(bq_client, StrictClient)
    with pytest.raises(BadRequest) as refused:
        _query(bq_client, f"SELECT COUNT(*) AS n FROM `{table}` WHERE run_id IS NULL")
    assert refused.value.code == 400
    assert refused.value.message == (
        f"Cannot query over table '{table}' without a filter over column(s) 'timestamp' "
        "that can be used for partition elimination"
    )
    # The emulator itself runs it: without strict mode nothing here would fail.
    assert _query(bq_client.unwrapped, f"SELECT COUNT(*) AS n FROM `{table}` WHERE run_id IS NULL") == [{"n": 1}]
    bounded = f"SELECT COUNT(*) AS n FROM `{table}` WHERE timestamp >= TIMESTAMP '{T0:%Y-%m-%d}'"
    assert _query(bq_client, bounded) == [{"n": 1}]
    assert _query(strict_bigquery, bounded) == [{"n": 1}]


@pytest.mark.integration
def test_reconciles_event_select_at_11d9a96_is_refused(bq_client, activity_dataset):
    sql = RECONCILE_AT_11D9A96.format(table=f"{PROJECT}.{activity_dataset}.user_activity")
    with pytest.raises(BadRequest, match="without a filter over column\\(s\\) 'timestamp'"):
        _query(bq_client, sql)
    _query(bq_client.unwrapped, sql)  # which the emulator runs


@pytest.mark.integration
def test_a_job_call_without_a_location_is_refused(bigquery_emulator, activity_dataset):
    client = bigquery_emulator.client(location=None)
    assert isinstance(client, StrictClient) and client.location is None
    table = f"{PROJECT}.{activity_dataset}.dead_letters"
    with pytest.raises(StrictModeError, match="query names no location"):
        client.query("SELECT 1", project=PROJECT)
    with pytest.raises(StrictModeError, match="load_table_from_json names no location"):
        client.load_table_from_json([], table)
    job = client.query("SELECT 1 AS x", project=PROJECT, location="US", job_retry=None, retry=FAST)
    assert [dict(r) for r in job.result(timeout=60)] == [{"x": 1}]
    with pytest.raises(StrictModeError, match=f"get_job of job {job.job_id} names no location"):
        client.get_job(job.job_id, project=PROJECT)
    with pytest.raises(StrictModeError, match=f"cancel_job of job {job.job_id} names no location"):
        client.cancel_job(job.job_id, project=PROJECT)
    with pytest.raises(StrictModeError, match="_get_query_results of job"):
        client._get_query_results(job.job_id, FAST, project=PROJECT)
    assert client.get_job(job.job_id, project=PROJECT, location="US").state == "DONE"
    assert client.get_job(job).state == "DONE"  # a job object carries its location
    assert client.unwrapped.get_job(job.job_id, project=PROJECT).state == "DONE"  # the emulator never asks


@pytest.mark.integration
def test_a_reused_query_job_id_is_a_409_like_bigquerys(strict_bigquery):
    job_id = f"strict-query-{uid('q')}"
    assert _query(strict_bigquery, "SELECT 1 AS x", job_id=job_id) == [{"x": 1}]
    with pytest.raises(Conflict) as refused:
        strict_bigquery.query("SELECT 2 AS x", job_id=job_id, job_retry=None)
    assert refused.value.code == 409
    assert refused.value.message == f"Already Exists: Job {strict_bigquery.project}:US.{job_id}"
    # The same id in another location is another job; the emulator itself takes the reused id.
    assert _query(strict_bigquery, "SELECT 3 AS x", job_id=job_id, location="EU") == [{"x": 3}]
    assert _query(strict_bigquery.unwrapped, "SELECT 4 AS x", job_id=job_id) == [{"x": 4}]


@pytest.mark.integration
def test_a_reused_load_job_id_is_a_409_and_the_first_job_is_found_by_its_id(bq_client, dataset):
    table = f"{PROJECT}.{dataset}.dead_letters"
    row = {"payload": "eA==", "reason": "x", "stage": "t", "event_id": "e", "ingest_time": T0.isoformat(),
           "schema_version": "1"}  # fmt: skip
    config = bigquery.LoadJobConfig(source_format="NEWLINE_DELIMITED_JSON", write_disposition="WRITE_APPEND")

    def load(job_id: str):  # as pipeline/bigquery_load.py loads (bqemulator refuses load_table_from_json's upload)
        return bq_client.load_table_from_file(io.BytesIO(orjson.dumps(row) + b"\n"), table, job_id=job_id,
                                              job_config=config)  # fmt: skip

    job_id = f"strict-load-{uid('l')}"
    load(job_id).result(timeout=60)
    # bqemulator files the load under an id of its own; jobs.get of the given id finds the job, as on BigQuery.
    assert bq_client.get_job(job_id).job_type == "load"
    with pytest.raises(Conflict, match=f"Already Exists: Job {PROJECT}:US.{job_id}"):
        load(job_id)
    load(f"{job_id}-2").result(timeout=60)  # a fresh id loads


def test_an_insert_that_failed_leaves_its_id_free(tmp_path, monkeypatch):
    """An insert that never got an answer (here: nothing listens) made no job as far as the caller can know, and
    BigQuery takes a retry of the id if it made none: strict mode frees the id rather than answer the retry 409."""
    import socket

    monkeypatch.setenv(strict.JOBS_ENV, str(tmp_path))
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    client = strict.wrap(bigquery_client(PROJECT, dead, location="US"))
    for _ in range(2):  # the second try is refused by the network again, not by strict mode's 409
        with pytest.raises(Exception) as failed:
            client.query("SELECT 1", job_id="strict-unanswered", retry=Retry(deadline=0.5), job_retry=None)
        assert not isinstance(failed.value, Conflict), failed.value
    assert strict.JobRegistry.from_environment().claim(strict.endpoint_of(client), PROJECT, "US", "strict-unanswered")


@pytest.mark.integration
def test_a_job_id_used_in_one_process_is_a_409_in_another(bigquery_emulator, strict_bigquery):
    """The pipeline and the CLI run in processes of their own: the used ids are shared through the registry."""
    job_id = f"strict-cross-{uid('x')}"
    _query(strict_bigquery, "SELECT 1", job_id=job_id)
    child = textwrap.dedent(f"""
        from google.api_core.exceptions import Conflict
        from endpoints.bigquery import bigquery_client
        client = bigquery_client({strict_bigquery.project!r}, {bigquery_emulator.host_port!r}, "US")
        try:
            client.query("SELECT 1", job_id={job_id!r}, job_retry=None).result(timeout=60)
        except Conflict as exc:
            print("409", exc.message)
        """)
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"409 Already Exists: Job {strict_bigquery.project}:US.{job_id}"


def test_a_fresh_emulator_frees_the_job_ids_used_at_its_address(tmp_path, monkeypatch):
    """bqemulator without --persistent starts with no jobs; one with it keeps them, and so do their ids."""
    from workbench.localstack.bigquery_main import forget_strict_job_ids

    monkeypatch.setenv(strict.JOBS_ENV, str(tmp_path))
    registry = strict.JobRegistry.from_environment()
    endpoint, argv = "http://127.0.0.1:9999", ["start", "--rest-host", "127.0.0.1", "--rest-port", "9999"]
    assert registry.claim(endpoint, "p", "US", "job-1")
    forget_strict_job_ids([*argv, "--persistent", "--data-dir", str(tmp_path / "data")])
    assert not registry.claim(endpoint, "p", "US", "job-1")
    forget_strict_job_ids(argv)
    assert registry.claim(endpoint, "p", "US", "job-1")
