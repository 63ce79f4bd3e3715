"""Transient Publish errors in the load test: retried with the library's backoff, the final outcome recorded, and a
run with copies left by DEADLINE_EXCEEDED still reconciling; batches larger than 10 MB split into requests.

UNAVAILABLE comes from the emulator's own fault injection (admin service). RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED
come from fault_proxy.FaultProxy in front of the same emulator: the emulator injects UNAVAILABLE only.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import orjson
import pytest
from fault_proxy import FAIL_AFTER, REFUSE_BEFORE, FaultProxy
from loadtest_support import drain_and_reconcile, failures, locust_rows, options

from emulator.pubsub.admin import AdminClient
from emulator.pubsub.faults import FaultConfig, FaultInjector
from eventmodel import resources as names
from loadtest.policy import backoff_cap
from loadtest.run_manifest import iter_attempts
from publisher.manifest import iter_events, run_dir
from workbench.loadtest_run import run_loadtest

pytestmark = pytest.mark.integration


def manifest_of(run_id: str) -> dict:
    return orjson.loads((run_dir(run_id) / "manifest.json").read_bytes())


def rows_of_type(run_id: str, request_type: str) -> dict[str, int]:
    rows = [r for r in locust_rows(run_id) if r["Type"] == request_type]
    return {
        "requests": sum(int(r["Request Count"]) for r in rows),
        "failures": sum(int(r["Failure Count"]) for r in rows),
    }


def topic_of(stack) -> str:
    return f"projects/{stack.project}/topics/{names.TOPIC}"


def assert_waits_within_the_backoff(attempts: list[dict[str, str]]) -> None:
    for row in attempts:
        if row["outcome"] == "retried":
            assert 0 <= float(row["wait_ms"]) <= backoff_cap(int(row["attempt"])) * 1000 + 0.1, row


def seed_failing_first(topic: str, rate: float) -> int:
    """A fault seed whose first Publish to `topic` is refused and second is not (decisions are seeded per topic)."""
    for seed in range(1000):
        injector = FaultInjector(seed, FaultConfig(publish_failure_rate=rate))
        if [injector.fail_publish(topic) for _ in range(2)] == [True, False]:
            return seed
    raise AssertionError("no such seed")


def test_unavailable_is_retried_with_backoff_until_confirmed(fault_stack):
    topic = topic_of(fault_stack)
    with AdminClient(fault_stack.pubsub) as admin:
        admin.set_faults(topic=topic, publish_failure_rate=0.4, seed=seed_failing_first(topic, 0.4))
        run_id, code = run_loadtest(options(fault_stack, users=1, spawn_rate=1, run_time="4s"))
        injected = admin.faults()["counts"]["publish_failure"]
    assert code == 1  # the refused attempts are Locust failures, although every message got through
    attempts = list(iter_attempts(run_id))
    retried = [a for a in attempts if a["outcome"] == "retried"]
    assert injected > 0 and retried and {a["code"] for a in attempts} == {"UNAVAILABLE"}
    assert_waits_within_the_backoff(attempts)
    # Final outcomes: published, except a batch that was waiting to retry when Locust stopped its user.
    events = list(iter_events(run_id))
    outcomes = Counter(e["outcome"] for e in events)
    final_failures = [a for a in attempts if a["outcome"] == "failed"]
    assert outcomes["published"] > 0 and outcomes["failed"] == len(final_failures) <= 5  # the batch at the stop
    retried_ids = {a["event_id"] for a in retried} - {a["event_id"] for a in final_failures}
    assert retried_ids and {e["outcome"] for e in events if e["event_id"] in retried_ids} == {"published"}
    # Locust: one "publish" per message (its final outcome), one "retry" failure per message per refused attempt.
    # Its statistics can miss what happens as the users stop (docs/loadtest.md), so bounds, not equalities.
    publish, retry = rows_of_type(run_id, "publish"), rows_of_type(run_id, "retry")
    assert 0 < retry["requests"] == retry["failures"] <= len(retried)
    assert 0 < publish["requests"] <= len(events) and publish["failures"] <= outcomes["failed"]
    assert {f["Method"] for f in failures(run_id)} <= {"retry", "publish"}
    assert all("UNAVAILABLE" in f["Error"] for f in failures(run_id))
    summary = manifest_of(run_id)["publish_errors"]
    assert summary["retried"] == {"UNAVAILABLE": len(retried)}
    assert summary["confirmed_after_retry"] == len(retried_ids)


def test_deadline_exceeded_and_resource_exhausted_are_retried_and_the_copies_reconcile(fault_stack):
    """DEADLINE_EXCEEDED after the emulator stored the batch: the retry stores it again under new message ids. The
    manifest records one published line per message (the confirmed id); the pipeline deduplicates the copies by
    event id and reconcile finds every event once."""
    with FaultProxy(fault_stack.pubsub, [FAIL_AFTER, REFUSE_BEFORE, FAIL_AFTER]) as proxy:
        run_id, code = run_loadtest(options(fault_stack, users=1, spawn_rate=1, run_time="6s", emulator=proxy.target))
        actions = Counter(action for action, _ in proxy.calls)
    assert code == 1 and actions[FAIL_AFTER] == 2 and actions[REFUSE_BEFORE] == 1
    assert {e["outcome"] for e in iter_events(run_id)} == {"published"}
    summary = manifest_of(run_id)["publish_errors"]
    assert summary["failed"] == {}
    assert summary["retried"] == {"DEADLINE_EXCEEDED": 2 * 5, "RESOURCE_EXHAUSTED": 1 * 5}  # 5 messages a batch
    assert summary["confirmed_after_retry"] == len({a["event_id"] for a in iter_attempts(run_id)})
    published = manifest_of(run_id)["totals"]["published"]
    with AdminClient(fault_stack.pubsub) as admin:
        topic_stats = admin.stats()["topics"][topic_of(fault_stack)]
    assert topic_stats["published"] == published + 2 * 5  # the copies exist in Pub/Sub
    report = drain_and_reconcile(fault_stack, run_id)
    assert report.exit_code == 0, report.headline()
    assert not report.unexpected and not report.problems


def test_when_locust_stops_a_user_its_retries_end_and_the_last_code_is_recorded(fault_stack):
    """Every attempt refused: nothing is confirmed, and the stop (not the 600 s retry deadline) ends the run."""
    with AdminClient(fault_stack.pubsub) as admin:
        admin.set_faults(topic=topic_of(fault_stack), publish_failure_rate=1.0)
        started = time.monotonic()
        run_id, code = run_loadtest(options(fault_stack, users=2, run_time="8s"))
        took = time.monotonic() - started
    assert code == 1 and took < 60
    events = list(iter_events(run_id))
    assert events and {e["outcome"] for e in events} == {"failed"}
    attempts = list(iter_attempts(run_id))
    last = {a["event_id"]: a for a in attempts if a["outcome"] == "failed"}
    assert set(last) == {e["event_id"] for e in events} and {a["code"] for a in last.values()} == {"UNAVAILABLE"}
    tries: defaultdict[str, int] = defaultdict(int)
    for a in attempts:
        tries[a["event_id"]] = max(tries[a["event_id"]], int(a["attempt"]))
    assert max(tries.values()) >= 2
    assert_waits_within_the_backoff(attempts)
    assert manifest_of(run_id)["publish_errors"]["failed"] == {"UNAVAILABLE": len(events)}
    publish = rows_of_type(run_id, "publish")
    assert publish["requests"] == publish["failures"] <= len(events)


def test_a_batch_over_10_mb_is_split_into_requests_within_the_limit(fault_stack):
    """15 messages of about 1 MB each (the catalogue's oversize_batch kind): one 15 MB request would be refused
    (INVALID_ARGUMENT from the emulator, as from Pub/Sub); split, every message is published."""
    extra = ["--malformed-kinds", "oversize_batch=1"]
    with FaultProxy(fault_stack.pubsub, []) as proxy:
        run_id, code = run_loadtest(options(fault_stack, users=1, spawn_rate=1, run_time="5s", batch_size=15,
                                            user_rate=1, malformed_rate=1.0, duplicate_rate=0.0, emulator=proxy.target,
                                            extra=extra))  # fmt: skip
        sizes = [size for _, size in proxy.calls]
    assert code == 0
    events = list(iter_events(run_id))
    # A request holds 9 of these at most; the rest of a batch stopped mid-way is never sent, hence not recorded.
    assert len(events) >= 9 and {e["outcome"] for e in events} == {"published"}
    assert {e["kind"] for e in events} == {"oversize_batch"}
    assert len(sizes) >= 2 and max(sizes) <= 10_000_000 and sizes[0] > 9_000_000
