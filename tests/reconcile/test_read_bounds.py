"""How far reconcile reads each source on BigQuery, and what it checks before the first query.

- The event tables are read within the run's event times (from its manifest, late events included) +- a day: the
  partition filter that user_activity's require_partition_filter demands, checked here on the SQL with sqlglot
  and on the BigQuery emulator (an old event inside the slack is found, one outside is reported missing).
- The GCS tree: only files written since the run began, their folders as few external-table URIs.
- --wait polls a minute apart when it queries real BigQuery; --dry-run prints the bytes per statement.
- The scratch dataset and the bucket must be where the events dataset is (bucket_colocated: the documented rule).
- The manifest arrives in one load job, however many CSVs the run wrote.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
import sqlglot
from sqlglot import exp

from endpoints import Endpoints
from eventmodel.canonical import canonical_digest
from eventmodel.rows import event_row
from eventmodel.schema import EVENT_TIME_FIELD
from eventmodel.validate import validate
from publisher.manifest import EVENT_COLUMNS, write_manifest
from reconcile import bounds as B
from reconcile import locations as L
from reconcile import queries as Q
from reconcile import run as R
from reconcile.engine import BigQueryEngine, concatenate_csvs, external_lines, rate_limited, retry_rate_limited
from reconcile.errors import ReconcileError

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ the SQL itself


def partition_conjuncts(sql: str, column: str) -> list[exp.Expression]:
    """The top-level AND terms of the statement's WHERE that bound `column` by constants (what prunes)."""
    where = sqlglot.parse_one(sql, read="bigquery").find(exp.Where)
    assert where is not None
    terms = list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]
    found = []
    for term in terms:
        term = term.unnest()
        if isinstance(term, exp.Between) and isinstance(term.this, exp.Column) and term.this.name == column:
            constant = all(not list(side.find_all(exp.Column)) for side in (term.args["low"], term.args["high"]))
            if constant:
                found.append(term)
    return found


@pytest.mark.parametrize("event_type", sorted(EVENT_TIME_FIELD))
def test_every_event_table_read_is_bounded_by_its_partition_column(event_type):
    scope = R._scope("r-1", (T0, T0 + timedelta(minutes=5)), ["r-1"])
    sql = Q.bigquery_select(event_type, "`p.events.t`", scope, (T0 - timedelta(days=3), T0 + timedelta(days=1)))
    [bound] = partition_conjuncts(sql, EVENT_TIME_FIELD[event_type])
    assert "2026-11-28 12:00:00.000000+00:00" in bound.sql("bigquery")


def test_the_dead_letter_read_is_bounded_by_its_partition_column():
    sql = Q.dead_letter_table_select("`p.events.dead_letters`", "run_id = 'r'", T0)
    where = sqlglot.parse_one(sql, read="bigquery").find(exp.Where)
    assert any(isinstance(t, exp.GTE) and t.this.name == "ingest_time" for t in where.this.flatten())


def test_the_external_lines_keep_to_the_runs_folders():
    sql = external_lines("lines", ["gs://b/out/order/2026/12/01/12/00/", "gs://b/out/order/2026/12/01/12/01/"])
    where = sqlglot.parse_one(f"SELECT * FROM {sql}", read="bigquery").find(exp.Where)
    assert where.sql("bigquery").count("STARTS_WITH(_FILE_NAME, 'gs://b/out/order/2026/12/01/12/0") == 2


# ------------------------------------------------------------------------------------------ pure bounds


def test_bounds_come_from_the_manifests_event_times_not_the_publish_window():
    late = (T0 - timedelta(days=4), T0 + timedelta(minutes=3))  # a late event four days old
    window = (T0, T0 + timedelta(minutes=5))
    bounds = B.read_bounds(late, [window])
    assert bounds.event_times == (late[0] - B.EVENT_TIME_SLACK, window[1] + B.EVENT_TIME_SLACK)
    assert bounds.ingested_since == T0 - B.EVENT_TIME_SLACK and bounds.files_since == T0 - B.FILE_SLACK
    replayed = B.read_bounds(late, [window, (T0 - timedelta(days=9), T0 - timedelta(days=9))])
    assert replayed.files_since == T0 - timedelta(days=9) - B.FILE_SLACK  # the earlier run's copies are read too
    assert B.read_bounds(None, [window]).event_times == (T0 - B.EVENT_TIME_SLACK, window[1] + B.EVENT_TIME_SLACK)


def test_manifest_event_times_skip_dead_letters_and_failed_sends(tmp_path):
    rows = [
        {"event_id": "a", "expected": "order", "event_time": "2026-12-01T12:00:00.000Z", "outcome": "published"},
        {"event_id": "b", "expected": "order", "event_time": "2026-11-20T08:00:00.000Z", "outcome": "published"},
        {"event_id": "c", "expected": "dead_letter", "event_time": "1999-01-01T00:00:00Z", "outcome": "published"},
        {"event_id": "d", "expected": "order", "event_time": "2030-01-01T00:00:00Z", "outcome": "failed"},
        {"event_id": "e", "expected": "order", "event_time": "", "outcome": "published"},
    ]
    write_csv(tmp_path / "events-0.csv", rows[:3])
    write_csv(tmp_path / "events-1.csv", rows[3:])
    low, high = B.manifest_event_times([tmp_path / "events-0.csv", tmp_path / "events-1.csv"])
    assert (low, high) == (datetime(2026, 11, 20, 8, tzinfo=UTC), datetime(2026, 12, 1, 12, tzinfo=UTC))
    assert B.manifest_event_times([tmp_path / "events-1.csv"]) is None


def test_only_files_written_since_the_run_began_are_read():
    old, new, unknown = (SimpleNamespace(updated=t) for t in (T0 - timedelta(hours=1), T0, None))
    assert B.files_written_since([old, new, unknown], T0 - B.FILE_SLACK) == [new, unknown]


def test_folder_prefixes_are_the_minute_folders_coarsened_to_the_limit():
    root = "gs://b/out/order"
    minutes = [f"{root}/2026/12/01/{h:02d}/{m:02d}/order_x.json" for h in (10, 11) for m in range(3)]
    assert B.folder_prefixes(minutes, root, limit=10) == sorted({u.rsplit("/", 1)[0] + "/" for u in minutes})
    assert B.folder_prefixes(minutes, root, limit=2) == [f"{root}/2026/12/01/10/", f"{root}/2026/12/01/11/"]
    assert B.folder_prefixes(minutes, root, limit=1) == [f"{root}/2026/12/01/"]
    stray = [*minutes, f"{root}/order_loose.json"]  # a file in the type folder itself: the whole folder
    assert B.folder_prefixes(stray, root, limit=10) == [f"{root}/"]
    assert B.folder_prefixes([], root) == []


@pytest.mark.parametrize(
    ("dataset", "bucket", "kind", "regions", "colocated"),
    [
        ("us-central1", "US-CENTRAL1", "region", (), True),
        ("europe-central2", "EUROPE-CENTRAL2", "region", (), True),
        ("europe-central2", "EUROPE-WEST4", "region", (), False),
        ("US", "US-CENTRAL1", "region", (), True),  # the US multi-region's home region
        ("US", "US-WEST1", "region", (), False),  # inside the multi-region, yet billed for transfer
        ("US", "NAM4", "dual-region", (), True),
        ("US", "US", "dual-region", ("US-CENTRAL1", "US-EAST4"), True),  # a configurable dual-region
        ("US", "US", "dual-region", ("US-EAST1", "US-WEST1"), False),
        ("US", "US", "multi-region", (), False),  # "must be in a dual-region that includes Iowa"
        ("EU", "EUROPE-WEST4", "region", (), True),
        ("EU", "EUR4", "dual-region", (), True),
        ("EU", "EU", "multi-region", (), False),
        ("asia-northeast1", "ASIA1", "dual-region", (), True),
        ("asia-northeast1", "ASIA", "multi-region", (), False),
        ("us-central1", "US", "multi-region", (), False),
    ],
)
def test_bucket_colocation_follows_the_documented_rule(dataset, bucket, kind, regions, colocated):
    assert L.bucket_colocated(dataset, bucket, kind, regions) is colocated


def test_wait_polls_a_minute_apart_on_real_bigquery_and_at_once_locally():
    emulator = Endpoints(bigquery="http://127.0.0.1:1")
    assert R.ReconcileTarget(endpoints=emulator).poll_interval() == R.POLL_INTERVAL_S == 2.0
    assert R.ReconcileTarget().poll_interval() == R.BIGQUERY_POLL_INTERVAL_S == 60.0
    duckdb_on_bigquery = R.ReconcileTarget(engine="duckdb")
    assert duckdb_on_bigquery.poll_interval() == 60.0  # its SELECTs still go to BigQuery
    assert R.ReconcileTarget(dataset=None, engine="duckdb").poll_interval() == 2.0


def test_csvs_concatenate_into_one_headerless_body_in_column_order(tmp_path):
    write_csv(tmp_path / "a.csv", [{"event_id": "a1", "expected": "order"}, {"event_id": "a2", "expected": "x"}])
    shuffled = list(reversed(EVENT_COLUMNS))
    with (tmp_path / "b.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, shuffled)
        writer.writeheader()
        writer.writerow({"event_id": "b1", "expected": "line\nbreak"})
    (tmp_path / "c.csv").write_text(",".join(EVENT_COLUMNS) + "\r\n")  # a worker that sent nothing
    body = io.BytesIO()
    concatenate_csvs([tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"], body)
    rows = list(csv.reader(io.StringIO(body.getvalue().decode())))
    assert [r[0] for r in rows] == ["a1", "a2", "b1"] and rows[2][1] == "line\nbreak"
    assert all(len(r) == len(EVENT_COLUMNS) for r in rows)


def test_a_rate_error_is_retried_and_a_quota_error_is_not():
    from google.api_core.exceptions import Forbidden

    calls, slept = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise Forbidden("Exceeded rate limits", errors=[{"reason": "rateLimitExceeded"}])
        return "loaded"

    assert retry_rate_limited(flaky, sleep=slept.append) == "loaded" and slept == [1.0, 2.0]
    quota = Forbidden("Quota exceeded", errors=[{"reason": "quotaExceeded"}])
    assert rate_limited(Forbidden("x", errors=[{"reason": "rateLimitExceeded"}])) and not rate_limited(quota)

    def over_quota():
        raise quota

    with pytest.raises(Forbidden):
        retry_rate_limited(over_quota, sleep=slept.append)
    assert slept == [1.0, 2.0]


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, EVENT_COLUMNS)
        writer.writeheader()
        writer.writerows({c: r.get(c, "") for c in EVENT_COLUMNS} for r in rows)


# -------------------------------------------------------------------------------- on the BigQuery emulator

PROJECT = "reconcile-bounds"
RUN = "20261201-120000-bnds"


def user_activity_events(count: int) -> list[dict]:
    from generator.stream import EventStream, GeneratorConfig

    stream = EventStream(GeneratorConfig(seed=7), run_id=RUN)
    found = [orjson.loads(m.data) for m in stream.take(200) if m.expected == "user_activity" and not m.duplicate]
    return found[:count]


@pytest.fixture(scope="module")
def bounded_run(bigquery_emulator, tmp_path_factory):
    """A run of three user_activity events in WORKBENCH_HOME and in the emulator's events.user_activity. 'late' is
    a late event the manifest records as 5 days old, held at that time: the earliest event time of the run.
    'inside' is held 20 h before that (within the day of slack), 'outside' 30 h before (past it); the manifest
    records both at T0."""
    from ddl.apply import apply_ddl

    home = tmp_path_factory.mktemp("home")
    earliest = T0 - timedelta(days=5)
    held = {"inside": earliest - timedelta(hours=20), "outside": earliest - timedelta(hours=30), "late": earliest}
    recorded = {"inside": T0, "outside": T0, "late": earliest}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WORKBENCH_HOME", str(home))
        apply_ddl(project=PROJECT, emulator=bigquery_emulator.host_port)
        manifest_rows, table_rows = [], []
        for (name, when), event in zip(held.items(), user_activity_events(3), strict=True):
            event = {**event, "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}
            accepted = validate(orjson.dumps(event))
            table_rows.append(event_row(accepted, message_id=f"m-{name}", publish_time=T0 + timedelta(seconds=1),
                                        attributes={"event_id": name, "run_id": RUN}, ingest_time=T0))  # fmt: skip
            manifest_rows.append({"event_id": name, "expected": "user_activity", "event_type": "user_activity",
                                  "event_time": recorded[name].isoformat().replace("+00:00", "Z"),
                                  "outcome": "published", "message_id": f"m-{name}", "payload_digest": "-",
                                  "canonical_digest": canonical_digest("user_activity", accepted.event)})  # fmt: skip
        write_manifest(RUN, {"run_id": RUN, "manifest_version": 3, "status": "completed",
                             "started_at": T0.isoformat(), "finished_at": (T0 + timedelta(minutes=1)).isoformat(),
                             "target": {"kind": "pubsub"}, "totals": {"sent": 3, "published": 3}})  # fmt: skip
        write_csv(R.run_dir(RUN) / "events-0.csv", manifest_rows)
        client = bigquery_emulator.client()
        assert not client.insert_rows_json(f"{PROJECT}.events.user_activity", table_rows)
        yield SimpleNamespace(home=home, emulator=bigquery_emulator, client=client)


def bounds_target(run, **changes) -> R.ReconcileTarget:
    base = R.ReconcileTarget(output_root=None, project=PROJECT, dataset="events", read_dead_letter_topic=False,
                             endpoints=Endpoints(bigquery=run.emulator.endpoint))  # fmt: skip
    return R.replace(base, **changes)


@pytest.mark.integration
@pytest.mark.parametrize("engine", ["duckdb", "bigquery"])
def test_an_old_event_within_the_slack_is_found_and_one_outside_is_reported(bounded_run, monkeypatch, engine):
    monkeypatch.setenv("WORKBENCH_HOME", str(bounded_run.home))
    report = R.reconcile(RUN, bounds_target(bounded_run, engine=engine))
    # BigQuery is the only sink read here, so the row it does not read is missing from every sink
    assert {p["event_id"]: p["problem"] for p in report.problems} == {"outside": "missing"}
    assert report.sizes["bigquery"] == 2  # inside and late: the late one because its time is the manifest's
    low = (T0 - timedelta(days=5) - B.EVENT_TIME_SLACK).strftime("%Y-%m-%d %H:%M")
    assert any(f"event times {low} .. " in n and "shows as missing from BigQuery" in n for n in report.notes)


@pytest.mark.integration
def test_dry_run_prints_the_bytes_per_statement_and_compares_nothing(bounded_run):
    env = {**os.environ, "WORKBENCH_HOME": str(bounded_run.home), "NO_GCE_CHECK": "true", "COLUMNS": "200",
           "BIGQUERY_EMULATOR_HOST": bounded_run.emulator.endpoint}  # fmt: skip
    env.pop("PUBSUB_EMULATOR_HOST", None)
    cli = [sys.executable, "-m", "workbench.cli", "reconcile", RUN, "--project", PROJECT, "--no-gcs", "--dry-run"]
    for engine in ("bigquery", "duckdb"):
        done = subprocess.run([*cli, "--engine", engine], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        for table in ("orders", "inventory", "user_activity", "dead_letters"):
            assert f"read events.{table}" in done.stdout
        assert "total" in done.stdout and "nothing compared" in done.stderr  # bqemulator answers 0 bytes
    scratch = bounded_run.client.query(
        f"SELECT table_name FROM `{PROJECT}.events_reconcile.INFORMATION_SCHEMA.TABLES`", location="US"
    )
    assert not list(scratch.result())  # a dry run wrote nothing
    refused = subprocess.run([*cli, "--wait", "30"], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--dry-run compares nothing" in refused.stderr
    nothing = subprocess.run([*cli, "--engine", "duckdb", "--no-bigquery"], env=env, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert nothing.returncode == 2 and "reads nothing from BigQuery" in nothing.stderr


@pytest.mark.integration
def test_a_scratch_dataset_in_another_location_is_refused_before_any_query(bounded_run):
    from google.cloud import bigquery

    scratch = bigquery.Dataset(f"{PROJECT}.scratch_eu")
    scratch.location = "EU"
    bounded_run.client.create_dataset(scratch, exists_ok=True)
    target = bounds_target(bounded_run, engine="bigquery", scratch_dataset="scratch_eu")
    with pytest.raises(ReconcileError, match=r"scratch dataset reconcile-bounds.scratch_eu is in EU and the events "
                                             r"dataset reconcile-bounds.events in US"):  # fmt: skip
        target.make_engine()


@pytest.mark.integration
def test_the_bucket_location_is_read_through_the_gcs_client(gcs_emulator):
    storage = Endpoints(storage=os.environ["STORAGE_EMULATOR_HOST"])
    target = R.ReconcileTarget(output_root=f"{gcs_emulator}/out", endpoints=storage)
    location, kind, _ = L.bucket_location(target, gcs_emulator.split("://", 1)[1])
    assert location and kind  # what the emulator answers for a bucket made without one
    with pytest.raises(ReconcileError, match="cannot read the location of the bucket gs://no-such-bucket"):
        L.bucket_location(target, "no-such-bucket")


@pytest.mark.integration
def test_many_csvs_arrive_in_one_load_job(bigquery_emulator, tmp_path):
    csvs = []
    for worker in range(40):  # a many-worker load test: a job per CSV took the table past 5 updates per 10 s
        csvs.append(tmp_path / f"events-{worker}.csv")
        write_csv(csvs[-1], [{"event_id": f"w{worker}-{i}", "expected": "order", "outcome": "published"}
                             for i in range(25)])  # fmt: skip
    client = CountingLoads(bigquery_emulator.client())
    engine = BigQueryEngine(client, "reconcile-bounds-load", "scratch", location="US")
    try:
        engine.load_manifest(csvs)
        [row] = engine.run(f"SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS ids FROM {engine.tables['manifest']}")
    finally:
        engine.close()
    assert (row["n"], row["ids"]) == (1000, 1000)
    assert client.loads == ["US"]  # one job, and it names its location


class CountingLoads:
    """The emulator's client, counting the load jobs sent through it (and the location each names)."""

    def __init__(self, client) -> None:
        self._client = client
        self.loads: list[str | None] = []

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def load_table_from_file(self, *args, **kwargs):
        self.loads.append(kwargs.get("location"))
        return self._client.load_table_from_file(*args, **kwargs)
