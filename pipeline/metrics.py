"""Beam metric names, declared once: the transforms update them, the live view and the tests query them.

All live in one namespace. Counters are cumulative; the lag gauges hold the latest flush's worst lag (ms from
Pub/Sub publish to the sink write), so a view polling them sees lag now, not an average over the run.

    result.metrics().query(MetricsFilter().with_namespace(NAMESPACE).with_name(READ))
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from apache_beam.metrics import Metrics

NAMESPACE = "event_workbench"

READ = "read"
DUPLICATES = "duplicates_dropped"
DEDUP_ERRORS = "dedup_errors"  # events let through because the dedup step failed on them
DEDUP_TOO_OLD = "dedup_older_than_window"  # let through: published before the dedup window
DEDUP_NO_ID = "dedup_no_event_id"  # let through: neither an event_id attribute nor a message id to judge by
GCS_FILES = "gcs_files_written"
GCS_LINES = "gcs_lines_written"
BIGQUERY_ROWS = "bigquery_rows_written"
BIGQUERY_FAILED = "bigquery_rows_failed"
# Retries of a failing sink (one per backoff wait), so that an outage shows in the counters.
BIGQUERY_RETRIES = "bigquery_retries"
GCS_RETRIES = "gcs_retries"
GCS_MINUTES_FORGOTTEN = "gcs_minutes_forgotten"  # file-writer keys released after an hour of publish time
DEAD_LETTER_RETRIES = "dead_letter_retries"
DEAD_LETTERS = "dead_letters"
DEAD_LETTER_ROWS_FAILED = "dead_letter_rows_failed"  # given up on the table (the topic copy exists)
DEAD_LETTER_PUBLISH_FAILED = "dead_letter_publish_failed"  # given up on the topic (the table row exists)
# A backfill's read stage (pipeline/history_read.py).
HISTORY_OBJECTS = "history_objects_read"
HISTORY_BYTES = "history_bytes_read"  # as stored (compressed when gzip)
HISTORY_UNREADABLE = "history_objects_unreadable"
HISTORY_OUTSIDE_WINDOW = "history_outside_window"  # valid events outside --since/--until, left out
# A backfill's dedup against what the sinks hold (pipeline/history_dedup.py).
HISTORY_DUPLICATES = "history_duplicates_dropped"  # the same natural key more than once in the history
HISTORY_ALREADY_IN_GCS = "history_already_in_gcs"
HISTORY_ALREADY_IN_BIGQUERY = "history_already_in_bigquery"
HISTORY_DEAD_LETTERS_KNOWN = "history_dead_letters_already_recorded"
BIGQUERY_LOAD_JOBS = "bigquery_load_jobs"
GCS_LAG_MS = "gcs_lag_ms"
BIGQUERY_LAG_MS = "bigquery_lag_ms"


def valid(event_type: str) -> str:
    """Accepted events of one type."""
    return f"valid_{event_type}"


def gcs_lines(event_type: str) -> str:
    return f"{GCS_LINES}_{event_type}"


def bigquery_rows(table: str) -> str:
    return f"{BIGQUERY_ROWS}_{table}"


def dead_letter(reason: str) -> str:
    """Dead letters of one reason code."""
    return f"{DEAD_LETTERS}_{reason}"


class _Counter:
    """Beam's counter, and, while a local run mirrors them, the same count in this process (LiveCounts)."""

    __slots__ = ("_counter", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._counter = Metrics.counter(NAMESPACE, name)

    def inc(self, n: int = 1) -> None:
        self._counter.inc(n)
        live = _live
        if live is not None:
            live.add(self._name, n)


class LiveCounts:
    """Counter values as the DoFns of this process update them, readable while the pipeline runs.

    Why: a batch pipeline on Beam's embedded runner (FnApiRunner, what the DirectRunner runs batch jobs on)
    returns its metrics only once it has finished, and a backfill's live view needs them as it goes. The view
    and the DoFns share the process (direct_num_workers=1), so the counters are mirrored here while a run
    asks for it (mirror_counters); Beam's own metrics stay the record of the finished run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}

    def add(self, name: str, n: int) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


_live: LiveCounts | None = None


def mirror_counters(live: LiveCounts | None) -> None:
    """Mirror every counter of this process into `live` from now on (None: stop)."""
    global _live
    _live = live


def counter(name: str) -> _Counter:
    return _Counter(name)


class CounterFamily:
    """Counters named by a key (an event type, a table, a reason code), each made on its first use.

    rows = CounterFamily(bigquery_rows)
    rows.inc("orders", 500)          # the counter bigquery_rows_written_orders
    """

    def __init__(self, name: Callable[[str], str]) -> None:
        self._name = name
        self._counters: dict[str, _Counter] = {}

    def inc(self, key: str, n: int = 1) -> None:
        found = self._counters.get(key)
        if found is None:
            found = self._counters[key] = counter(self._name(key))
        found.inc(n)


def gauge(name: str):
    return Metrics.gauge(NAMESPACE, name)


# ------------------------------------------------------------------------------------------- reading them back


def metric_value(result: Any) -> Any:
    """One metric's value in a pipeline result (a MetricResult): the one rule of the live view and the summaries.

    Committed where the runner reports it, attempted where it does not (committed None): Beam's MetricResult keeps
    both, "committed" being the updates of successfully completed work and "attempted" every update made
    (apache_beam/metrics/execution.py, MetricResult; the Java SDK's MetricResult.getCommitted says "not all runners
    will support committed metrics"). Where both are numbers (a counter, a gauge's value: gauges carry (value,
    timestamp)), the larger of the two: the BundleBasedDirectRunner (a local stream) commits some updates, from
    timer callbacks and bundle finishes, only into `attempted`; the FnApiRunner (a local backfill) reports the two
    equal. Only local runs are read this way (Dataflow's own monitoring shows a submitted job's counters)."""
    committed = _plain(result.committed)
    attempted = _plain(result.attempted)
    if committed is None:
        return attempted
    if isinstance(committed, int) and isinstance(attempted, int):
        return max(committed, attempted)
    return committed


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def workbench_metrics(pipeline_result: Any) -> dict[str, list]:
    """The workbench's metrics in a (running or finished) pipeline result, as Beam's query returns them
    ({"counters": [...], "gauges": [...], ...}); raises what the runner raises while it has none yet."""
    from apache_beam.metrics.metric import MetricsFilter

    return pipeline_result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))


def counter_totals(results: Iterable[Any]) -> dict[str, int]:
    """Counter name -> its value (metric_value) summed over the steps that update it."""
    totals: dict[str, int] = {}
    for result in results:
        name = result.key.metric.name
        totals[name] = totals.get(name, 0) + int(metric_value(result) or 0)
    return totals
