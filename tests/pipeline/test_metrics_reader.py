"""Reading Beam's metrics back: one rule (pipeline.metrics.metric_value) for the live view and the summaries."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics.cells import GaugeData, GaugeResult
from apache_beam.metrics.execution import MetricKey, MetricResult
from apache_beam.metrics.metricbase import MetricName

from pipeline import metrics as M
from pipeline.runners import local_runner
from workbench.pipeline_run.backfill_launcher import final_counts
from workbench.pipeline_run.progress import progress_of


def _result(name: str, committed, attempted, step: str = "s") -> MetricResult:
    return MetricResult(MetricKey(step, MetricName(M.NAMESPACE, name)), committed, attempted)


def test_committed_where_the_runner_reports_it_attempted_where_it_does_not():
    assert M.metric_value(_result(M.READ, 7, 7)) == 7
    assert M.metric_value(_result(M.READ, None, 5)) == 5, "no committed value: the attempted one"
    # The BundleBasedDirectRunner commits some updates (timers, bundle finishes) only into attempted.
    assert M.metric_value(_result(M.READ, 3, 5)) == 5
    assert M.metric_value(_result(M.GCS_LAG_MS, None, GaugeResult(GaugeData(250)))) == 250, "a gauge's value"
    assert M.metric_value(_result(M.GCS_LAG_MS, GaugeResult(GaugeData(90)), GaugeResult(GaugeData(250)))) == 250


def test_counters_are_summed_over_the_steps_that_update_them():
    found = [_result(M.READ, 2, 2, "a"), _result(M.READ, 3, 3, "b"), _result(M.GCS_FILES, None, 4), _result("x", 0, 0)]
    assert M.counter_totals(found) == {M.READ: 5, M.GCS_FILES: 4, "x": 0}


class _Count(beam.DoFn):
    def setup(self) -> None:
        self.read = M.counter(M.READ)
        self.files = M.CounterFamily(M.gcs_lines)

    def process(self, element: int):
        self.read.inc()
        self.files.inc("order", element)
        yield element


def test_the_backfill_summary_and_the_live_view_read_a_finished_run_alike():
    """Both readers of a real run (local_runner, the FnApiRunner here) give the counts the DoFns made."""
    pipeline = beam.Pipeline(runner=local_runner())
    _ = pipeline | beam.Create([1, 2, 3, 4]) | "CountA" >> beam.ParDo(_Count()) | "CountB" >> beam.ParDo(_Count())
    result = pipeline.run()
    result.wait_until_finish()
    counts = final_counts(result)
    assert counts == {M.READ: 8, M.gcs_lines("order"): 20}, "two steps, summed"
    progress = progress_of(result, started=0.0)
    assert (progress.read, progress.gcs_lines) == (8, 20)
