"""`workbench reconcile --sinks` judging pipelines written by others (flattened.py, whole_event.py, buggy.py), each
run through `workbench exec` on the local stack (conftest.py): the two honest designs reconcile (exit 0), and each
mistake of the buggy one is named, with the events it hit (exit 1)."""

from __future__ import annotations

import orjson
import pytest

# The session's runs start with the first test that needs them: the pipelines' own time included.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


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
    assert entries["bigquery:order_items"]["held"] == entries["bigquery:orders"]["held"]  # the child table's own row
    assert entries["dead_letters:table:dead_letters"]["missing"] == 0


def test_the_whole_event_design_reconciles(whole_event_run):
    status, report, text = reconcile(whole_event_run)
    assert status == 0, text[-4000:]
    assert report["raw_duplicates"], "at-least-once copies are counted"


# ------------------------------------------------------------------------ buggy.py: each defect, by name


def _published_valid(run) -> list[dict]:
    return [r for r in run.published if r["expected"] != "dead_letter"]


def _id_by_key(run) -> dict:
    from eventmodel.history import natural_key

    return {(r["expected"], natural_key(r["expected"], orjson.loads(r["event"]))): r["event_id"]
            for r in _published_valid(run)}  # fmt: skip


def _ids_in_files(run) -> set[str]:
    """The events the buggy pipeline's files hold (found by natural key: its lines keep no event id)."""
    from pathlib import Path

    from eventmodel.history import natural_key

    ids = _id_by_key(run)
    found = set()
    for path in sorted(Path(run.output_root).rglob("*.json")):
        for line in path.read_text().splitlines():
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:  # a torn tail: two writers of one second raced on the same name
                continue
            found.add(ids[(event["event_type"], natural_key(event["event_type"], event))])
    return found


@pytest.fixture(scope="module")
def buggy_verdict(buggy_run):
    status, report, text = reconcile(buggy_run)
    assert status == 1, text[-3000:]
    return report


def test_buggy_silently_dropped_malformed_events_are_missing(buggy_run, buggy_verdict):
    from foreign_support import BUGGY_DROPPED_KINDS

    dropped = {r["event_id"] for r in buggy_run.published if r["kind"] in BUGGY_DROPPED_KINDS}
    assert dropped
    assert set(buggy_verdict["findings"]["missing"]) == dropped


def test_buggy_files_overwritten_within_a_second_lose_their_events(buggy_run, buggy_verdict):
    lost = {r["event_id"] for r in _published_valid(buggy_run)} - _ids_in_files(buggy_run)
    assert lost
    assert set(buggy_verdict["findings"]["missing_in_gcs"]) == lost


def test_buggy_local_time_folders_misplace_every_file(buggy_run, buggy_verdict):
    held = _ids_in_files(buggy_run)
    assert set(buggy_verdict["findings"]["misplaced"]) == held


def test_buggy_prices_rounded_to_one_decimal_are_altered_field_by_field(buggy_run, buggy_verdict):
    rounded = set()
    for r in _published_valid(buggy_run):
        event = orjson.loads(r["event"])
        if r["expected"] == "order" and any(round(i["price"], 1) != i["price"] for i in event["items"]):
            rounded.add(r["event_id"])
    assert rounded
    assert set(buggy_verdict["findings"]["altered"]) == rounded
    fields = {(f["event_id"], f["field"].split("[")[0], f["field"].rsplit(".", 1)[-1])
              for f in buggy_verdict["altered_fields"] if f["sink"] == "bigquery:orders"}  # fmt: skip
    assert {e for e, head, leaf in fields if head == "items" and leaf == "price"} == rounded
    sample = next(f for f in buggy_verdict["altered_fields"] if f["field"].endswith(".price"))
    assert float(sample["held"]) == round(float(sample["published"]), 1)


def test_buggy_duplicates_kept_despite_the_promise_are_duplicated(buggy_run, buggy_verdict):
    import collections

    sent = collections.Counter(r["event_id"] for r in _published_valid(buggy_run))
    twice = {e for e, n in sent.items() if n > 1}
    assert twice
    assert set(buggy_verdict["findings"]["duplicated"]) == twice
