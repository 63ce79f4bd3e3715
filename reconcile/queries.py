"""The comparison, written once in BigQuery Standard SQL and run on either engine.

On real GCP the statements run inside BigQuery, next to the data; locally sqlglot transpiles them to DuckDB
(to_duckdb below), which reads the manifest CSVs, the GCS lines and the rows fetched from the emulator. Every
statement names its tables as `{t[name]}`; the engine fills in where each table lives.

The tables an engine provides before the comparison runs:

    manifest        the run's events-*.csv, every column STRING (publisher/manifest.py EVENT_COLUMNS)
    known_runs      run_id of every run with a manifest (to tell another run's events from a foreign producer's)
    sink_events     one row per copy of an event in an event sink: the GCS files and the BigQuery event tables
                    (sink, location, event_id, message_id, run_id, publish_time, landed_time, event_type,
                    container_type, event_minute, container_minute, name_ok, canonical_digest)
    dead_letters    one row per copy of a dead letter: the dead_letters table and the dead-letter topic
                    (sink, location, event_id, source_message_id, run_id, reason, stage, payload_digest,
                    payload_cut, publish_time, landed_time); payload_cut: the table keeps only the first
                    MAX_PAYLOAD_BYTES of an oversize payload, so its bytes are compared through the topic

sink_events and dead_letters are built per source by SELECTs generated from the sink contract
(reconcile/contract_sql.py), so each source's own columns and types never leak into the comparison.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventmodel import reasons as R
from eventmodel.schema import EVENT_TIME_FIELD

if TYPE_CHECKING:  # reconcile.engine imports this module
    from reconcile.engine import Engine

# Sink names: the columns of the report and the values of sink_events.sink / dead_letters.sink.
GCS = "gcs"
BIGQUERY = "bigquery"
DEAD_LETTER_TABLE = "dead_letter_table"
DEAD_LETTER_TOPIC = "dead_letter_topic"
DEAD_LETTER_FILES = "dead_letter_files"
EVENT_SINKS = (GCS, BIGQUERY)
DEAD_LETTER_SINKS = (DEAD_LETTER_TABLE, DEAD_LETTER_TOPIC, DEAD_LETTER_FILES)
SINKS = EVENT_SINKS + DEAD_LETTER_SINKS

DEAD_LETTER = "dead_letter"  # manifest `expected` of a malformed event
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


def literal(text: str) -> str:
    """A safe SQL string literal for a run id (the only value spliced into statements)."""
    if not _RUN_ID.fullmatch(text):
        raise ValueError(f"not a run id: {text!r}")
    return f"'{text}'"


@functools.lru_cache(maxsize=256)
def to_duckdb(sql: str) -> str:
    """The DuckDB form of a BigQuery statement (sqlglot); cached, the statements are few and fixed."""
    import sqlglot

    return sqlglot.transpile(sql, read="bigquery", write="duckdb")[0]


# ------------------------------------------------------------------------------------- per-source SELECTs


def timestamp_literal(when: datetime) -> str:
    """A BigQuery TIMESTAMP literal of an aware datetime (UTC, microseconds: TIMESTAMP's precision)."""
    return f"TIMESTAMP('{when.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}+00:00')"


def partition_bound(event_type: str, event_times: tuple[datetime, datetime]) -> str:
    """The condition on an event table's partition column (its event time: ddl/1*_*.sql PARTITION BY DATE(...))
    that bounds a read to the run's event times. user_activity has require_partition_filter = TRUE, so BigQuery
    refuses a read of it without one; on orders and inventory it prunes the partitions all the same. A constant
    range on the column itself is what partition pruning needs (cloud.google.com/bigquery/docs/querying-
    partitioned-tables: "Query a time-unit column-partitioned table", filters that prune)."""
    low, high = event_times
    return f"`{EVENT_TIME_FIELD[event_type]}` BETWEEN {timestamp_literal(low)} AND {timestamp_literal(high)}"


def bigquery_select(event_type: str, table: str, scope: str, event_times: tuple[datetime, datetime]) -> str:
    """sink_events rows of an event table of the ddl/ model (the built-in contract's, reconcile.contract_sql) in
    `scope` (a condition on sink_events' columns) whose event time lies within `event_times`."""
    from reconcile import contract_sql
    from reconcile.contract import default_contract

    contract = default_contract()
    sink = next(t for t in contract.tables if t.event_type == event_type)
    return contract_sql.table_select(sink, contract, lambda _: table, event_times, scope)


def dead_letter_table_select(table: str, scope: str, since: datetime) -> str:
    """dead_letters rows of the ddl/ model's dead_letters table in `scope` ingested since `since`: the table is
    partitioned by DATE(ingest_time) (ddl/13_dead_letters.sql), and a run's dead letters cannot land before it
    started, so older partitions are never read."""
    from reconcile import contract_sql
    from reconcile.contract import default_contract

    letters = default_contract().dead_letters.table
    return contract_sql.dead_letter_table_select(letters, lambda _: table, since, scope)


def file_name_filter(prefixes: list[str]) -> str:
    """The condition on an external table's _FILE_NAME that keeps the files under `prefixes` (gs:// folders)."""
    if not prefixes:
        return "FALSE"
    return "(" + " OR ".join(f"STARTS_WITH(_FILE_NAME, {_string(p)})" for p in prefixes) + ")"


def _string(text: str) -> str:
    """A SQL string literal of a path (quotes and backslashes escaped; BigQuery and DuckDB read both the same)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ------------------------------------------------------------------------------------------ comparison

# One row per event the run published, with what every sink holds of it. `problem` is the first diagnosis
# that fails the run, in order of gravity: a malformed event accepted is the worst failure there is.
EVENT_STATUS = """
CREATE OR REPLACE TABLE {t[event_status]} AS
WITH sent AS (
  SELECT event_id, ANY_VALUE(expected) AS expected, ANY_VALUE(event_type) AS event_type,
         ANY_VALUE(reason) AS reason, ANY_VALUE(kind) AS kind, ANY_VALUE(payload_digest) AS payload_digest,
         ANY_VALUE(canonical_digest) AS canonical_digest, ANY_VALUE(message_id) AS message_id,
         COUNT(*) AS copies_sent
  FROM {t[manifest]} WHERE outcome = 'published' GROUP BY event_id
),
-- Copies held under another run's id: a replay's events that a deduplicating pipeline kept from the earlier run
-- (the scope reads the runs that share this run's event ids). Judged in their own run, counted here apart.
earlier AS (
  SELECT s.event_id, e.sink, COUNT(*) AS copies
  FROM sent AS s JOIN {t[sink_events]} AS e ON e.event_id = s.event_id
  WHERE e.run_id != {run_id}
  GROUP BY s.event_id, e.sink
  UNION ALL
  SELECT s.event_id, d.sink, COUNT(*) AS copies
  FROM sent AS s JOIN {t[dead_letters]} AS d ON d.event_id = s.event_id
  WHERE d.run_id != {run_id}
  GROUP BY s.event_id, d.sink
),
-- Events whose natural key another published event shares, in a sink that keeps no event id: never merged.
collided AS (
  SELECT DISTINCT x.event_id FROM {t[expected]} AS x
  JOIN (SELECT entry, key_digest FROM {t[expected]} GROUP BY entry, key_digest
        HAVING COUNT(DISTINCT event_id) > 1) AS k ON k.entry = x.entry AND k.key_digest = x.key_digest
  WHERE x.run_id = {run_id}
),
held AS (
  SELECT s.event_id, e.sink, COUNT(*) AS copies, COUNT(DISTINCT e.message_id) AS messages,
         COUNTIF(e.message_id IS NULL) AS anonymous,
         COUNTIF(e.container_type != s.event_type OR e.event_type IS NULL OR e.event_type != s.event_type
                 OR (e.sink = '{gcs}' AND (e.container_minute IS NULL OR e.event_minute IS NULL
                                            OR e.container_minute != e.event_minute OR NOT e.name_ok)))
           AS misplaced,
         -- against the event as this sink keeps it (its declared conversions: expected_digest), else the manifest's
         COUNTIF(e.canonical_digest IS NULL OR e.canonical_digest != COALESCE(e.expected_digest, s.canonical_digest))
           AS altered,
         MIN(e.location) AS location
  FROM sent AS s JOIN {t[sink_events]} AS e ON e.event_id = s.event_id
  WHERE e.run_id IS NULL OR e.run_id = {run_id}
  GROUP BY s.event_id, e.sink
),
lettered AS (
  SELECT s.event_id, d.sink, COUNT(*) AS copies,
         COUNTIF(d.reason = s.reason) AS right_reason,
         COUNTIF(d.reason = '{gcs_failed}') AS gcs_failed, COUNTIF(d.reason = '{bigquery_failed}') AS bigquery_failed,
         COUNTIF(NOT d.payload_cut AND (d.payload_digest IS NULL OR d.payload_digest != s.payload_digest))
           AS altered,
         STRING_AGG(DISTINCT d.reason, ',' ORDER BY d.reason) AS reasons
  FROM sent AS s JOIN {t[dead_letters]} AS d ON d.event_id = s.event_id
  WHERE d.run_id IS NULL OR d.run_id = {run_id}
  GROUP BY s.event_id, d.sink
),
held_earlier AS (
  SELECT event_id, SUM(IF(sink = '{gcs}', copies, 0)) AS gcs, SUM(IF(sink = '{bigquery}', copies, 0)) AS bigquery,
         SUM(IF(sink = '{dead_letter_table}', copies, 0)) AS dlt,
         SUM(IF(sink = '{dead_letter_topic}', copies, 0)) AS dlq,
         SUM(IF(sink = '{dead_letter_files}', copies, 0)) AS dlf
  FROM earlier GROUP BY event_id
),
status AS (
  SELECT s.event_id, s.expected, s.event_type, s.reason, s.kind, s.message_id, s.copies_sent,
         COALESCE(g.copies, 0) AS gcs_copies, COALESCE(g.messages, 0) AS gcs_messages,
         COALESCE(g.misplaced, 0) AS gcs_misplaced,
         COALESCE(g.altered, 0) AS gcs_altered, g.location AS gcs_location, COALESCE(g.anonymous, 0) AS gcs_anonymous,
         COALESCE(b.copies, 0) AS bigquery_copies, COALESCE(b.misplaced, 0) AS bigquery_misplaced,
         COALESCE(b.messages, 0) AS bigquery_messages, COALESCE(b.anonymous, 0) AS bigquery_anonymous,
         COALESCE(b.altered, 0) AS bigquery_altered, b.location AS bigquery_location,
         COALESCE(dt.copies, 0) AS dlt_copies, COALESCE(dt.right_reason, 0) AS dlt_right_reason,
         COALESCE(dt.altered, 0) AS dlt_altered, dt.reasons AS dlt_reasons,
         COALESCE(dq.copies, 0) AS dlq_copies, COALESCE(dq.right_reason, 0) AS dlq_right_reason,
         COALESCE(dq.altered, 0) AS dlq_altered, dq.reasons AS dlq_reasons,
         COALESCE(df.copies, 0) AS dlf_copies, COALESCE(df.right_reason, 0) AS dlf_right_reason,
         COALESCE(df.altered, 0) AS dlf_altered,
         COALESCE(dt.gcs_failed, 0) + COALESCE(dq.gcs_failed, 0) > 0 AS gcs_gave_up,
         COALESCE(dt.bigquery_failed, 0) + COALESCE(dq.bigquery_failed, 0) > 0 AS bigquery_gave_up,
         COALESCE(h.gcs, 0) AS gcs_earlier, COALESCE(h.bigquery, 0) AS bigquery_earlier,
         COALESCE(h.dlt, 0) + COALESCE(h.dlf, 0) AS dlt_earlier, COALESCE(h.dlq, 0) AS dlq_earlier,
         c.event_id IS NOT NULL AS collided
  FROM sent AS s
  LEFT JOIN held AS g ON g.event_id = s.event_id AND g.sink = '{gcs}'
  LEFT JOIN held AS b ON b.event_id = s.event_id AND b.sink = '{bigquery}'
  LEFT JOIN lettered AS dt ON dt.event_id = s.event_id AND dt.sink = '{dead_letter_table}'
  LEFT JOIN lettered AS dq ON dq.event_id = s.event_id AND dq.sink = '{dead_letter_topic}'
  LEFT JOIN lettered AS df ON df.event_id = s.event_id AND df.sink = '{dead_letter_files}'
  LEFT JOIN held_earlier AS h ON h.event_id = s.event_id
  LEFT JOIN collided AS c ON c.event_id = s.event_id
)
SELECT *,
  CASE
    WHEN expected = '{dead_letter}' THEN
      CASE
        WHEN gcs_copies + bigquery_copies > 0 THEN 'accepted'
        WHEN dlt_copies + dlq_copies + dlf_copies = 0 AND dlt_earlier + dlq_earlier > 0 THEN {earlier_problem}
        -- a pipeline whose contract says it drops malformed events (malformed: dropped_ok) may hold none
        WHEN dlt_copies + dlq_copies + dlf_copies = 0 AND {dropped_ok} THEN NULL
        WHEN dlt_copies + dlq_copies + dlf_copies = 0 THEN 'missing'
        WHEN {check_table} AND dlt_copies = 0 THEN 'missing_in_dead_letter_table'
        WHEN {check_topic} AND dlq_copies = 0 THEN 'missing_in_dead_letter_topic'
        WHEN {check_files} AND dlf_copies = 0 THEN 'missing_in_dead_letter_files'
        WHEN {check_reasons} AND (({check_table} AND dlt_right_reason = 0) OR ({check_topic} AND dlq_right_reason = 0))
          THEN 'other_reason'
        WHEN dlt_altered + dlq_altered + dlf_altered > 0 THEN 'altered'
        ELSE NULL
      END
    ELSE
      CASE
        WHEN collided THEN 'collision'
        WHEN gcs_copies = 0 AND bigquery_copies = 0 AND gcs_earlier + bigquery_earlier > 0 THEN {earlier_problem}
        WHEN gcs_copies = 0 AND bigquery_copies = 0 AND NOT (gcs_gave_up OR bigquery_gave_up) THEN 'missing'
        WHEN {check_gcs} AND gcs_copies + gcs_earlier = 0 AND NOT gcs_gave_up THEN 'missing_in_gcs'
        WHEN {check_bigquery} AND bigquery_copies + bigquery_earlier = 0 AND NOT bigquery_gave_up
          THEN 'missing_in_bigquery'
        WHEN gcs_misplaced + bigquery_misplaced > 0 THEN 'misplaced'
        WHEN gcs_altered + bigquery_altered > 0 THEN 'altered'
        -- copies from different messages, or copies a sink cannot tell apart (no message id), where the contract
        -- promises deduplication (the same message written twice is at-least-once delivery: RAW_DUPLICATES)
        WHEN {deduplicated} AND (gcs_messages + gcs_anonymous > 1 OR bigquery_messages + bigquery_anonymous > 1)
          THEN 'duplicated'
        ELSE NULL
      END
  END AS problem
FROM status"""

# Per event type (valid events) and per malformed kind: the report's two tables, from event_status.
BY_TYPE = """
SELECT event_type, COUNT(*) AS expected,
       COUNTIF(gcs_copies > 0) AS in_gcs, COUNTIF(bigquery_copies > 0) AS in_bigquery,
       COUNTIF(COALESCE(problem, '') IN ('missing', 'missing_in_gcs', 'missing_in_bigquery')) AS missing,
       COUNTIF(gcs_messages > 1) AS gcs_duplicated,
       -- the same message again; a sink keeping no message id cannot say (its copies count under duplicated)
       COUNTIF(gcs_messages > 0 AND gcs_copies > gcs_messages) AS gcs_redelivered,
       COUNTIF(bigquery_copies > 1) AS bigquery_raw_duplicated,
       COUNTIF(gcs_misplaced + bigquery_misplaced > 0) AS misplaced,
       COUNTIF(gcs_altered + bigquery_altered > 0) AS altered,
       COUNTIF(dlt_copies + dlq_copies > 0) AS dead_lettered,
       COUNTIF((gcs_gave_up AND gcs_copies = 0) OR (bigquery_gave_up AND bigquery_copies = 0)) AS sink_gave_up,
       COUNTIF(gcs_copies + bigquery_copies = 0 AND gcs_earlier + bigquery_earlier > 0) AS held_by_earlier_run,
       COUNTIF(problem IS NULL) AS ok
FROM {t[event_status]} WHERE expected != '{dead_letter}'
GROUP BY event_type ORDER BY event_type"""

BY_KIND = """
SELECT kind, ANY_VALUE(reason) AS reason, COUNT(*) AS sent,
       COUNTIF(COALESCE(problem, '') = 'accepted') AS accepted,
       COUNTIF(dlt_right_reason > 0 OR dlq_right_reason > 0) AS expected_reason,
       COUNTIF(COALESCE(problem, '') = 'other_reason') AS other_reason,
       STRING_AGG(DISTINCT IF(COALESCE(problem, '') = 'other_reason', COALESCE(dlt_reasons, dlq_reasons), NULL), ',')
         AS other_codes,
       COUNTIF(COALESCE(problem, '') IN ('missing', 'missing_in_dead_letter_table', 'missing_in_dead_letter_topic'))
         AS missing,
       COUNTIF(dlt_altered + dlq_altered > 0) AS bytes_altered,
       COUNTIF(dlt_copies + dlq_copies = 0 AND dlt_earlier + dlq_earlier > 0) AS held_by_earlier_run,
       COUNTIF(problem IS NULL) AS ok
FROM {t[event_status]} WHERE expected = '{dead_letter}'
GROUP BY kind ORDER BY accepted DESC, kind"""

PROBLEMS = """
SELECT problem, event_id, expected, event_type, kind, reason, message_id, gcs_copies, bigquery_copies,
       dlt_copies, dlq_copies, COALESCE(dlt_reasons, dlq_reasons) AS dead_letter_reasons,
       gcs_location, bigquery_location
FROM {t[event_status]} WHERE problem IS NOT NULL
ORDER BY CASE problem WHEN 'accepted' THEN 0 ELSE 1 END, problem, event_id"""

# Every diagnosis each event has, not only the first (`problem`): one defect of a pipeline often hides behind
# another (an order both misplaced and altered), and a report names each defect with all the events it hit.
FINDINGS = """
SELECT finding, event_id FROM (
  SELECT 'missing_in_gcs' AS finding, event_id FROM {t[event_status]}
  WHERE expected != '{dead_letter}' AND {check_gcs} AND gcs_copies + gcs_earlier = 0 AND NOT gcs_gave_up
  UNION ALL
  SELECT 'missing_in_bigquery', event_id FROM {t[event_status]}
  WHERE expected != '{dead_letter}' AND {check_bigquery} AND bigquery_copies + bigquery_earlier = 0
    AND NOT bigquery_gave_up
  UNION ALL
  SELECT 'misplaced', event_id FROM {t[event_status]} WHERE gcs_misplaced + bigquery_misplaced > 0
  UNION ALL
  SELECT 'altered', event_id FROM {t[event_status]} WHERE gcs_altered + bigquery_altered + dlt_altered + dlq_altered
    + dlf_altered > 0
  UNION ALL
  SELECT 'duplicated', event_id FROM {t[event_status]}
  WHERE expected != '{dead_letter}' AND {deduplicated}
    AND (gcs_messages + gcs_anonymous > 1 OR bigquery_messages + bigquery_anonymous > 1)
  UNION ALL
  SELECT problem, event_id FROM {t[event_status]}
  WHERE problem IN ('accepted', 'missing', 'collision', 'other_reason', 'id_reused', 'missing_in_dead_letter_table',
                    'missing_in_dead_letter_topic', 'missing_in_dead_letter_files')
) ORDER BY finding, event_id"""

# Copies that at-least-once delivery allows: the same message written again (a redelivery after a crash or a
# lost ack: more GCS copies than messages), and raw BigQuery rows beyond the first (insertId dedup is best-effort).
RAW_DUPLICATES = """
SELECT event_id, event_type, gcs_copies, bigquery_copies FROM {t[event_status]}
WHERE bigquery_copies > 1 OR (gcs_copies > gcs_messages AND gcs_messages = 1) ORDER BY event_id"""

# Rows of this run that the manifest does not know (by id, or by natural key: no event of it has theirs); and rows
# of no known run (a foreign producer).
UNEXPECTED = """
SELECT e.sink, e.event_id, e.message_id, e.event_type, e.location FROM {t[sink_events]} AS e
WHERE e.run_id = {run_id} AND (e.event_id IS NULL OR e.event_id NOT IN (SELECT event_id FROM {t[manifest]}))
UNION ALL
SELECT d.sink, d.event_id, d.source_message_id AS message_id, CAST(NULL AS STRING) AS event_type, d.location
FROM {t[dead_letters]} AS d
WHERE d.run_id = {run_id} AND (d.event_id IS NULL OR d.event_id NOT IN (SELECT event_id FROM {t[manifest]}))
ORDER BY sink, event_id"""

FOREIGN = """
SELECT e.sink, e.message_id, e.event_id, e.event_type, e.run_id, e.location FROM {t[sink_events]} AS e
WHERE e.run_id IS NULL OR e.run_id NOT IN (SELECT run_id FROM {t[known_runs]})
UNION ALL
SELECT d.sink, d.source_message_id AS message_id, d.event_id, CAST(NULL AS STRING) AS event_type, d.run_id,
       d.location
FROM {t[dead_letters]} AS d
WHERE d.run_id IS NULL OR d.run_id NOT IN (SELECT run_id FROM {t[known_runs]})
ORDER BY sink, message_id"""

# Per contract entry (reconcile.contract: each table, each type's files, each dead-letter place): its rows, the
# run's events among them, those it holds altered (as that sink keeps them), and rows no event explains.
ENTRY_COUNTS = """
SELECT e.entry, COUNT(*) AS rows, COUNT(DISTINCT IF(e.run_id = {run_id}, e.event_id, NULL)) AS events,
       COUNTIF(e.run_id = {run_id} AND (e.canonical_digest IS NULL
               OR e.canonical_digest != COALESCE(e.expected_digest, m.canonical_digest))) AS altered,
       COUNTIF(e.event_id IS NULL OR e.run_id IS NULL) AS unexplained
FROM {t[sink_events]} AS e
LEFT JOIN (SELECT event_id, ANY_VALUE(canonical_digest) AS canonical_digest FROM {t[manifest]}
           GROUP BY event_id) AS m ON m.event_id = e.event_id
GROUP BY e.entry
UNION ALL
SELECT entry, COUNT(*) AS rows, COUNT(DISTINCT IF(run_id = {run_id}, event_id, NULL)) AS events, 0 AS altered,
       COUNTIF(event_id IS NULL OR run_id IS NULL) AS unexplained
FROM {t[dead_letters]} GROUP BY entry"""

# Publish -> landed in the sink, from the sinks' own metadata (ingest_time, the object's update time).
LATENCY = """
WITH lags AS (
  SELECT sink, TIMESTAMP_DIFF(landed_time, publish_time, MILLISECOND) AS ms FROM {t[sink_events]}
  WHERE run_id = {run_id} AND landed_time IS NOT NULL AND publish_time IS NOT NULL
  UNION ALL
  SELECT sink, TIMESTAMP_DIFF(landed_time, publish_time, MILLISECOND) AS ms FROM {t[dead_letters]}
  WHERE run_id = {run_id} AND landed_time IS NOT NULL AND publish_time IS NOT NULL
)
SELECT sink, COUNT(*) AS n, APPROX_QUANTILES(ms, 100)[OFFSET(50)] AS p50,
       APPROX_QUANTILES(ms, 100)[OFFSET(95)] AS p95, APPROX_QUANTILES(ms, 100)[OFFSET(99)] AS p99,
       MAX(ms) AS max
FROM lags GROUP BY sink ORDER BY sink"""

# Each copy's own lag, for `workbench check` (battery.scorecard: latency and backlog over time, per scenario): one
# row per copy of this run's events whose sink records when it landed. A sink that keeps no publish time gives a
# NULL publish_ms: the check takes the publisher's acknowledgement time from the manifest instead.
LAGS = """
SELECT event_id, sink, UNIX_MILLIS(publish_time) AS publish_ms, UNIX_MILLIS(landed_time) AS landed_ms
FROM {t[sink_events]}
WHERE run_id = {run_id} AND event_id IS NOT NULL AND landed_time IS NOT NULL
UNION ALL
SELECT event_id, sink, UNIX_MILLIS(publish_time) AS publish_ms, UNIX_MILLIS(landed_time) AS landed_ms
FROM {t[dead_letters]}
WHERE run_id = {run_id} AND event_id IS NOT NULL AND landed_time IS NOT NULL"""

# Histogram of the same lags for the HTML report: 1-2-5 buckets from 10 ms to 10 minutes.
LATENCY_HISTOGRAM = """
WITH lags AS (
  SELECT sink, TIMESTAMP_DIFF(landed_time, publish_time, MILLISECOND) AS ms FROM {t[sink_events]}
  WHERE run_id = {run_id} AND landed_time IS NOT NULL AND publish_time IS NOT NULL
)
SELECT sink, CASE {buckets} ELSE 999999999 END AS upper_ms, COUNT(*) AS n
FROM lags GROUP BY sink, upper_ms ORDER BY sink, upper_ms"""

HISTOGRAM_BUCKETS_MS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 60_000, 120_000, 600_000)


# The comparison's results, each one statement over event_status (which EVENT_STATUS builds first), by the name the
# report gives it (reconcile.report.Report; entry_counts and findings are shaped there from these rows).
RESULTS: dict[str, str] = {
    "by_type": BY_TYPE,
    "by_kind": BY_KIND,
    "problems": PROBLEMS,
    "raw_duplicates": RAW_DUPLICATES,
    "unexpected": UNEXPECTED,
    "foreign": FOREIGN,
    "latency": LATENCY,
    "histogram": LATENCY_HISTOGRAM,
    "entry_counts": ENTRY_COUNTS,
    "findings": FINDINGS,
}


def compare(engine: Engine, run_id: str, checked: dict[str, bool], replay: bool = False,
            contract: Any = None) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """The comparison on an engine whose tables are loaded: EVENT_STATUS, then every statement of RESULTS, their
    rows by name. The one sequence reconcile.run and the tests run."""
    engine.run(render(EVENT_STATUS, engine.tables, run_id, checked, replay, contract))
    return {name: engine.run(render(sql, engine.tables, run_id, checked, replay, contract))
            for name, sql in RESULTS.items()}  # fmt: skip


def render(sql: str, tables: dict[str, str], run_id: str, checked: dict[str, bool], replay: bool = False,
           contract: Any = None) -> str:  # fmt: skip
    """Fill a statement's table names, run id and which sinks are checked (a sink left out is not missing).

    replay: the run asked to send an earlier run's event ids again, so an event whose only copies are that run's
    (a deduplicating pipeline dropped the repeat) is where it belongs; in any other run it is the problem
    'id_reused' (two runs sent the same id without saying so)."""
    contract = contract or _default_contract()
    return sql.format(
        deduplicated=_bool(contract.duplicates == "deduplicated"),
        dropped_ok=_bool(contract.malformed == "dropped_ok"),
        check_reasons=_bool(contract.dead_letters.reason_codes == "workbench"),
        check_files=_bool(checked.get(DEAD_LETTER_FILES)),
        dead_letter_files=DEAD_LETTER_FILES,
        earlier_problem="CAST(NULL AS STRING)" if replay else "'id_reused'",
        t=tables,
        run_id=literal(run_id),
        gcs=GCS,
        bigquery=BIGQUERY,
        dead_letter_table=DEAD_LETTER_TABLE,
        dead_letter_topic=DEAD_LETTER_TOPIC,
        dead_letter=DEAD_LETTER,
        gcs_failed=R.GCS_WRITE_FAILED,
        bigquery_failed=R.BIGQUERY_INSERT_FAILED,
        check_gcs=_bool(checked.get(GCS)),
        check_bigquery=_bool(checked.get(BIGQUERY)),
        check_table=_bool(checked.get(DEAD_LETTER_TABLE)),
        check_topic=_bool(checked.get(DEAD_LETTER_TOPIC)),
        buckets=" ".join(f"WHEN ms <= {b} THEN {b}" for b in HISTOGRAM_BUCKETS_MS),
    )


def _default_contract() -> Any:
    from reconcile.contract import default_contract

    return default_contract()


def _bool(value: bool | None) -> str:
    return "TRUE" if value else "FALSE"
