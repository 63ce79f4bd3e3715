"""The batch BigQuery sink: LoadEventRows, rows into the event tables by load jobs (a backfill's way in).

Load jobs, not streaming inserts: free of the streaming insert charge, no streaming buffer (the rows can be
modified by DML at once), and atomic per job. Rows come from the event model's row builder, exactly as the
stream's, and are loaded as newline-delimited JSON with google-cloud-bigquery's `load_table_from_file` into the
existing table (CREATE_NEVER, WRITE_APPEND, no schema autodetection, no unknown values).

Which rows share a job: the event tables are partitioned by day of event time, and BigQuery counts a load job
against a column-partitioned table once per partition it writes: 30,000 partition modifications per table per
day, at most 4,000 partitions per job (https://cloud.google.com/bigquery/quotas#partitioned_tables; for these
tables that limit replaces the 1,500 table operations a day of an unpartitioned table,
https://cloud.google.com/bigquery/docs/optimize-load-jobs). So rows are grouped by table and event month, and a
month is cut into load groups by its rows per day (`plan_month`): consecutive days are packed into one group up
to SHARD_ROWS rows, and a day with more rows than that is split into as many groups as it needs (by a hash of
the event id), each writing that one partition. A job then writes at most one month's partitions, and a history
costs at most about (rows / SHARD_ROWS + days) partition modifications per table, whatever its length. The
number of groups follows the row count, and a group stays under LOAD_ROWS, the most one job holds in memory (a
larger one would be loaded in several jobs).

Retries never load a row twice within a backfill, and a new backfill never inherits an old one's jobs: a job's
id is a digest of the backfill run (its run id and a nonce drawn when the job graph is built), the table, the
rows and an attempt number. A bundle Beam retries submits the same id; BigQuery refuses it as a duplicate (409)
and the job that exists is looked up (in the dataset's location: jobs.get finds a regional job only there) and
its outcome stands. A later backfill of the same rows (after an erasure or the undo run-book deleted them) has
ids of its own and loads them again.

What a failure means is pipeline.bigquery_errors' call, on the job's error_result and errors:
- content (`invalid` ...): the job is split in halves until the row at fault stands alone, which becomes a
  BIGQUERY_INSERT_FAILED dead letter; the other rows load;
- throttled (`quotaExceeded`, `rateLimitExceeded`): never split (failed load jobs count against the same
  quotas); backed off from THROTTLED_INITIAL_S to THROTTLED_CAP_S within the sink's retry budget, then the rows
  are dead letters whose detail says quota;
- transient: retried with backoff within the budget;
- fatal (no such table, access denied, or a jobs.insert request itself refused as invalid, before any row was
  read): dead letters at once, since only a person can fix it.
A job that ended in failure has used its id, and so has a jobs.insert refused with a 4xx: the next try is the
next attempt number. A request that got no answer (or a 5xx) is tried again under the same id.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import logging
import math
import re
import uuid
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

import apache_beam as beam
import orjson
from apache_beam import pvalue

from endpoints.bigquery import bigquery_client
from eventmodel import rows
from eventmodel.schema import EVENT_TIME_FIELD
from pipeline import bigquery_errors as E
from pipeline import core
from pipeline import metrics as M
from pipeline.bigquery import REQUEST_TIMEOUT_S, BuildEventRowFn, RowEntry, insert_failed_letter
from pipeline.constants import DEAD_LETTER, DEFAULT_RETRY_SECONDS
from pipeline.retrying import RetryBudget

_LOG = logging.getLogger(__name__)

LOAD_ROWS = 50_000  # rows per load job at most (~50 MB of JSON, held in one worker's memory while it loads)
# Rows a load group aims at. A day split by hash gives groups of SHARD_ROWS +- a few hundred rows, so they stay
# under LOAD_ROWS and each group is one job.
SHARD_ROWS = 40_000
JOB_TIMEOUT_S = 600.0
JOB_ID_PREFIX = "workbench_load_"
RUN_LABEL = "workbench_backfill"  # the load jobs' label: the backfill run they belong to

_TIME_FIELD_OF_TABLE = {table: EVENT_TIME_FIELD[event_type] for event_type, table in rows.TABLES.items()}


def job_id(run: str, table: str, insert_ids: list[str], attempt: int) -> str:
    """The id of a load job of these rows into table in this backfill run: the same run and rows, the same id
    (BigQuery refuses it twice); another run, another id."""
    digest = hashlib.sha256(
        run.encode() + b"\0" + table.encode() + b"\0" + b"\0".join(i.encode() for i in insert_ids)
    ).hexdigest()
    return f"{JOB_ID_PREFIX}{digest[:48]}_{attempt}"


def run_label(run_id: str) -> str:
    """run_id as a BigQuery label value: lowercase letters, digits, _ and -, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "_", run_id.lower())[:63]


def partition_day(table: str, row: dict[str, Any]) -> str:
    """The day (YYYY-MM-DD, UTC) of the partition a row of `table` (project.dataset.table) goes to: its event
    time, which the row builder writes as RFC 3339 UTC text."""
    field = _TIME_FIELD_OF_TABLE.get(table.rsplit(".", 1)[-1])
    return str(row.get(field) or "")[:10] if field else ""


def plan_month(day_counts: Iterable[tuple[str, int]], target: int = SHARD_ROWS) -> dict[str, tuple[int, int]]:
    """Rows per day of one month -> for each day, (its first load group, how many groups its rows spread over).

    Consecutive days share a group while the group stays within `target` rows; a day with more rows than that
    gets ceil(rows / target) groups of its own. Groups are numbered from 0 within the month."""
    plan: dict[str, tuple[int, int]] = {}
    group, filled = 0, 0
    for day, count in sorted(day_counts):
        if count > target:
            if filled:
                group, filled = group + 1, 0
            spread = math.ceil(count / target)
            plan[day] = (group, spread)
            group += spread
            continue
        if filled and filled + count > target:
            group, filled = group + 1, 0
        plan[day] = (group, 1)
        filled += count
    return plan


def _by_table_day(element: tuple[str, RowEntry]) -> tuple[tuple[str, str], RowEntry]:
    table, entry = element
    return (table, partition_day(table, entry.row)), entry


def _by_table_month(element: tuple[tuple[str, str], int]) -> tuple[tuple[str, str], tuple[str, int]]:
    (table, day), count = element
    return (table, day[:7]), (day, count)


def _month_plans(element: tuple[tuple[str, str], Iterable[tuple[str, int]]], target: int) -> Iterator[tuple]:
    (table, _), day_counts = element
    for day, groups in plan_month(day_counts, target).items():
        yield (table, day), groups


def _load_group(element: tuple[tuple[str, str], RowEntry], plans: dict) -> tuple[tuple[str, str, int], RowEntry]:
    (table, day), entry = element
    first, spread = plans[(table, day)]
    return (table, day[:7], first + zlib.crc32(entry.insert_id.encode("utf-8")) % spread), entry


def dataset_location(client: Any, project: str, dataset: str) -> str | None:
    """Where the dataset lives (US, EU, europe-west1 ...). Every job call names it: jobs.get must be given the
    location of a job outside the US and EU multi-regions, or it answers 404
    (https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/get, query parameter `location`)."""
    return client.get_dataset(f"{project}.{dataset}").location


class _Failure(NamedTuple):
    kind: str  # pipeline.bigquery_errors: CONTENT, THROTTLED, TRANSIENT, FATAL
    detail: str
    spent: bool  # a job with this id ran and ended: the next try needs the next attempt number


class LoadRowsFn(beam.DoFn):
    """((table, month, group), [RowEntry]) -> the rows loaded; what cannot be -> dead letters.

    `run_id` names the backfill (the jobs' label and part of their ids); `launch` makes the ids of two runs
    differ even under the same run id (drawn here when not given, so fixed once the graph is built).
    `location` is the dataset's; None looks it up once per worker (datasets.get)."""

    def __init__(self, project: str, dataset: str, endpoint: str | None, retry_seconds: float, run_id: str,
                 launch: str | None = None, client: Any = None, location: str | None = None) -> None:  # fmt: skip
        self.project, self.dataset, self.endpoint, self.retry_seconds = project, dataset, endpoint, retry_seconds
        self.run_id, self.launch = run_id, launch or uuid.uuid4().hex
        self.client, self.location = client, location

    def setup(self) -> None:
        self._client = self.client if self.client is not None else bigquery_client(self.project, self.endpoint)
        self._location = self.location or dataset_location(self._client, self.project, self.dataset)
        self._run = f"{self.run_id}\0{self.launch}"
        self._jobs = M.counter(M.BIGQUERY_LOAD_JOBS)
        self._failed = M.counter(M.BIGQUERY_FAILED)
        self._retries = M.counter(M.BIGQUERY_RETRIES)
        self._written = M.CounterFamily(M.bigquery_rows)

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None and self.client is None:
            client.close()

    def process(self, element: tuple[tuple, Any]) -> Iterator[Any]:
        table = element[0][0]
        entries = sorted(element[1], key=lambda e: e.insert_id)  # the same rows in the same jobs on every attempt
        for start in range(0, len(entries), LOAD_ROWS):
            yield from self._load(table, entries[start : start + LOAD_ROWS])

    def _load(self, table: str, entries: list[RowEntry]) -> Iterator[Any]:
        from google.cloud import bigquery

        budget = RetryBudget(self.retry_seconds)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
            ignore_unknown_values=False,
            max_bad_records=0,
            labels={RUN_LABEL: run_label(self.run_id)},
        )
        ids = [entry.insert_id for entry in entries]
        attempt = 0
        while True:
            # ingest_time says when the rows were handed to BigQuery (this job), not when they were built: the
            # stream stamps each insertAll request the same way (pipeline.bigquery.RowInserter).
            now = rows.rfc3339(datetime.now(UTC))
            body = b"".join(orjson.dumps({**entry.row, rows.INGEST_TIME: now}) + b"\n" for entry in entries)
            name = job_id(self._run, table, ids, attempt)
            failure = self._run_job(table, name, body, config)
            if failure is None:
                self._written.inc(table.rsplit(".", 1)[-1], len(entries))
                return
            if failure.kind == E.CONTENT:
                if len(entries) == 1:
                    yield from self._dead(entries, f"{table}: load refused the row: {failure.detail}")
                    return
                middle = len(entries) // 2  # find the rows at fault; the others load
                yield from self._load(table, entries[:middle])
                yield from self._load(table, entries[middle:])
                return
            if failure.kind == E.FATAL:
                yield from self._dead(entries, f"{table}: {failure.detail}")
                return
            if failure.spent:
                attempt += 1
            self._retries.inc()
            if not budget.retries:
                _LOG.warning("%s (retrying up to %g s)", failure.detail, self.retry_seconds)
            throttled = failure.kind == E.THROTTLED  # a quota or rate limit is waited for longer than an outage
            waited = budget.wait(E.THROTTLED_INITIAL_S, E.THROTTLED_CAP_S) if throttled else budget.wait()
            if not waited:
                detail = f"{table}: {failure.detail}; gave up after {budget.elapsed():.0f} s"
                yield from self._dead(entries, detail)
                return

    def _run_job(self, table: str, name: str, body: bytes, config: Any) -> _Failure | None:
        """One try of the job `name`: None when its rows are in the table, else what went wrong."""
        from google.api_core.exceptions import Conflict, NotFound

        try:
            job = self._client.load_table_from_file(
                io.BytesIO(body), table, job_id=name, job_config=config, location=self._location,
                timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except Conflict:  # submitted before (a retried bundle): that job's outcome is this one's
            try:
                job = self._client.get_job(name, location=self._location, timeout=REQUEST_TIMEOUT_S)
            except NotFound as exc:  # it exists, yet cannot be found: never a reason to load its rows twice
                detail = f"load job {name} exists but jobs.get in {self._location} cannot find it: {exc}"
                return _Failure(E.TRANSIENT, _cut(detail), spent=False)
            except Exception as exc:
                return _failure_of(exc, f"looking up load job {name}", spent=False)
        except Exception as exc:
            # Refused with a 4xx (a rate limit, say): no job was created, so a new id is as safe as the same one,
            # and strict mode, like a registry of every id ever sent, counts the refused one as used. No answer or
            # a 5xx: the job may exist, and only the same id finds it (409, then jobs.get) instead of loading twice.
            status = E.status_of(exc)
            refused = status is not None and 400 <= status < 500
            failure = _failure_of(exc, f"load job {name} not submitted", spent=refused)
            # Rows are read by the job, not by jobs.insert: a request refused as invalid is refused for what it
            # asks (its configuration), and halves of the rows would be refused alike.
            return failure._replace(kind=E.FATAL) if failure.kind == E.CONTENT else failure
        self._jobs.inc()
        try:
            job.result(timeout=JOB_TIMEOUT_S)
            return None
        except concurrent.futures.TimeoutError:
            return _Failure(E.TRANSIENT, f"load job {name} still running after {JOB_TIMEOUT_S:g} s", spent=False)
        except Exception as exc:
            if job.state == "DONE" and job.error_result:
                return _failure_of(job, f"load job {name} failed", spent=True, exc=exc)
            return _failure_of(exc, f"waiting for load job {name}", spent=False)

    def _dead(self, entries: list[RowEntry], detail: str) -> Iterator[Any]:
        self._failed.inc(len(entries))
        for entry in entries:
            yield pvalue.TaggedOutput(DEAD_LETTER, insert_failed_letter(entry.source, detail))


def _failure_of(error: Any, what: str, *, spent: bool, exc: BaseException | None = None) -> _Failure:
    shown = exc if exc is not None else error
    return _Failure(E.kind(error), _cut(f"{what} ({E.describe(error)}): {core.describe_exception(shown)}"), spent)


def _cut(detail: str) -> str:
    return detail[:900]


class GroupForLoad(beam.PTransform):
    """(table, RowEntry) -> ((table, month, group), [RowEntry]): the rows of each load job.

    Rows are counted per table and day of event time, each month's days are planned into groups of about
    `target` rows (plan_month: a side input of one small entry per table and day), and rows are grouped by
    (table, month, group)."""

    def __init__(self, target: int = SHARD_ROWS) -> None:
        super().__init__()
        self.target = target

    def expand(self, built_rows: beam.PCollection) -> beam.PCollection:
        by_day = built_rows | "ByTableDay" >> beam.Map(_by_table_day)
        plans = (
            by_day
            | "RowsPerDay" >> beam.combiners.Count.PerKey()
            | "ByTableMonth" >> beam.Map(_by_table_month)
            | "DaysOfMonth" >> beam.GroupByKey()
            | "PlanMonths" >> beam.FlatMap(_month_plans, self.target)
        )
        return (
            by_day
            | "ToLoadGroup" >> beam.Map(_load_group, beam.pvalue.AsDict(plans))
            | "ByLoadGroup" >> beam.GroupByKey()
        )


class LoadEventRows(beam.PTransform):
    """Valid events -> rows in the event tables of `dataset` by load jobs, grouped by table, event month and row
    count (module docstring). Returns dead letters. `run_id` is the backfill's; `location` the dataset's (None:
    looked up by each worker)."""

    def __init__(self, project: str, dataset: str, endpoint: str | None = None,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS, client: Any = None, run_id: str = "backfill",
                 location: str | None = None) -> None:  # fmt: skip
        super().__init__()
        self.project, self.dataset, self.endpoint = project, dataset, endpoint
        self.retry_seconds, self.client, self.run_id, self.location = retry_seconds, client, run_id, location
        self.launch = uuid.uuid4().hex  # drawn once per backfill graph: no two backfills share a job id

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        built = events | "BuildRows" >> beam.ParDo(BuildEventRowFn(self.project, self.dataset)).with_outputs(
            DEAD_LETTER, main="rows"
        )
        load = LoadRowsFn(self.project, self.dataset, self.endpoint, self.retry_seconds, self.run_id, self.launch,
                          self.client, self.location)  # fmt: skip
        loaded = (
            built.rows
            | "GroupForLoad" >> GroupForLoad()
            | "Load" >> beam.ParDo(load).with_outputs(DEAD_LETTER, main="unused")
        )
        return (built[DEAD_LETTER], loaded[DEAD_LETTER]) | "LoadDeadLetters" >> beam.Flatten()
