"""Delivery semantics of the store, in process (no gRPC): leases, nacks, ordering, backoff, dead letter,
faults, seek, retention and the journal's replay. Time is a FakeClock the tests move: nothing sleeps."""

from __future__ import annotations

import pytest
from google.pubsub_v1.types import PubsubMessage, ReceivedMessage

from emulator.pubsub.clock import Clock
from emulator.pubsub.errors import PubSubError
from emulator.pubsub.faults import FaultConfig, FaultInjector
from emulator.pubsub.iam import EMPTY_ETAG, PolicyPb
from emulator.pubsub.journal import open_journal
from emulator.pubsub.snapshots import SNAPSHOT_LIFETIME
from emulator.pubsub.state import Stream, SubscriptionPb, TopicPb
from emulator.pubsub.store import Store

TOPIC = "projects/p/topics/topic"
SUB = "projects/p/subscriptions/sub"
ReceivedPb = ReceivedMessage.pb()
MessagePb = PubsubMessage.pb()


class FakeClock:
    """Time that moves only when a test says so (monotonic from 0, wall from a fixed epoch)."""

    EPOCH = 1_700_000_000.0

    def __init__(self) -> None:
        self.elapsed = 0.0

    def monotonic(self) -> float:
        return self.elapsed

    def wall(self) -> float:
        return self.EPOCH + self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds

    def for_store(self) -> Clock:
        return Clock(self.monotonic, self.wall)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_store(faults: FaultInjector | None = None, clock: FakeClock | None = None, **sub_settings) -> Store:
    store = Store(faults, clock=clock.for_store() if clock else Clock())
    store.create_topic(TopicPb(name=TOPIC))
    store.create_subscription(SubscriptionPb(name=SUB, topic=TOPIC, **sub_settings))
    return store


def publish(store: Store, *datas: bytes, key: str = "", **attributes: str) -> list[str]:
    messages = [MessagePb(data=d, ordering_key=key, attributes=attributes) for d in datas]
    return store.publish(TOPIC, messages)


def pull(store: Store, n: int = 100, sub: str = SUB, stream: Stream | None = None) -> list:
    received, _ = store.pull(sub, n, wait=0.0, stream=stream)
    return [ReceivedPb.FromString(r) for r in received]


def datas(received) -> list[bytes]:
    return [r.message.data for r in received]


def test_published_message_carries_id_and_publish_time(clock):
    store = make_store(clock=clock)
    clock.advance(2.5)
    [message_id] = publish(store, b"a")
    [r] = pull(store)
    assert r.message.message_id == message_id
    assert r.message.publish_time.seconds + r.message.publish_time.nanos / 1e9 == clock.wall()
    assert r.ack_id


def test_ack_removes_and_nack_redelivers():
    store = make_store()
    publish(store, b"a", b"b")
    first, second = pull(store)
    assert store.stats()["subscriptions"][SUB]["outstanding"] == 2
    store.acknowledge(SUB, [first.ack_id])
    store.modify_ack_deadline(SUB, [second.ack_id], 0)
    assert datas(pull(store)) == [b"b"]
    assert pull(store) == []
    assert store.stats()["subscriptions"][SUB]["outstanding"] == 1


def test_stale_modack_is_ignored():
    store = make_store()
    publish(store, b"a")
    [first] = pull(store)
    store.modify_ack_deadline(SUB, [first.ack_id], 0)
    [second] = pull(store)
    assert second.ack_id != first.ack_id
    store.modify_ack_deadline(SUB, [first.ack_id], 0)  # refers to the earlier delivery: no effect
    assert pull(store) == []


def test_lease_expiry_redelivers(clock):
    store = make_store(clock=clock)  # the default ack deadline: 10 s
    publish(store, b"a")
    [first] = pull(store)
    clock.advance(9.9)
    assert pull(store) == []
    clock.advance(0.2)
    [again] = pull(store)
    assert again.message.message_id == first.message.message_id


def test_acked_message_stays_gone_after_its_lease_would_have_ended(clock):
    store = make_store(clock=clock)
    publish(store, b"a")
    [first] = pull(store)
    store.acknowledge(SUB, [first.ack_id])
    clock.advance(60)
    store.sweep()
    assert pull(store) == []


def test_modack_extends_the_lease_past_its_first_deadline(clock):
    store = make_store(clock=clock)
    publish(store, b"a")
    [first] = pull(store)
    store.modify_ack_deadline(SUB, [first.ack_id], 60)
    clock.advance(30)
    assert pull(store) == []  # the first lease (10 s) is over, the extended one is not
    clock.advance(31)
    assert datas(pull(store)) == [b"a"]


def test_stream_flow_control_caps_outstanding_messages_and_bytes():
    store = make_store()
    publish(store, *[b"x" * 100 for _ in range(10)])
    stream = Stream(10, max_messages=3, max_bytes=0)
    assert len(pull(store, stream=stream)) == 3
    assert pull(store, stream=stream) == []
    by_bytes = Stream(10, max_messages=0, max_bytes=250)
    # Bytes are checked before each message, so the limit may be passed by one message, as in the service.
    assert len(pull(store, stream=by_bytes)) == 3


def test_ack_frees_stream_room():
    store = make_store()
    publish(store, b"a", b"b")
    stream = Stream(10, max_messages=1, max_bytes=0)
    [first] = pull(store, stream=stream)
    assert pull(store, stream=stream) == []
    store.acknowledge(SUB, [first.ack_id])
    assert datas(pull(store, stream=stream)) == [b"b"]


def test_ordering_key_holds_later_messages_and_keeps_order():
    store = make_store(enable_message_ordering=True)
    publish(store, b"k1", key="k")
    [first] = pull(store)
    publish(store, b"k2", b"k3", key="k")
    publish(store, b"free")
    assert datas(pull(store)) == [b"free"]
    store.modify_ack_deadline(SUB, [first.ack_id], 0)  # nack: k1 comes back first, then k2, k3
    assert datas(pull(store)) == [b"k1", b"k2", b"k3"]


def test_nack_in_an_ordered_batch_redelivers_the_rest_of_the_key_in_order():
    store = make_store(enable_message_ordering=True)
    publish(store, b"k1", b"k2", b"k3", key="k")
    first, second, _ = pull(store)
    store.acknowledge(SUB, [first.ack_id])
    store.modify_ack_deadline(SUB, [second.ack_id], 0)
    assert datas(pull(store)) == [b"k2", b"k3"]


def test_ordering_is_per_key():
    store = make_store(enable_message_ordering=True)
    publish(store, b"a1", key="a")
    publish(store, b"b1", key="b")
    [a1, b1] = pull(store)
    publish(store, b"a2", key="a")
    publish(store, b"b2", key="b")
    store.acknowledge(SUB, [b1.ack_id])
    assert datas(pull(store)) == [b"b2"]
    store.acknowledge(SUB, [a1.ack_id])
    assert datas(pull(store)) == [b"a2"]


def test_retry_policy_backs_off_before_redelivery(clock):
    store = make_store(
        clock=clock, retry_policy={"minimum_backoff": {"seconds": 3}, "maximum_backoff": {"seconds": 10}}
    )
    publish(store, b"a")
    [first] = pull(store)
    store.modify_ack_deadline(SUB, [first.ack_id], 0)
    clock.advance(2.9)
    assert pull(store) == []
    clock.advance(0.2)
    [second] = pull(store)
    store.modify_ack_deadline(SUB, [second.ack_id], 0)
    clock.advance(5.9)
    assert pull(store) == []  # the backoff doubles with every attempt
    clock.advance(0.2)
    assert datas(pull(store)) == [b"a"]


def test_dead_letter_after_max_attempts_with_source_attributes():
    store = make_store(dead_letter_policy={"dead_letter_topic": "projects/p/topics/dead", "max_delivery_attempts": 5})
    store.create_topic(TopicPb(name="projects/p/topics/dead"))
    store.create_subscription(SubscriptionPb(name="projects/p/subscriptions/dead", topic="projects/p/topics/dead"))
    publish(store, b"poison", kind="bad")
    attempts = []
    for _ in range(5):
        [r] = pull(store)
        attempts.append(r.delivery_attempt)
        store.modify_ack_deadline(SUB, [r.ack_id], 0)
    assert attempts == [1, 2, 3, 4, 5]
    assert pull(store) == []
    [dead] = pull(store, sub="projects/p/subscriptions/dead")
    attributes = dict(dead.message.attributes)
    assert dead.message.data == b"poison"
    assert attributes["kind"] == "bad"
    assert attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert attributes["CloudPubSubDeadLetterSourceSubscription"] == "sub"
    assert attributes["CloudPubSubDeadLetterSourceSubscriptionProject"] == "p"
    assert store.subscriptions[SUB].dead_lettered == 1


def test_filter_skips_non_matching_messages():
    store = make_store(filter='attributes.kind = "keep"')
    publish(store, b"yes", kind="keep")
    publish(store, b"no", kind="drop")
    assert datas(pull(store)) == [b"yes"]
    assert store.subscriptions[SUB].backlog == 1  # only the matching message is held (and unacked)


def test_duplicate_fault_delivers_a_second_copy():
    store = make_store(FaultInjector(1, FaultConfig(duplicate_rate=1.0)))
    publish(store, b"a")
    [first] = pull(store)
    [copy] = pull(store)
    assert copy.message.message_id == first.message.message_id
    assert store.faults.report()["counts"]["duplicate"] == 1


def test_lost_ack_fault_forces_redelivery():
    store = make_store(FaultInjector(1, FaultConfig(lost_ack_rate=1.0)))
    publish(store, b"a")
    [first] = pull(store)
    store.acknowledge(SUB, [first.ack_id])
    store.modify_ack_deadline(SUB, [first.ack_id], 0)
    assert datas(pull(store)) == [b"a"]
    assert store.faults.report()["counts"]["lost_ack"] == 1


def test_delay_fault_holds_messages_back(clock):
    store = make_store(FaultInjector(1, FaultConfig(delay_ms=300)), clock=clock)
    publish(store, b"a")
    clock.advance(0.29)
    assert pull(store) == []
    clock.advance(0.02)
    assert datas(pull(store)) == [b"a"]


def test_seek_to_time_with_retained_acks(clock):
    store = make_store(clock=clock, retain_acked_messages=True)
    publish(store, b"old")
    clock.advance(1)
    middle = clock.wall()
    clock.advance(1)
    publish(store, b"new")
    received = pull(store)
    store.acknowledge(SUB, [r.ack_id for r in received])
    store.seek_to_time(SUB, middle)
    assert datas(pull(store)) == [b"new"]
    store.seek_to_time(SUB, 0)
    assert sorted(datas(pull(store))) == [b"new", b"old"]


def test_retention_drops_old_messages(clock):
    store = make_store(clock=clock, message_retention_duration={"seconds": 600})
    publish(store, b"a")
    clock.advance(599)
    store.sweep()
    assert store.subscriptions[SUB].backlog == 1
    clock.advance(2)
    store.sweep()
    assert store.subscriptions[SUB].backlog == 0  # dropped by the upkeep, not only when a pull meets it
    assert pull(store) == []


def test_publish_limits():
    store = make_store()
    with pytest.raises(PubSubError) as too_many:
        publish(store, *[b"x"] * 1001)
    assert too_many.value.code.name == "INVALID_ARGUMENT"
    with pytest.raises(PubSubError) as empty:
        store.publish(TOPIC, [MessagePb()])
    assert empty.value.code.name == "INVALID_ARGUMENT"


def test_journal_replay_restores_unacked_messages(tmp_path):
    first = Store()
    journal, _ = open_journal(tmp_path, first.replay, first.snapshot_records)
    first.journal = journal
    first.create_topic(TopicPb(name=TOPIC))
    first.create_subscription(SubscriptionPb(name=SUB, topic=TOPIC))
    ids = publish(first, b"acked", b"kept")
    [acked, _] = pull(first)
    first.acknowledge(SUB, [acked.ack_id])
    journal.close()

    second = Store()
    journal, top = open_journal(tmp_path, second.replay, second.snapshot_records)
    second.restore_seq(top)
    second.journal = journal
    assert datas(pull(second)) == [b"kept"]
    assert int(publish(second, b"later")[0]) > int(ids[-1])
    journal.close()


def test_journal_replay_keeps_dead_lettered_messages_out_of_the_source(tmp_path):
    first = Store()
    journal, _ = open_journal(tmp_path, first.replay, first.snapshot_records)
    first.journal = journal
    first.create_topic(TopicPb(name=TOPIC))
    first.create_topic(TopicPb(name="projects/p/topics/dead"))
    first.create_subscription(SubscriptionPb(name="projects/p/subscriptions/dead", topic="projects/p/topics/dead"))
    first.create_subscription(
        SubscriptionPb(
            name=SUB,
            topic=TOPIC,
            dead_letter_policy={"dead_letter_topic": "projects/p/topics/dead", "max_delivery_attempts": 5},
        )
    )
    publish(first, b"poison")
    for _ in range(5):
        [r] = pull(first)
        first.modify_ack_deadline(SUB, [r.ack_id], 0)
    journal.close()

    second = Store()
    journal, _ = open_journal(tmp_path, second.replay, second.snapshot_records)
    assert pull(second) == []
    assert datas(pull(second, sub="projects/p/subscriptions/dead")) == [b"poison"]
    journal.close()


def test_journal_ignores_a_torn_last_record(tmp_path):
    """A crash in the middle of a write leaves a partial record: replay keeps everything before it."""
    first = Store()
    journal, _ = open_journal(tmp_path, first.replay, first.snapshot_records)
    first.journal = journal
    first.create_topic(TopicPb(name=TOPIC))
    first.create_subscription(SubscriptionPb(name=SUB, topic=TOPIC))
    publish(first, b"whole")
    journal.close()
    with open(journal.path, "ab") as torn:
        torn.write(b"\x05\xff\xff\x00\x00partial")  # a publish header announcing more bytes than follow

    second = Store()
    journal, _ = open_journal(tmp_path, second.replay, second.snapshot_records)
    second.journal = journal
    assert datas(pull(second)) == [b"whole"]
    publish(second, b"after")  # the compacted journal is appendable again
    journal.close()


def test_online_compaction_keeps_only_live_state(tmp_path):
    store = Store()
    journal, _ = open_journal(tmp_path, store.replay, store.snapshot_records)
    store.journal = journal
    journal.next_compaction = 50_000  # small threshold so the test stays small
    store.create_topic(TopicPb(name=TOPIC))
    store.create_subscription(SubscriptionPb(name=SUB, topic=TOPIC))
    for _ in range(10):
        publish(store, *[b"x" * 1000] * 10)
        store.acknowledge(SUB, [r.ack_id for r in pull(store)])
    publish(store, b"kept")
    journal.wait(journal._appended)
    grown = journal.size
    assert grown > 100_000
    assert store.maybe_compact()
    assert journal.size < 2_000
    [last_id] = publish(store, b"after compaction")
    journal.close()

    restored = Store()
    journal, top = open_journal(tmp_path, restored.replay, restored.snapshot_records)
    assert datas(pull(restored)) == [b"kept", b"after compaction"]
    assert top == int(last_id)
    journal.close()


def test_compaction_waits_while_most_of_the_journal_is_live(tmp_path):
    store = Store()
    journal, _ = open_journal(tmp_path, store.replay, store.snapshot_records)
    store.journal = journal
    journal.next_compaction = 10_000
    store.create_topic(TopicPb(name=TOPIC))
    store.create_subscription(SubscriptionPb(name=SUB, topic=TOPIC))
    publish(store, *[b"x" * 1000] * 20)  # nothing acked: all live
    journal.wait(journal._appended)
    assert not store.maybe_compact()
    assert journal.next_compaction == journal.size * 2
    journal.close()


def test_snapshot_expires_and_seek_applies_the_filter(clock):
    store = make_store(clock=clock, filter='attributes.kind = "keep"')
    store.create_subscription(SubscriptionPb(name="projects/p/subscriptions/all", topic=TOPIC))
    store.create_snapshot("projects/p/snapshots/snap", "projects/p/subscriptions/all", {})
    publish(store, b"yes", kind="keep")
    publish(store, b"no", kind="drop")
    assert datas(pull(store)) == [b"yes"]
    store.seek_to_snapshot(SUB, "projects/p/snapshots/snap")
    assert datas(pull(store)) == [b"yes"]  # the snapshot holds both; the filter still applies
    clock.advance(SNAPSHOT_LIFETIME - 1)
    store.sweep()
    assert store.list_topic_snapshots(TOPIC) == ["projects/p/snapshots/snap"]
    clock.advance(2)
    store.sweep()
    assert store.list_topic_snapshots(TOPIC) == []
    with pytest.raises(PubSubError) as missing:
        store.get_snapshot("projects/p/snapshots/snap")
    assert missing.value.code.name == "NOT_FOUND"


def test_seek_to_snapshot_survives_a_restart(tmp_path):
    first = Store()
    journal, _ = open_journal(tmp_path, first.replay, first.snapshot_records)
    first.journal = journal
    first.create_topic(TopicPb(name=TOPIC))
    first.create_subscription(SubscriptionPb(name=SUB, topic=TOPIC))
    publish(first, b"a")
    first.create_snapshot("projects/p/snapshots/snap", SUB, {})
    first.acknowledge(SUB, [r.ack_id for r in pull(first)])
    first.seek_to_snapshot(SUB, "projects/p/snapshots/snap")
    journal.close()

    second = Store()
    journal, _ = open_journal(tmp_path, second.replay, second.snapshot_records)
    assert datas(pull(second)) == [b"a"]
    journal.close()


def test_seek_to_time_survives_a_restart(tmp_path, clock):
    first = Store(clock=clock.for_store())
    journal, _ = open_journal(tmp_path, first.replay, first.snapshot_records)
    first.journal = journal
    first.create_topic(TopicPb(name=TOPIC))
    first.create_subscription(SubscriptionPb(name=SUB, topic=TOPIC))
    publish(first, b"a")
    first.seek_to_time(SUB, clock.wall() + 1)  # acks everything published before
    journal.close()

    second = Store(clock=clock.for_store())
    journal, _ = open_journal(tmp_path, second.replay, second.snapshot_records)
    assert pull(second) == []
    journal.close()


def test_hot_ordering_key_drains_in_order_in_bounded_batches():
    store = make_store(enable_message_ordering=True)
    for start in range(0, 3000, 1000):
        publish(store, *[b"%d" % i for i in range(start, start + 1000)], key="hot")
    seen: list[bytes] = []
    for _ in range(40):
        batch = pull(store, 100)
        if not batch:
            break
        assert len(batch) <= 100
        seen.extend(datas(batch))
        store.acknowledge(SUB, [r.ack_id for r in batch])
    assert seen == [b"%d" % i for i in range(3000)]


def _durable_state(store: Store) -> dict:
    """What a restart must bring back: topics, subscriptions, and each subscription's unacked and retained
    messages, and the IAM policies of topics and subscriptions."""
    return {
        "topics": {name: topic.pb.SerializeToString() for name, topic in store.topics.items()},
        "policies": {
            name: policy.SerializeToString()
            for name, policy in store.policies.items()
            if "/snapshots/" not in name  # snapshots, and so their policies, are not journaled
        },
        "subscriptions": {
            name: (sub.pb.SerializeToString(), sorted(sub.messages), sorted(m.seq for m in sub.acked_retained))
            for name, sub in store.subscriptions.items()
        },
    }


def test_replay_rebuilds_what_every_kind_of_change_left(tmp_path, clock):
    """Live changes and their replay go through the same Store.apply: a restarted store equals the one that
    wrote the journal."""
    first = Store(clock=clock.for_store())
    journal, _ = open_journal(tmp_path, first.replay, first.snapshot_records)
    first.journal = journal
    dead, other = "projects/p/topics/dead", "projects/p/topics/other"
    for name in (TOPIC, dead, other):
        first.create_topic(TopicPb(name=name))
    first.create_subscription(
        SubscriptionPb(
            name=SUB,
            topic=TOPIC,
            retain_acked_messages=True,
            dead_letter_policy={"dead_letter_topic": dead, "max_delivery_attempts": 5},
        )
    )
    first.create_subscription(SubscriptionPb(name="projects/p/subscriptions/dead", topic=dead))
    first.create_subscription(SubscriptionPb(name="projects/p/subscriptions/orphan", topic=other))
    first.create_subscription(SubscriptionPb(name="projects/p/subscriptions/gone", topic=TOPIC))
    for resource in (TOPIC, SUB, other, "projects/p/subscriptions/gone"):
        first.set_iam_policy(resource, viewer_policy("user:a@example.com"))
    first.set_iam_policy(SUB, viewer_policy("user:b@example.com"))  # the second write is the one kept
    publish(first, b"acked", b"poison")
    acked, poison = pull(first)
    first.acknowledge(SUB, [acked.ack_id])
    for _ in range(4):
        first.modify_ack_deadline(SUB, [poison.ack_id], 0)
        [poison] = pull(first)
    first.modify_ack_deadline(SUB, [poison.ack_id], 0)  # the fifth delivery failed too: dead-lettered
    assert pull(first) == []
    clock.advance(10)
    middle = clock.wall()
    clock.advance(10)
    publish(first, b"later")
    first.update_topic(TopicPb(name=TOPIC, labels={"team": "data"}), ["labels"])
    first.update_subscription(SubscriptionPb(name=SUB, ack_deadline_seconds=30), ["ack_deadline_seconds"])
    first.delete_subscription("projects/p/subscriptions/gone")
    first.delete_topic(other)
    first.seek_to_time(SUB, middle)
    dead_sub = "projects/p/subscriptions/dead"
    first.create_snapshot("projects/p/snapshots/snap", dead_sub, {})
    first.acknowledge(dead_sub, [r.ack_id for r in pull(first, sub=dead_sub)])
    first.seek_to_snapshot(dead_sub, "projects/p/snapshots/snap")
    journal.close()

    second = Store(clock=clock.for_store())
    journal, top = open_journal(tmp_path, second.replay, second.snapshot_records)
    journal.close()
    assert _durable_state(second) == _durable_state(first)
    assert top == next(first._seq) - 1
    assert second.subscriptions["projects/p/subscriptions/orphan"].topic == "_deleted-topic_"
    assert set(second.policies) == {TOPIC, SUB}  # deleting a resource dropped its policy
    assert [list(b.members) for b in second.policies[SUB].bindings] == [["user:b@example.com"]]
    assert datas(pull(second, sub=dead_sub)) == [b"poison"]


def viewer_policy(member: str) -> PolicyPb:
    policy = PolicyPb()
    policy.bindings.add(role="roles/pubsub.viewer", members=[member])
    return policy


def test_iam_policies_survive_the_compacted_journal_and_etags_stay_new(tmp_path):
    """Start-up rewrites the journal from snapshot_records: the policies must be in it, or a second restart
    would lose them. Etags continue after the highest one replayed."""
    first = Store()
    journal, _ = open_journal(tmp_path, first.replay, first.snapshot_records)
    first.journal = journal
    first.create_topic(TopicPb(name=TOPIC))
    first.create_subscription(SubscriptionPb(name=SUB, topic=TOPIC))
    first.create_snapshot("projects/p/snapshots/snap", SUB, {})
    etags = [first.set_iam_policy(r, viewer_policy("user:a@example.com")).etag for r in (TOPIC, SUB)]
    first.set_iam_policy("projects/p/snapshots/snap", viewer_policy("user:a@example.com"))
    journal.close()

    for _ in range(2):  # the first restart replays the log, the second the journal the first one compacted
        restored = Store()
        journal, _ = open_journal(tmp_path, restored.replay, restored.snapshot_records)
        journal.close()
        assert {name: p.etag for name, p in restored.policies.items()} == dict(zip((TOPIC, SUB), etags, strict=True))
    newer = restored.set_iam_policy(TOPIC, viewer_policy("user:b@example.com"), ["bindings"])
    assert newer.etag not in etags


def test_iam_rules_in_process():
    store = make_store()
    with pytest.raises(PubSubError) as stale:
        store.set_iam_policy(TOPIC, PolicyPb(etag=b"not-the-current-one"))
    assert stale.value.code.name == "ABORTED"
    assert store.set_iam_policy(TOPIC, PolicyPb(etag=EMPTY_ETAG)).etag != EMPTY_ETAG  # "ACAB" matches no policy yet
    assert store.test_iam_permissions(SUB, ["pubsub.subscriptions.consume", "pubsub.topics.publish"]) == [
        "pubsub.subscriptions.consume"
    ]
    assert store.test_iam_permissions("projects/p/subscriptions/missing", ["pubsub.subscriptions.consume"]) == []
