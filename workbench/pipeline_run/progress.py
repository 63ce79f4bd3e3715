"""What a running pipeline has done so far, read from Beam's metrics (and, locally, from the reader's ledger)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from eventmodel import rows
from pipeline import metrics as M
from workbench.pipeline_run.direct_runner import ReadControl


@dataclass
class Progress:
    """What the live view shows; counters are cumulative since the start."""

    elapsed: float
    read: int = 0
    valid: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    gcs_lines: int = 0
    gcs_files: int = 0
    bigquery_rows: int = 0  # event tables
    dead_letter_rows: int = 0  # the dead_letters table
    bigquery_failed: int = 0
    retries: dict[str, int] = field(default_factory=dict)  # sink -> backoff waits so far (Beam counters)
    unacked: int = 0  # read, not yet committed by every sink (local runs)
    acked: int = 0  # ack ids sent to Pub/Sub (local runs)
    troubles: dict[str, str] = field(default_factory=dict)  # sink -> what is failing right now (local runs)
    gcs_lag_ms: int | None = None
    bigquery_lag_ms: int | None = None
    idle_for: float = 0.0
    stopping: str | None = None
    per_reason: dict[str, int] = field(default_factory=dict)
    per_type: dict[str, int] = field(default_factory=dict)


def progress_of(result: Any, started: float, control: ReadControl | None = None) -> Progress:
    """Current Progress from a (running or finished) pipeline result's metrics (read by pipeline.metrics' rule)."""
    progress = Progress(elapsed=time.monotonic() - started)
    try:
        found = M.workbench_metrics(result)
    except Exception:  # metrics not available yet (or on this runner)
        return progress
    for name, value in M.counter_totals(found["counters"]).items():
        if name == M.READ:
            progress.read += value
        elif name.startswith("valid_"):
            progress.valid += value
            progress.per_type[name.removeprefix("valid_")] = value
        elif name == M.DUPLICATES:
            progress.duplicates += value
        elif name == M.DEAD_LETTERS:
            progress.dead_lettered += value
        elif name.startswith(M.DEAD_LETTERS + "_"):
            progress.per_reason[name.removeprefix(M.DEAD_LETTERS + "_")] = value
        elif name == M.GCS_FILES:
            progress.gcs_files += value
        elif name.startswith(M.GCS_LINES + "_"):
            progress.gcs_lines += value
        elif name == M.bigquery_rows(rows.DEAD_LETTER_TABLE):
            progress.dead_letter_rows += value
        elif name.startswith(M.BIGQUERY_ROWS + "_"):
            progress.bigquery_rows += value
        elif name == M.BIGQUERY_FAILED:
            progress.bigquery_failed += value
        elif name in _RETRY_COUNTERS:
            progress.retries[_RETRY_COUNTERS[name]] = value
    for gauge in found["gauges"]:
        value = M.metric_value(gauge)
        if gauge.key.metric.name == M.GCS_LAG_MS:
            progress.gcs_lag_ms = value
        elif gauge.key.metric.name == M.BIGQUERY_LAG_MS:
            progress.bigquery_lag_ms = value
    if control is not None:
        progress.idle_for = control.idle_for()
        progress.stopping = control.stop_reason
        if control.ledger is not None:
            stats = control.ledger.snapshot()
            progress.unacked, progress.acked = stats.outstanding, stats.acked
            progress.troubles = stats.troubles
        if control.pull_error:
            progress.troubles = {**progress.troubles, "pubsub": control.pull_error}
        outage = outage_note(control.source.down_for(), control.source_retry_seconds)
        if outage:
            progress.troubles = {**progress.troubles, "pubsub": f"{control.source.last_error}; {outage}"}
    return progress


def outage_note(down_for: float, limit: float | None) -> str | None:
    """How long Pub/Sub has not answered and when the run gives up, for the live view; None while it answers."""
    if down_for <= 0:
        return None
    if limit is None:
        return f"no answer for {down_for:,.0f} s, retrying"
    return f"no answer for {down_for:,.0f} s; the run stops after {limit:,.0f} s (--source-retry-seconds)"


_RETRY_COUNTERS = {M.GCS_RETRIES: "gcs", M.BIGQUERY_RETRIES: "bigquery", M.DEAD_LETTER_RETRIES: "dead letters"}
