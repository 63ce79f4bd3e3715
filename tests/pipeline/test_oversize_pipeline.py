"""Near-limit payloads through this project's pipeline on the local stack, reconciled.

A run of ordinary events with bulk orders of exactly half the payload limit, 90 % of it, one byte under it and the
limit itself (eventmodel.schema.MAX_PAYLOAD_BYTES), and the two oversize malformed kinds (oversize_batch, an array
of events; oversize_event, one order past the limit) is published to this test's Pub/Sub emulator project and
drained by the pipeline into files, the BigQuery emulator and the dead-letter topic and table. Reconcile then
matches it (exit 0), and each payload is checked in each sink by hand: every near-limit order unchanged in GCS and
in BigQuery, every oversize message dead-lettered with OVERSIZE_PAYLOAD, its bytes whole on the topic.
"""

from __future__ import annotations

import orjson
import pytest
from pipeline_support import files_under
from pubsub_support import pull_all

from endpoints import Endpoints
from eventmodel import resources as names
from eventmodel import rows
from eventmodel.schema import MAX_PAYLOAD_BYTES
from generator.stream import DEAD_LETTER, DEFAULT_LARGE_SIZES, GeneratorConfig
from publisher.manifest import iter_events, payload_digest
from publisher.run import PublishPlan, publish
from publisher.sinks import PubSubTarget
from reconcile.run import ReconcileTarget, reconcile
from workbench.pipeline_run.stream_launcher import LocalSettings, run

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

RUN = "it-oversize"
# Seed 8 sends, in 40 messages, one bulk order of each default size, a duplicate of one of them, and both oversize
# kinds (asserted below).
CONFIG = GeneratorConfig(seed=8, large_rate=0.5, malformed_rate=0.12, duplicate_rate=0.05, malformed_order="cycle",
                         malformed_weights={"oversize_event": 1, "oversize_batch": 1})  # fmt: skip


def test_near_limit_orders_land_unchanged_and_oversize_messages_are_dead_lettered(stack, tmp_path):
    plan = PublishPlan(run_id=RUN, target=PubSubTarget(stack.project, names.TOPIC, stack.pubsub), rate=200, count=40,
                       generator=CONFIG)  # fmt: skip
    assert publish(plan).status == "completed"
    sent = [r for r in iter_events(RUN) if r["outcome"] == "published"]
    bulk = {r["event_id"]: r for r in sent if r["expected"] == "order" and r["duplicate"] != "1" and
            len(r["event"]) >= min(DEFAULT_LARGE_SIZES)}  # fmt: skip
    oversize = {r["event_id"]: r for r in sent if r["expected"] == DEAD_LETTER}
    assert sorted(len(r["event"].encode()) for r in bulk.values()) == sorted(DEFAULT_LARGE_SIZES)
    assert any(r["duplicate"] == "1" and r["event_id"] in bulk for r in sent)  # the pipeline drops the re-send
    assert {r["kind"] for r in oversize.values()} == {"oversize_event", "oversize_batch"}
    assert {r["reason"] for r in oversize.values()} == {"OVERSIZE_PAYLOAD"}

    output_root = str(tmp_path / "output")
    args = ["--project", stack.project, "--output_root", output_root, "--dataset", stack.dataset,
            "--bigquery_emulator_host", stack.bigquery, "--file_flush_seconds", "1"]  # fmt: skip
    summary = run(args, LocalSettings(stop_when_idle=5))
    assert summary.state == "DONE"
    assert summary.progress.dead_lettered == len(oversize)

    report = reconcile(
        RUN,
        ReconcileTarget(output_root=output_root, project=stack.project, dataset=stack.dataset,
                        endpoints=Endpoints(bigquery=stack.bigquery, pubsub=stack.pubsub)),
    )  # fmt: skip
    assert report.exit_code == 0, report.headline()
    assert not report.problems

    # GCS: each near-limit order once, its event exactly the JSON that was published.
    in_files = {}
    for path in files_under(output_root):
        with open(path, "rb") as handle:
            for line in handle:
                record = orjson.loads(line)
                if record["event_id"] in bulk:
                    assert record["event_id"] not in in_files
                    in_files[record["event_id"]] = record["event"]
    assert in_files == {event_id: orjson.loads(r["event"]) for event_id, r in bulk.items()}

    # BigQuery: each near-limit order's row holds every line with its quantity and price, and the total.
    client = stack_client(stack)
    try:
        table = f"{stack.project}.{stack.dataset}.{rows.TABLES['order']}"
        landed = {row["event_id"]: row for row in client.list_rows(table) if row["event_id"] in bulk}
        assert set(landed) == set(bulk)
        for event_id, row in landed.items():
            event = orjson.loads(bulk[event_id]["event"])
            assert [(i["product_id"], i["quantity"], float(i["price"])) for i in row["items"]] == [
                (i["product_id"], i["quantity"], float(i["price"])) for i in event["items"]
            ]
            assert float(row["total_amount"]) == event["total_amount"]
        dead_rows = {row["event_id"]: row for row in client.list_rows(f"{stack.project}.{stack.dataset}.dead_letters")}
    finally:
        client.close()

    # Dead letters: each oversize message on the topic with its bytes whole, in the table cut at the limit.
    subscription = f"projects/{stack.project}/subscriptions/{names.DEAD_LETTER_SUBSCRIPTION}"
    topic = pull_all(subscription, stack.pubsub, expected=len(oversize))
    on_topic = {m.attributes[names.ATTR_EVENT_ID]: m for m in topic}
    assert set(on_topic) == set(oversize)
    for event_id, row in oversize.items():
        message = on_topic[event_id]
        assert message.attributes["dlq_reason"] == "OVERSIZE_PAYLOAD"
        assert payload_digest(message.data) == row["payload_digest"] and len(message.data) > MAX_PAYLOAD_BYTES
        kept = dead_rows[event_id]["payload"]  # BYTES: the client decodes the base64 the row was sent as
        assert dead_rows[event_id]["reason"] == "OVERSIZE_PAYLOAD" and kept == message.data[:MAX_PAYLOAD_BYTES]


def stack_client(stack):
    from endpoints.bigquery import bigquery_client

    return bigquery_client(stack.project, stack.bigquery)
