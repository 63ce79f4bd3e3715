"""`workbench publish` into a real Pub/Sub emulator process, then everything pulled back and compared with the
run manifest: counts, attributes and payload bytes. Runs against this project's emulator and, where gcloud is
installed, the official one (the `backend` fixture)."""

from __future__ import annotations

import collections
import time

import pytest
from pubsub_support import pull_all

from eventmodel import resources as names
from eventmodel.validate import Accepted, validate
from generator.stream import GeneratorConfig
from publisher.manifest import iter_events, payload_digest, read_manifest
from publisher.run import PublishPlan, publish
from publisher.sinks import PubSubTarget

pytestmark = pytest.mark.integration

PROJECT = "p"


def test_everything_published_arrives_with_its_attributes_and_bytes(backend, make_stack, request):
    project = make_stack(request, f"{PROJECT}-{backend.name}", pubsub=backend, bigquery=False).project
    plan = PublishPlan(
        run_id=f"it-{backend.name}",
        target=PubSubTarget(project, names.TOPIC, backend.target),
        rate=4000,
        count=3000,
        generator=GeneratorConfig(seed=11, malformed_rate=0.1, duplicate_rate=0.03),
    )
    result = publish(plan)
    assert result.status == "completed"
    assert result.totals.published == 3000 and result.totals.failed == 0

    manifest = read_manifest(plan.run_id)
    assert manifest["status"] == "completed"
    assert manifest["totals"]["published"] == 3000
    rows = list(iter_events(plan.run_id))
    assert len(rows) == 3000
    counts = manifest["counts"]
    assert counts["expected:dead_letter"] == sum(r["expected"] == "dead_letter" for r in rows) > 0
    assert counts["duplicates"] == sum(r["duplicate"] == "1" for r in rows) > 0

    subscription = f"projects/{project}/subscriptions/{names.SUBSCRIPTION}"
    messages = pull_all(subscription, backend.target, expected=3000, timeout=60)
    assert len(messages) == 3000

    by_message_id = {r["message_id"]: r for r in rows}
    assert len(by_message_id) == 3000, "every publish got its own message id"
    sent_per_event = collections.Counter(r["event_id"] for r in rows)
    got_per_event = collections.Counter(m.attributes[names.ATTR_EVENT_ID] for m in messages)
    assert got_per_event == sent_per_event
    for message in messages:
        row = by_message_id[message.message_id]
        attributes = dict(message.attributes)
        assert attributes[names.ATTR_EVENT_ID] == row["event_id"]
        assert attributes[names.ATTR_RUN_ID] == plan.run_id
        assert attributes[names.ATTR_SCHEMA_VERSION]
        assert payload_digest(message.data) == row["payload_digest"]
        # The classification travels only in the manifest.
        assert row["reason"] not in attributes.values() or not row["reason"]
        verdict = validate(message.data)
        if row["expected"] == "dead_letter":
            assert verdict.reason == row["reason"], (row, verdict)
        else:
            assert isinstance(verdict, Accepted) and verdict.event_type == row["expected"]
            assert attributes[names.ATTR_EVENT_TYPE] == row["expected"]


def test_several_worker_processes_share_the_rate_and_the_count(
    workbench_emulator, make_stack, request, tmp_path, monkeypatch
):
    project = make_stack(request, f"{PROJECT}-workers", bigquery=False).project
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))  # after the stack's: the run is read from tmp_path/runs
    plan = PublishPlan(
        run_id="workers",
        target=PubSubTarget(project, names.TOPIC, workbench_emulator.target),
        rate=3000,
        count=4001,
        workers=2,
        generator=GeneratorConfig(seed=5),
    )
    result = publish(plan)
    assert result.status == "completed", result.totals.errors
    assert result.totals.published == 4001
    assert sorted(p.name for p in (tmp_path / "runs" / "workers").glob("events-*.csv")) == [
        "events-0.csv",
        "events-1.csv",
    ]
    rows = list(iter_events("workers"))
    assert len(rows) == 4001 and len({r["event_id"] for r in rows}) == 4001
    subscription = f"projects/{project}/subscriptions/{names.SUBSCRIPTION}"
    messages = pull_all(subscription, workbench_emulator.target, 4001, timeout=60)
    assert sorted(m.attributes[names.ATTR_EVENT_ID] for m in messages) == sorted(r["event_id"] for r in rows)


def test_a_missing_topic_is_a_clear_error_naming_the_fix(workbench_emulator):
    from publisher.errors import PublishError
    from publisher.sinks import check_pubsub

    started = time.monotonic()
    with pytest.raises(PublishError) as raised:
        check_pubsub(PubSubTarget("p-empty", names.TOPIC, workbench_emulator.target))
    assert time.monotonic() - started < 10
    assert "does not exist" in raised.value.message
    assert "workbench up" in raised.value.fix
