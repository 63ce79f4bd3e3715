"""Reconcile's own subscription on the dead-letter topic (reconcile.sources), against real Pub/Sub emulators.

- as created (by `workbench up` and by reconcile itself): it never expires (an expiration policy with no ttl) and
  retains acked messages for an explicit DEAD_LETTER_RETENTION; one made by an older version is brought up to date;
- two reconciles reading at once, from two processes, each see every dead letter (the lock);
- a run older than the retention, or than the subscription, is refused for the topic (DeadLetterTopicGap),
  never read as dead letters missing from it.

Each test works in a project of its own on the shared emulators (`backend`: this project's and, where gcloud and
java are installed, Google's), so the fixed resource names never collide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from endpoints.pubsub import publisher_client, subscriber_client
from eventmodel import resources as names
from reconcile import sources
from workbench.localstack.emulators import Emulator
from workbench.localstack.stack import create_pubsub_resources

pytestmark = pytest.mark.integration

SEVEN_DAYS = 7 * 24 * 3600


@pytest.fixture
def project() -> Iterator[str]:
    """A project of the test's own; the lock files reading it left behind are removed afterwards."""
    name = f"reconcile-sub-{uuid.uuid4().hex[:8]}"
    yield name
    for lock in sources.lock_path(None, name).parent.glob(f"*-{name}-*.lock"):
        lock.unlink(missing_ok=True)


def _subscription_pb(emulator: Emulator, project: str, name: str = names.DEAD_LETTER_RECONCILE_SUBSCRIPTION):
    from google.pubsub_v1.types import Subscription

    subscriber = subscriber_client(emulator.target)
    try:
        found = subscriber.get_subscription(request={"subscription": f"projects/{project}/subscriptions/{name}"})
        return Subscription.pb(found)
    finally:
        subscriber.close()


def _dead_letter_topic(emulator: Emulator, project: str) -> str:
    publisher = publisher_client(emulator.target)
    try:
        return publisher.create_topic(request={"name": f"projects/{project}/topics/{names.DEAD_LETTER_TOPIC}"}).name
    finally:
        publisher.transport.close()


def _publish_dead_letters(emulator: Emulator, topic: str, count: int, run_id: str) -> set[str]:
    """`count` dead letters of run_id on the dead-letter topic; their message ids."""
    publisher = publisher_client(emulator.target)
    try:
        futures = [
            publisher.publish(
                topic,
                f'{{"broken": {i}'.encode(),
                **{names.ATTR_RUN_ID: run_id, names.ATTR_EVENT_ID: f"e-{i}", names.ATTR_DLQ_REASON: "INVALID_JSON"},
            )
            for i in range(count)
        ]
        return {f.result(timeout=60) for f in futures}
    finally:
        publisher.stop()


def _assert_never_expires_and_retains(pb) -> None:
    assert pb.HasField("expiration_policy"), "no expiration policy: Pub/Sub's default deletes it after 31 idle days"
    assert not pb.expiration_policy.HasField("ttl"), f"it expires after {pb.expiration_policy.ttl.seconds} s idle"
    assert pb.retain_acked_messages
    assert pb.message_retention_duration.seconds == sources.DEAD_LETTER_RETENTION.total_seconds() == SEVEN_DAYS


# ------------------------------------------------------------------------------------------------ as created


def test_the_create_request_states_retention_and_expiration_explicitly():
    """The service fills a 7-day retention and a 31-day expiration into a request that omits them, so what is
    created cannot show that they were asked for: the request must."""
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    request = sources.reconcile_subscription_request("p", now)
    assert request["expiration_policy"] == {}
    assert request["message_retention_duration"] == {"seconds": SEVEN_DAYS}
    assert request["retain_acked_messages"] is True
    assert request["labels"] == {sources.CREATED_LABEL: str(int(now.timestamp()))}


def test_workbench_up_creates_it_never_expiring_with_explicit_retention(backend: Emulator, project: str):
    before = int(time.time())
    create_pubsub_resources(backend.target, project)
    pb = _subscription_pb(backend, project)
    _assert_never_expires_and_retains(pb)
    assert before <= int(pb.labels[sources.CREATED_LABEL]) <= time.time()
    assert pb.topic == f"projects/{project}/topics/{names.DEAD_LETTER_TOPIC}"
    for pipelines in (names.SUBSCRIPTION, names.DEAD_LETTER_SUBSCRIPTION):  # the pipeline's own never expire either
        assert _subscription_pb(backend, project, pipelines).HasField("expiration_policy"), pipelines
        assert not _subscription_pb(backend, project, pipelines).expiration_policy.HasField("ttl"), pipelines
    # A run started right after `up` is read from a minute before its start (reconcile.run): within reach.
    assert sources.read_dead_letter_topic(project, backend.target, datetime.now(UTC) - timedelta(seconds=65)) == []


def test_reconcile_creates_it_the_same_way_when_missing(backend: Emulator, project: str):
    _dead_letter_topic(backend, project)
    subscriber = subscriber_client(backend.target)
    try:
        made = sources.ensure_reconcile_subscription(subscriber, project)
    finally:
        subscriber.close()
    _assert_never_expires_and_retains(_subscription_pb(backend, project))
    assert sources.reach_of(made).created is not None


def test_one_made_by_an_older_version_is_brought_up_to_date(backend: Emulator, project: str):
    """The old request had no expiration policy; one created by hand may not retain acked messages either. Then
    what it acked before is gone, and its label says since when it holds every dead letter. The official emulator
    refuses to update expiration_policy and labels (the real service does not): reconcile says so, changes
    nothing, and a subscription that does not retain acked messages is not used to judge a run."""
    topic = _dead_letter_topic(backend, project)
    path = f"projects/{project}/subscriptions/{names.DEAD_LETTER_RECONCILE_SUBSCRIPTION}"
    steps: list[str] = []
    subscriber = subscriber_client(backend.target)
    try:
        subscriber.create_subscription(request={"name": path, "topic": topic, "labels": {"team": "data"}})
        assert not sources.reach_of(_subscription_pb(backend, project)).never_expires
        before = int(time.time())
        sources.ensure_reconcile_subscription(subscriber, project, steps.append)
    finally:
        subscriber.close()
    pb = _subscription_pb(backend, project)
    assert pb.labels["team"] == "data"
    if backend.name == "official-pubsub":
        assert not pb.retain_acked_messages and not pb.HasField("expiration_policy")
        assert len(steps) == 2 and all("--expiration-period=never --retain-acked-messages" in s for s in steps)
        with pytest.raises(sources.DeadLetterTopicGap, match="does not retain acked messages"):
            sources.read_dead_letter_topic(project, backend.target, datetime.now(UTC) - timedelta(minutes=5))
    else:
        assert steps == []
        assert pb.HasField("expiration_policy") and not pb.expiration_policy.HasField("ttl")
        assert pb.retain_acked_messages
        assert before <= int(pb.labels[sources.CREATED_LABEL]) <= time.time()


# ------------------------------------------------------------------------------------------ concurrent readers

READER = """
import json, sys, time
from datetime import datetime
from reconcile.sources import read_dead_letter_topic

project, emulator, since, start_at, out = sys.argv[1:6]
time.sleep(max(0.0, float(start_at) - time.time()))
letters = read_dead_letter_topic(project, emulator, datetime.fromisoformat(since))
with open(out, "w") as f:
    json.dump([row["location"].rsplit("/", 1)[1] for row in letters], f)
"""


def test_two_reconciles_at_once_each_read_every_dead_letter(backend: Emulator, project: str, tmp_path: Path):
    """Two processes seek and pull the same subscription at the same moment. Unlocked, a pull hands each message to
    one of them and each seek resets the other: each would see part of the dead letters."""
    create_pubsub_resources(backend.target, project)
    since = datetime.now(UTC) - timedelta(seconds=30)
    topic = f"projects/{project}/topics/{names.DEAD_LETTER_TOPIC}"
    sent = _publish_dead_letters(backend, topic, 3000, run_id="run-a")
    start_at = time.time() + 12  # both processes have imported the client libraries by then
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, project, backend.target, since.isoformat(), str(start_at),
             str(tmp_path / f"reader-{n}.json")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for n in (1, 2)
    ]  # fmt: skip
    for reader in readers:
        try:
            _, err = reader.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            for r in readers:
                r.kill()
            raise
        assert reader.returncode == 0, err[-2000:]
    for n in (1, 2):
        read = json.loads((tmp_path / f"reader-{n}.json").read_text())
        assert set(read) == sent, f"reader {n} saw {len(set(read) & sent):,} of the {len(sent):,} dead letters"


def test_a_reconcile_waits_for_the_lock_and_names_its_holder(workbench_emulator: Emulator, project: str):
    steps: list[str] = []
    held = sources.reading_lock(workbench_emulator.target, project)
    second = sources.reading_lock(workbench_emulator.target, project, steps.append, wait_s=0.5)
    with held, pytest.raises(sources.ReconcileError) as refused, second:
        pass
    assert f"pid {os.getpid()}" in refused.value.message
    assert "--no-dead-letter-topic" in refused.value.fix
    assert steps and steps[0].startswith("waiting for another reconcile")
    assert not sources.lock_path(workbench_emulator.target, project).exists()  # its holder removed it
    with sources.reading_lock(workbench_emulator.target, project, wait_s=0.5):  # released: free again
        pass


HOLDER = """
import sys, time
from reconcile.sources import reading_lock

with reading_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_reconcile_killed_while_reading_leaves_no_lock_behind(project: str):
    """kill -9 runs no cleanup: the kernel drops the flock, and the file left behind is taken over."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "127.0.0.1:1", project], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = sources.reading_lock("127.0.0.1:1", project, wait_s=0.3)
        with pytest.raises(sources.ReconcileError, match=f"pid {holder.pid}"), second:
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert sources.lock_path("127.0.0.1:1", project).exists()
    with sources.reading_lock("127.0.0.1:1", project, wait_s=2):
        pass


# ------------------------------------------------------------------------------------------------ too old


def test_a_run_older_than_the_retention_is_not_judged_on_the_topic(backend: Emulator, project: str):
    """The subscription has existed for 30 days; a run that began 8 days ago had its first dead letters dropped
    after 7: the topic must refuse to judge it, not report them missing."""
    topic = _dead_letter_topic(backend, project)
    subscriber = subscriber_client(backend.target)
    try:
        month_ago = datetime.now(UTC) - timedelta(days=30)
        subscriber.create_subscription(request=sources.reconcile_subscription_request(project, month_ago))
    finally:
        subscriber.close()
    _publish_dead_letters(backend, topic, 3, run_id="run-old")
    with pytest.raises(sources.DeadLetterTopicGap) as gap:
        sources.read_dead_letter_topic(project, backend.target, datetime.now(UTC) - timedelta(days=8))
    assert "keeps dead letters for 7.0 days" in gap.value.message
    assert "began 8.0 days ago" in gap.value.message
    assert "--no-dead-letter-topic" in gap.value.fix
    # A run of yesterday is within reach, and reads.
    letters = sources.read_dead_letter_topic(project, backend.target, datetime.now(UTC) - timedelta(days=1))
    assert {r["run_id"] for r in letters} == {"run-old"} and len(letters) == 3


def test_a_run_older_than_the_subscription_is_not_judged_on_the_topic(backend: Emulator, project: str):
    """Reconcile creates the subscription when it is missing (GCP without the runbook): the dead letters of a run
    that began before never reached it."""
    _dead_letter_topic(backend, project)
    with pytest.raises(sources.DeadLetterTopicGap) as gap:
        sources.read_dead_letter_topic(project, backend.target, datetime.now(UTC) - timedelta(hours=1))
    assert "after this run began" in gap.value.message
    assert "never reached it" in gap.value.message
    assert "--no-dead-letter-topic" in gap.value.fix


def test_the_gap_rule_at_its_edges():
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    reach = sources.DeadLetterReach(
        retention=timedelta(days=7), created=now - timedelta(days=20), retains_acked=True, never_expires=True
    )
    edge = now - timedelta(days=7) + sources.RETENTION_MARGIN
    assert sources.topic_gap(edge, reach, now) is None
    assert sources.topic_gap(edge - timedelta(seconds=1), reach, now) is not None
    # `since` is a minute before the run: a subscription made by `workbench up` just before the run has it all.
    made = sources.DeadLetterReach(timedelta(days=7), now, True, True)
    assert sources.topic_gap(now - timedelta(seconds=65), made, now) is None
    assert sources.topic_gap(now - timedelta(minutes=3), made, now) is not None
    # Unknown creation (an older version's subscription, kept): only the retention decides.
    unknown = sources.DeadLetterReach(timedelta(days=7), None, True, True)
    assert sources.topic_gap(now - timedelta(days=6), unknown, now) is None


def test_a_lock_on_a_file_its_holder_removed_is_not_taken_as_held(tmp_path: Path):
    """A waiter may lock the file its last holder removed on release; it must see that and lock the one now at
    the path, or two reconciles would hold 'the' lock at once."""
    path = tmp_path / "x.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert sources._is_file_at(fd, path)
        path.unlink()
        assert not sources._is_file_at(fd, path)
        path.touch()  # the next reconcile's file
        assert not sources._is_file_at(fd, path)
    finally:
        os.close(fd)
