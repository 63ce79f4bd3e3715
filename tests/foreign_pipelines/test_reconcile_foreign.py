"""`workbench reconcile --sinks` judging pipelines written by others (flattened.py, whole_event.py, buggy.py), each
run through `workbench exec` on the local stack (conftest.py): the two honest designs reconcile (exit 0), and each
mistake of the buggy one is named, with the events it hit (exit 1)."""

from __future__ import annotations

import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def reconcile(run, *extra: str) -> tuple[int, dict, str]:
    """`workbench reconcile RUN --sinks CONTRACT --json FILE` as a user runs it: (exit status, report, output)."""
    report = run.contract.parent / f"report-{len(extra)}.json"
    done = run.workbench("reconcile", run.run_id, "--sinks", str(run.contract), "--dataset", run.dataset,
                         "--output-root", run.output_root, "--no-dead-letter-topic", "--json", str(report),
                         *extra)  # fmt: skip
    data = orjson.loads(report.read_bytes()) if report.exists() else {}
    return done.returncode, data, done.text


def problems(report: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for p in report.get("problems", []):
        found.setdefault(p["problem"], set()).add(p["event_id"])
    return found


def test_the_flattened_design_reconciles_by_natural_key(flattened_run):
    status, report, text = reconcile(flattened_run)
    assert status == 0, text[-4000:]
    entries = {e["entry"]: e for e in report["entries"]}
    assert entries["bigquery:orders"]["held"] == entries["bigquery:orders"]["expected"] > 0
    assert entries["dead_letters:table:dead_letters"]["missing"] == 0


def test_the_whole_event_design_reconciles(whole_event_run):
    status, report, text = reconcile(whole_event_run)
    assert status == 0, text[-4000:]
    assert report["raw_duplicates"], "at-least-once copies are counted"
