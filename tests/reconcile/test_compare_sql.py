"""The comparison on small hand-made tables, in both dialects: DuckDB (transpiled) and the BigQuery emulator.

Every diagnosis has an event built to earn it, and both engines must give exactly the expected verdicts.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

import pytest

from publisher.manifest import EVENT_COLUMNS
from reconcile import queries as Q
from reconcile.engine import DEAD_LETTER_COLUMNS, SINK_EVENT_COLUMNS, BigQueryEngine, DuckDBEngine

RUN = "20260101-000000-test"
T0 = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
CHECKED = {Q.GCS: True, Q.BIGQUERY: True, Q.DEAD_LETTER_TABLE: True, Q.DEAD_LETTER_TOPIC: True}


def sent(event_id, expected="order", reason="", kind="", duplicate=""):
    event_type = "order" if expected == "dead_letter" else expected
    return {"event_id": event_id, "expected": expected, "event_type": event_type, "reason": reason, "kind": kind,
            "event_time": "", "duplicate": duplicate, "outcome": "published", "message_id": f"m-{event_id}",
            "payload_digest": f"p-{event_id}", "canonical_digest": f"c-{event_id}"}  # fmt: skip


def held(event_id, sink, event_type="order", **changes):
    row = {"sink": sink, "location": f"{sink}:{event_id}", "event_id": event_id, "message_id": f"m-{event_id}",
           "run_id": RUN, "publish_time": T0, "landed_time": T0 + timedelta(milliseconds=250), "event_type": event_type,
           "container_type": event_type, "event_minute": "202601010000",
           "container_minute": "202601010000" if sink == Q.GCS else None, "name_ok": True,
           "canonical_digest": f"c-{event_id}"}  # fmt: skip
    row.update(changes)
    return row


def lettered(event_id, sink, reason, **changes):
    row = {"sink": sink, "location": f"{sink}:{event_id}", "event_id": event_id, "source_message_id": f"m-{event_id}",
           "run_id": RUN, "reason": reason, "stage": "validate", "payload_digest": f"p-{event_id}",
           "payload_cut": False, "publish_time": T0, "landed_time": T0 + timedelta(milliseconds=100)}  # fmt: skip
    row.update(changes)
    return row


def both(event_id, event_type="order"):
    return [held(event_id, Q.GCS, event_type), held(event_id, Q.BIGQUERY, event_type)]


def letters(event_id, reason):
    return [lettered(event_id, Q.DEAD_LETTER_TABLE, reason), lettered(event_id, Q.DEAD_LETTER_TOPIC, reason)]


MANIFEST = [
    sent("v1"), sent("v1", duplicate="1"), sent("v2"), sent("v3", "inventory"), sent("v4"), sent("v5"),
    sent("v6", "user_activity"), sent("v7"), sent("v8"), sent("v9"), sent("v10"), sent("v11"),
    sent("m1", "dead_letter", "NOT_JSON", "cut_off"), sent("m2", "dead_letter", "BAD_ENUM", "foreign_enum"),
    sent("m3", "dead_letter", "BAD_UUID", "braced_uuid"), sent("m4", "dead_letter", "NOT_JSON", "cut_off"),
    sent("m5", "dead_letter", "NOT_JSON", "cut_off"), sent("m6", "dead_letter", "OVERSIZE_PAYLOAD", "oversize"),
]  # fmt: skip
SINK_EVENTS = [
    *both("v1"),
    held("v2", Q.BIGQUERY),
    held("v3", Q.GCS, "inventory"),
    *both("v4"), held("v4", Q.GCS, location="gcs:v4-again", message_id="m-v4-republished"),  # dedup missed it
    *both("v10"), held("v10", Q.GCS, location="gcs:v10-again"),  # the same message written again: a redelivery
    held("v11", Q.GCS),  # BigQuery stayed down past the limit: the row went to the dead letter (below)
    held("v5", Q.GCS, container_minute="202601010001"), held("v5", Q.BIGQUERY),
    held("v6", Q.GCS, "user_activity"), held("v6", Q.BIGQUERY, "user_activity", canonical_digest="c-changed"),
    *both("v8"), held("v8", Q.BIGQUERY),
    held("v9", Q.GCS, container_type="inventory"), held("v9", Q.BIGQUERY),
    held("m2", Q.GCS),
    held("u1", Q.GCS),
    held("f1", Q.BIGQUERY, run_id=None, message_id="foreign-1"),
]  # fmt: skip
DEAD_LETTERS = [
    *letters("m1", "NOT_JSON"), *letters("m1", "NOT_JSON"),  # a duplicate delivery dead-lettered twice: fine
    *letters("m2", "BAD_ENUM"),
    lettered("v11", Q.DEAD_LETTER_TABLE, "BIGQUERY_INSERT_FAILED", stage="bigquery"),
    lettered("v11", Q.DEAD_LETTER_TOPIC, "BIGQUERY_INSERT_FAILED", stage="bigquery"),
    *letters("m3", "MISSING_FIELD"),
    lettered("m4", Q.DEAD_LETTER_TABLE, "NOT_JSON", payload_digest="p-other"),
    lettered("m4", Q.DEAD_LETTER_TOPIC, "NOT_JSON"),
    lettered("m6", Q.DEAD_LETTER_TABLE, "OVERSIZE_PAYLOAD", payload_digest="p-cut", payload_cut=True),
    lettered("m6", Q.DEAD_LETTER_TOPIC, "OVERSIZE_PAYLOAD"),
]  # fmt: skip
EXPECTED_PROBLEMS = {
    "v2": "missing_in_gcs", "v3": "missing_in_bigquery", "v4": "duplicated", "v5": "misplaced", "v6": "altered",
    "v7": "missing", "v9": "misplaced", "m2": "accepted", "m3": "other_reason", "m4": "altered", "m5": "missing",
}  # fmt: skip


def compare(engine) -> dict:
    found = Q.compare(engine, RUN, CHECKED)  # the sequence reconcile.run runs
    return {
        "problems": {r["event_id"]: r["problem"] for r in found["problems"]},
        "first": found["problems"][0]["problem"],
        "by_type": {
            r["event_type"]: {k: int(v or 0) for k, v in r.items() if k != "event_type"} for r in found["by_type"]
        },
        "kinds": {r["kind"]: (int(r["sent"]), int(r["ok"] or 0)) for r in found["by_kind"]},
        "raw": [r["event_id"] for r in found["raw_duplicates"]],
        "unexpected": [(r["sink"], r["event_id"]) for r in found["unexpected"]],
        "foreign": [(r["sink"], r["message_id"]) for r in found["foreign"]],
        "latency": {r["sink"]: (int(r["n"]), int(r["max"])) for r in found["latency"]},
        "histogram": {r["sink"] for r in found["histogram"]},
        "findings": {r["finding"] for r in found["findings"]},
    }


def check(result: dict) -> None:
    assert result["problems"] == EXPECTED_PROBLEMS
    assert result["first"] == "accepted"  # the worst failure is shown first
    assert result["by_type"]["order"]["expected"] == 9  # v1 twice in the manifest counts once
    assert result["by_type"]["order"]["missing"] == 2 and result["by_type"]["order"]["gcs_duplicated"] == 1
    assert result["by_type"]["order"]["misplaced"] == 2 and result["by_type"]["user_activity"]["altered"] == 1
    assert result["by_type"]["order"]["gcs_redelivered"] == 1  # v10
    assert result["by_type"]["order"]["sink_gave_up"] == 1  # v11: dead-lettered by the sink, not lost
    assert result["by_type"]["order"]["ok"] == 4  # v1, v8, v10, v11 (raw duplicates, redeliveries, sink letters)
    assert result["kinds"] == {"cut_off": (3, 1), "foreign_enum": (1, 0), "braced_uuid": (1, 0), "oversize": (1, 1)}
    assert result["raw"] == ["v10", "v8"]
    assert result["unexpected"] == [(Q.GCS, "u1")]
    assert result["foreign"] == [(Q.BIGQUERY, "foreign-1")]
    assert result["latency"][Q.GCS][1] == 250 and result["latency"][Q.DEAD_LETTER_TABLE][1] == 100
    assert result["histogram"] == {Q.GCS, Q.BIGQUERY}  # the run's own copies (f1 is foreign)
    assert result["findings"] == set(EXPECTED_PROBLEMS.values())  # each problem is a finding of its event


def test_the_comparison_on_duckdb(tmp_path):
    path = tmp_path / "events-0.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, EVENT_COLUMNS)
        writer.writeheader()
        writer.writerows(MANIFEST)
    engine = DuckDBEngine()
    try:
        engine.load_manifest([path])
        engine.load_known_runs([RUN])
        engine._insert_rows("sink_events", SINK_EVENTS, SINK_EVENT_COLUMNS)
        engine.load_dead_letter_rows(DEAD_LETTERS)
        check(compare(engine))
    finally:
        engine.close()


@pytest.mark.integration
def test_the_comparison_on_the_bigquery_emulator(bigquery_emulator):
    engine = BigQueryEngine(bigquery_emulator.client(), "reconcile-sql", "reconcile_scratch")
    try:
        engine.load_rows("manifest", MANIFEST, dict.fromkeys(EVENT_COLUMNS, "STRING"))
        engine.load_rows("known_runs", [{"run_id": RUN}], {"run_id": "STRING"})
        engine.load_rows("sink_events", SINK_EVENTS, SINK_EVENT_COLUMNS)
        engine.load_rows("dead_letters", DEAD_LETTERS, DEAD_LETTER_COLUMNS)
        check(compare(engine))
    finally:
        engine.close()


def test_a_sink_left_out_is_not_missing(tmp_path):
    """--no-bigquery: an event only in GCS is fine; one in neither is still missing."""
    engine = DuckDBEngine()
    path = tmp_path / "events-0.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, EVENT_COLUMNS)
        writer.writeheader()
        writer.writerows([sent("a"), sent("b")])
    try:
        engine.load_manifest([path])
        engine.load_known_runs([RUN])
        engine._insert_rows("sink_events", [held("a", Q.GCS)], SINK_EVENT_COLUMNS)
        checked = {Q.GCS: True, Q.BIGQUERY: False, Q.DEAD_LETTER_TABLE: False, Q.DEAD_LETTER_TOPIC: False}
        problems = Q.compare(engine, RUN, checked)["problems"]
        assert {r["event_id"]: r["problem"] for r in problems} == {"b": "missing"}
    finally:
        engine.close()


# A replay (publish --replay) sends an earlier run's event ids again; a deduplicating pipeline keeps the earlier
# run's copies, which reconcile reads beside the run's own (they differ in time, so never compare as altered).
EARLIER = "20251231-000000-orig"
REPLAY_MANIFEST = [sent("r1"), sent("r2"), sent("r3"), sent("r4"), sent("rm1", "dead_letter", "NOT_JSON", "cut_off")]
REPLAY_SINK_EVENTS = [
    *(held("r1", sink, run_id=EARLIER, message_id="m-old-r1", canonical_digest="c-old") for sink in Q.EVENT_SINKS),
    # r2: past the dedup window the pipeline wrote it again: this run's copy beside the earlier one, not a duplicate
    *both("r2"), *(held("r2", sink, run_id=EARLIER, message_id="m-old-r2") for sink in Q.EVENT_SINKS),
    held("r4", Q.GCS), held("r4", Q.BIGQUERY, run_id=EARLIER, message_id="m-old-r4"),
]  # fmt: skip
REPLAY_DEAD_LETTERS = [
    lettered("rm1", sink, "NOT_JSON", run_id=EARLIER, payload_digest="p-old") for sink in Q.DEAD_LETTER_SINKS
]


def replay_verdict(engine, replay: bool) -> tuple[dict, dict, dict]:
    found = Q.compare(engine, RUN, CHECKED, replay)
    problems = {r["event_id"]: r["problem"] for r in found["problems"]}
    by_type = {r["event_type"]: r for r in found["by_type"]}
    by_kind = {r["kind"]: r for r in found["by_kind"]}
    return problems, by_type, by_kind


def load_replay(engine, tmp_path) -> None:
    path = tmp_path / "events-0.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, EVENT_COLUMNS)
        writer.writeheader()
        writer.writerows(REPLAY_MANIFEST)
    engine.load_manifest([path])
    engine.load_known_runs([RUN, EARLIER])
    engine._insert_rows("sink_events", REPLAY_SINK_EVENTS, SINK_EVENT_COLUMNS)
    engine.load_dead_letter_rows(REPLAY_DEAD_LETTERS)


@pytest.mark.parametrize("replay", [True, False])
def test_events_held_under_the_replayed_runs_id(tmp_path, replay):
    engine = DuckDBEngine()
    try:
        load_replay(engine, tmp_path)
        problems, by_type, by_kind = replay_verdict(engine, replay)
    finally:
        engine.close()
    earlier = {} if replay else {"r1": "id_reused", "rm1": "id_reused"}
    assert problems == {"r3": "missing", **earlier}  # r2 and r4 are whole; r3 is nowhere
    assert int(by_type["order"]["held_by_earlier_run"]) == 1  # r1
    assert int(by_type["order"]["missing"]) == 1 and int(by_type["order"]["gcs_duplicated"]) == 0
    assert int(by_kind["cut_off"]["held_by_earlier_run"]) == 1 and int(by_kind["cut_off"]["missing"]) == 0


@pytest.mark.integration
def test_events_held_under_the_replayed_runs_id_on_the_bigquery_emulator(bigquery_emulator):
    engine = BigQueryEngine(bigquery_emulator.client(), "reconcile-sql", "reconcile_replay")
    try:
        engine.load_rows("manifest", REPLAY_MANIFEST, dict.fromkeys(EVENT_COLUMNS, "STRING"))
        engine.load_rows("known_runs", [{"run_id": RUN}, {"run_id": EARLIER}], {"run_id": "STRING"})
        engine.load_rows("sink_events", REPLAY_SINK_EVENTS, SINK_EVENT_COLUMNS)
        engine.load_rows("dead_letters", REPLAY_DEAD_LETTERS, DEAD_LETTER_COLUMNS)
        assert replay_verdict(engine, True)[0] == {"r3": "missing"}
        assert replay_verdict(engine, False)[0] == {"r1": "id_reused", "r3": "missing", "rm1": "id_reused"}
    finally:
        engine.close()
