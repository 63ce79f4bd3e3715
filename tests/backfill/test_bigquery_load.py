"""The backfill's load jobs (pipeline.bigquery_load) against the real BigQuery emulator: which rows share a job
(one table, one month, about SHARD_ROWS rows), what each kind of failure does (a bad row is split out; a quota
error is waited out, never split; a missing table is a dead letter at once), and job ids that repeat within a
backfill but never across two. Quota errors come from tests/backfill/bigquery_faults.py, a proxy in front of the
emulator that answers as BigQuery does, since bqemulator has no quotas."""

from __future__ import annotations

import pickle
import time
from collections import Counter
from datetime import UTC, datetime

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that

from backfill.bigquery_faults import ERRORS, BigQueryFaults
from endpoints import bigquery_strict
from endpoints.bigquery import bigquery_client
from eventmodel import history, rows
from eventmodel import reasons as R
from eventmodel.validate import Accepted, validate
from generator.stream import DEAD_LETTER, EventStream, GeneratorConfig
from pipeline import core
from pipeline.bigquery import InsertRowsFn, RowEntry, RowSource
from pipeline.bigquery_load import GroupForLoad, LoadRowsFn, dataset_location, job_id, partition_day, plan_month
from pipeline.runners import local_runner

PROJECT = "backfill-load"
HISTORY = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC))  # events over two months


def valid_events(n: int, seed: int = 3) -> list[Accepted]:
    stream = EventStream(GeneratorConfig(seed=seed, history=HISTORY), run_id="load")
    found = [validate(m.data) for m in stream.take(n * 3) if m.expected != DEAD_LETTER]
    return [v for v in found if isinstance(v, Accepted)][:n]


def entry(accepted: Accepted) -> RowEntry:
    event_id = history.history_event_id(accepted.event_type, accepted.event)
    attributes = {"event_id": event_id, "run_id": "load"}
    row = rows.event_row(accepted, message_id=None, publish_time=None, attributes=attributes)
    event = core.ValidEvent(accepted.event_type, accepted.event, accepted.event_time, event_id, None, None,
                            attributes, orjson.dumps(accepted.event))  # fmt: skip
    return RowEntry(row, event_id, RowSource(event))


def inventory_entries(n: int, seed: int) -> list[RowEntry]:
    found = [entry(e) for e in valid_events(n * 8, seed=seed) if e.event_type == "inventory"][:n]
    assert len(found) == n
    return found


@pytest.fixture(scope="module")
def bigquery(bigquery_emulator):
    from ddl.apply import apply_ddl

    apply_ddl(project=PROJECT, emulator=bigquery_emulator.host_port)
    return bigquery_emulator


def count(bigquery, table: str, where: str = "TRUE") -> int:
    assert table != "user_activity", "a read of user_activity must name its partitioning column"
    sql = f"SELECT COUNT(*) AS n FROM `{PROJECT}.events.{table}` WHERE {where}"
    return next(iter(bigquery.client().query(sql).result()))["n"]


def ids_in(entries: list[RowEntry]) -> str:
    return "event_id IN (" + ", ".join(f"'{e.insert_id}'" for e in entries) + ")"


def load(endpoint: str, entries: list[RowEntry], *, table: str = "inventory", retry_seconds: float = 0,
         run_id: str = "load-test", launch: str | None = None) -> tuple[list[core.DeadLetter], float]:  # fmt: skip
    """One load group through LoadRowsFn as a worker runs it: setup, process, teardown. -> (dead letters, s).

    Its client is the pipeline's, strict (endpoints.bigquery_strict) and with no location of its own: a job call
    that names no location is refused, and so is a job id used before (409, as BigQuery answers)."""
    client = bigquery_strict.wrap(bigquery_client(PROJECT, endpoint))
    fn = LoadRowsFn(PROJECT, "events", endpoint, retry_seconds, run_id, launch, client=client)
    fn.setup()
    started = time.monotonic()
    try:
        out = [o.value for o in fn.process(((f"{PROJECT}.events.{table}", "2025-03", 0), entries))]
    finally:
        fn.teardown()
        client.close()
    return out, time.monotonic() - started


# ------------------------------------------------------------------------------------------ which rows share a job


def test_plan_month_packs_consecutive_days_and_splits_a_day_larger_than_a_job():
    plan = plan_month([("2025-03-03", 3), ("2025-03-01", 2), ("2025-03-02", 2), ("2025-03-04", 9), ("2025-03-05", 1)],
                      target=4)  # fmt: skip
    assert plan == {
        "2025-03-01": (0, 1),  # 2 rows
        "2025-03-02": (0, 1),  # 4: full
        "2025-03-03": (1, 1),  # 3
        "2025-03-04": (2, 3),  # 9 rows: three groups of their own (2, 3, 4)
        "2025-03-05": (5, 1),
    }
    assert plan_month([], target=4) == {}
    assert plan_month([("2025-03-01", 4)], target=4) == {"2025-03-01": (0, 1)}


def test_plan_month_never_plans_more_rows_per_group_than_the_target_for_packed_days():
    import random

    rng = random.Random(7)
    for _ in range(200):
        days = [(f"2025-01-{d:02d}", rng.choice([0, 1, 5, 40, 120, 400])) for d in range(1, 32)]
        plan = plan_month([d for d in days if d[1]], target=100)
        filled = Counter()
        for day, n in days:
            if n and plan[day][1] == 1:
                filled[plan[day][0]] += n
        assert all(v <= 100 for v in filled.values())
        groups = sorted({g for first, spread in plan.values() for g in range(first, first + spread)})
        assert groups == list(range(len(groups))), "groups are numbered 0.. without gaps"
        for day, n in days:
            if n > 100:
                first, spread = plan[day]
                assert spread == -(-n // 100)
                assert not any(first <= g < first + spread for g in filled), "a split day's groups are its own"


def test_load_groups_hold_one_table_and_one_month_and_their_number_follows_the_rows():
    events = valid_events(90, seed=31)
    built = [(f"p.d.{rows.table_of(e.event_type)}", entry(e)) for e in events]
    target = 6

    def check(groups):
        seen = Counter()
        for (table, month, _), entries in groups:
            assert {partition_day(table, e.row)[:7] for e in entries} == {month}, "a job writes one month"
            seen[(table, month)] += 1
            assert len(entries) <= 3 * target
        per_month = Counter((t, partition_day(t, e.row)[:7]) for t, e in built)
        assert sum(len(e) for _, e in groups) == len(built), "every row in exactly one group"
        for key, n in per_month.items():
            assert seen[key] >= -(-n // target), f"{key}: {n} rows in {seen[key]} groups"
        assert len({m for _, m in per_month}) == 2, "the history spans two months"

    with BeamTestPipeline(runner=local_runner()) as pipeline:
        groups = pipeline | beam.Create(built) | GroupForLoad(target) | beam.MapTuple(lambda k, v: (k, list(v)))
        assert_that(groups, check)


# ------------------------------------------------------------------------------------------ outcomes of a load


def test_a_load_refused_for_one_row_loads_the_others_and_dead_letters_that_one(bigquery):
    entries = inventory_entries(9, seed=8)
    bad_row, bad_id, bad_source = entries[4]
    entries[4] = entries[4]._replace(row={**bad_row, "event_type": None})  # the live table requires it
    letters, _ = load(bigquery.endpoint, entries)
    assert count(bigquery, "inventory", ids_in(entries)) == len(entries) - 1
    assert [(d.reason, d.stage, d.event_id, d.data) for d in letters] == [
        (R.BIGQUERY_INSERT_FAILED, core.STAGE_BIGQUERY, bad_id, bad_source.data)
    ]
    assert "NOT NULL" in letters[0].detail or "event_type" in letters[0].detail


@pytest.mark.parametrize("where", ["job", "request"])
def test_a_quota_error_is_waited_out_and_the_rows_load_in_one_job_unsplit(bigquery, where):
    """quotaExceeded on the job (a table's daily partition limit) or rateLimitExceeded on jobs.insert: 403s both,
    yet the rows are fine. They are loaded whole after a back-off, not split into a cascade of failing jobs."""
    entries = inventory_entries(9, seed=40 + len(where))
    began = datetime.now(UTC)
    with BigQueryFaults(bigquery.host_port, failures=2, where=where) as faults:
        letters, elapsed = load(faults.endpoint, entries, retry_seconds=60)
    assert letters == []
    assert count(bigquery, "inventory", ids_in(entries)) == 9
    # ingest_time is the time of the job that landed the rows (after 1 s + 2 s of back-off), not when they were built.
    sql = f"SELECT MIN(ingest_time) AS t FROM `{PROJECT}.events.inventory` WHERE {ids_in(entries)}"
    landed = next(iter(bigquery.client().query(sql).result()))["t"]
    assert (landed - began).total_seconds() >= 0.75 * 3, (landed, began)
    # Three uploads of all 9 rows (never halves); a refused jobs.insert is answered before its rows are sent.
    assert [u["rows"] for u in faults.uploads] == ([9, 9, 9] if where == "job" else [0, 0, 9])
    assert elapsed >= 0.75 * 3, "backed off 1 s then 2 s (the throttled schedule)"
    assert len({u["job_id"] for u in faults.uploads}) == 3, "a failed job, or a refused insert, used its id"


def test_a_quota_that_does_not_lift_dead_letters_the_rows_saying_so_without_splitting(bigquery):
    entries = inventory_entries(9, seed=50)
    with BigQueryFaults(bigquery.host_port, failures=1000, where="job") as faults:
        letters, elapsed = load(faults.endpoint, entries, retry_seconds=3)
    assert sorted(d.event_id for d in letters) == sorted(e.insert_id for e in entries)
    assert all(d.reason == R.BIGQUERY_INSERT_FAILED and "quota" in d.detail.lower() for d in letters)
    assert all(u["rows"] == 9 for u in faults.uploads) and 2 <= len(faults.uploads) <= 5, faults.uploads
    assert elapsed < 15
    assert count(bigquery, "inventory", ids_in(entries)) == 0


@pytest.mark.parametrize(("where", "reason"), [("request", "notFound"), ("job", "accessDenied")])
def test_a_fatal_error_dead_letters_the_rows_at_once_unsplit_and_unretried(bigquery, where, reason):
    """No such table, no permission: only a person can fix it, so the rows go to the dead letter (bytes kept for
    a re-drive) at once, not after the whole retry budget, and not one by one after a split."""
    entries = inventory_entries(4, seed=60 + len(where))
    with BigQueryFaults(bigquery.host_port, failures=1000, where=where, reason=reason) as faults:
        letters, elapsed = load(faults.endpoint, entries, retry_seconds=60)
    assert sorted(d.event_id for d in letters) == sorted(e.insert_id for e in entries)
    assert len(faults.uploads) == 1 and elapsed < 20, (faults.uploads, elapsed)
    cause = ERRORS[reason][1][:30]
    assert all("refused until someone acts" in d.detail and cause in d.detail for d in letters), letters[0].detail


def test_a_row_neither_sink_can_write_is_the_same_dead_letter_from_inserts_and_from_load_jobs(bigquery):
    """BIGQUERY_INSERT_FAILED is built once (pipeline.bigquery.insert_failed_letter): a backfilled event, which has
    no Pub/Sub message id, gives the same letter through streaming inserts as through a load job, with "" as its
    source message id, so that its topic copy's attributes are all text, as Pub/Sub takes them."""
    entries = inventory_entries(2, seed=70)
    table = "no_such_table"  # bqemulator refuses its rows (as invalid, where BigQuery answers notFound)
    loaded, _ = load(bigquery.endpoint, entries, table=table)
    fn = InsertRowsFn(PROJECT, bigquery.endpoint, retry_seconds=0)
    fn.setup()
    try:
        inserted = [o.value for o in fn._insert(f"{PROJECT}.events.{table}", entries)]
    finally:
        fn.teardown()
    ids = sorted(e.insert_id for e in entries)
    for letters in (loaded, inserted):
        assert sorted(d.event_id for d in letters) == ids
        assert {(d.reason, d.stage, d.source_message_id) for d in letters} == {
            (R.BIGQUERY_INSERT_FAILED, core.STAGE_BIGQUERY, "")
        }
        for letter in letters:
            assert all(isinstance(v, str) for v in core.dead_letter_attributes(letter).values()), letter

    def same(letters):
        return sorted((d._replace(detail="") for d in letters), key=lambda d: d.event_id)

    assert same(loaded) == same(inserted), "the two sinks' letters differ only in what they say went wrong"


# ------------------------------------------------------------------------------------------ job ids and location


def test_job_ids_repeat_within_a_run_and_differ_across_runs():
    run = "backfill-20250101-000000\0launch-a"
    assert job_id(run, "p.d.t", ["a", "b"], 0) == job_id(run, "p.d.t", ["a", "b"], 0)
    assert len({job_id(run, "p.d.t", ["a", "b"], 0), job_id(run, "p.d.t", ["a", "c"], 0),
                job_id(run, "p.d.u", ["a", "b"], 0), job_id(run, "p.d.t", ["a", "b"], 1),
                job_id("backfill-20250101-000000\0launch-b", "p.d.t", ["a", "b"], 0)}) == 5  # fmt: skip
    name = job_id(run, "p.d.t", ["x"], 0)
    assert all(c.isalnum() or c in "_-" for c in name) and len(name) <= 1024


def test_a_pickled_load_step_keeps_its_launch_so_a_retried_bundle_submits_the_same_jobs():
    """Beam ships the DoFn pickled to every worker: the nonce drawn when the graph was built travels with it."""
    fn = LoadRowsFn(PROJECT, "events", None, 0, "backfill-x")
    again = pickle.loads(pickle.dumps(fn))
    assert again.launch == fn.launch and again.run_id == "backfill-x"
    assert LoadRowsFn(PROJECT, "events", None, 0, "backfill-x").launch != fn.launch


def test_a_second_backfill_loads_again_rows_deleted_after_the_first(bigquery):
    """After an erasure or the undo run-book deleted a backfill's rows, a rerun of the same history (even under
    the same --backfill_run_id) must load them again, not meet the first run's jobs (409) and load nothing."""
    entries = inventory_entries(6, seed=70)
    letters, _ = load(bigquery.endpoint, entries, run_id="same-run")
    assert letters == [] and count(bigquery, "inventory", ids_in(entries)) == 6
    bigquery.client().query(f"DELETE FROM `{PROJECT}.events.inventory` WHERE {ids_in(entries)}").result()
    assert count(bigquery, "inventory", ids_in(entries)) == 0
    letters, _ = load(bigquery.endpoint, entries, run_id="same-run")
    assert letters == [] and count(bigquery, "inventory", ids_in(entries)) == 6


def test_a_retried_bundle_meets_its_own_jobs_and_loads_nothing_twice(bigquery):
    """Beam retries a bundle whose worker died after its jobs ran: the same group gives the same job ids, BigQuery
    answers 409, and the job found by jobs.get (in the dataset's location) stands for the rows."""
    entries = inventory_entries(5, seed=90)
    client = bigquery_strict.wrap(bigquery_client(PROJECT, bigquery.endpoint))
    fn = LoadRowsFn(PROJECT, "events", bigquery.endpoint, 0, "retried-run", client=client)
    fn.setup()
    element = ((f"{PROJECT}.events.inventory", "2025-03", 0), entries)
    try:
        assert list(fn.process(element)) == []
        assert list(fn.process(element)) == [], "the retry found the first attempt's job"
    finally:
        fn.teardown()
        client.close()
    assert count(bigquery, "inventory", ids_in(entries)) == 5


def test_jobs_name_the_datasets_location(bigquery):
    with BigQueryFaults(bigquery.host_port, failures=0) as faults:
        client_location = dataset_location(bigquery.client(), PROJECT, "events")
        letters, _ = load(faults.endpoint, inventory_entries(2, seed=80))
    assert letters == [] and client_location == "US"
    assert [u["location"] for u in faults.uploads] == ["US"]


def test_the_keys_read_back_from_bigquery_name_the_events_they_came_from(bigquery):
    """A row loaded from an event gives back, through key_select, the id its JSON gives: timestamps, structs."""
    from pipeline.history_dedup import ReadBigQueryKeysFn, key_select

    events = valid_events(30, seed=12)
    for event_type in ("order", "inventory", "user_activity"):
        mine = [entry(e) for e in events if e.event_type == event_type]
        letters, _ = load(bigquery.endpoint, mine, table=rows.table_of(event_type))
        assert letters == []
    reader = ReadBigQueryKeysFn(PROJECT, "events", bigquery.endpoint)
    reader.setup()
    found = set()
    for event in events:
        found |= {k for k, _ in reader.process((event.event_type, event.event_time.strftime("%Y-%m")))}
    reader.teardown()
    assert {history.history_event_id(e.event_type, e.event) for e in events} <= found
    assert "TIMESTAMP('2025-12-01') AND order_date < TIMESTAMP('2026-01-01')" in key_select("order", "t", "2025-12")
