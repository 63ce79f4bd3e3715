"""Beam metric names, declared once: the transforms update them, the live view and the tests query them.

All live in one namespace. Counters are cumulative; the lag gauges hold the latest flush's worst lag (ms from
Pub/Sub publish to the sink write), so a view polling them sees lag now, not an average over the run.

    result.metrics().query(MetricsFilter().with_namespace(NAMESPACE).with_name(READ))
"""

from __future__ import annotations

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


def counter(name: str):
    return Metrics.counter(NAMESPACE, name)


def gauge(name: str):
    return Metrics.gauge(NAMESPACE, name)
