"""The lean batch publisher against a real emulator (in this process, on a free loopback port): every message
gets exactly one outcome, injected UNAVAILABLE errors are retried, and what cannot succeed is reported failed.

The publisher's callback runs on a gRPC thread, where a failed assert would be lost (gRPC logs it and the message
never settles); Outcomes only records what the callback saw, and the tests assert on their own thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from endpoints.pubsub import pubsub_channel
from publisher.pubsub import BatchPublisher, BatchSettings

pytestmark = pytest.mark.integration


@dataclass
class Message:
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    message: Message
    outcome: str
    message_id: str | None
    latency: float


class Outcomes:
    """The publisher's callback: every call recorded, nothing checked on the gRPC thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: list[Outcome] = []

    def __call__(self, message, outcome, message_id, latency) -> None:
        with self.lock:
            self.rows.append(Outcome(message, outcome, message_id, latency))

    def assert_one_each(self, sent: int, outcome: str) -> None:
        """Each of the `sent` messages (attribute n = 0..sent-1) has exactly one outcome, this one, and a sane
        latency; published ones carry a message id, failed ones none."""
        assert sorted(int(row.message.attributes["n"]) for row in self.rows) == list(range(sent))
        assert {row.outcome for row in self.rows} == {outcome}
        assert all(row.latency >= 0 for row in self.rows)
        if outcome == "published":
            assert all(row.message_id for row in self.rows)
        else:
            assert all(row.message_id is None for row in self.rows)


@pytest.fixture
def emulator_with():
    from emulator.pubsub.server import start

    handles = []

    def launch(**faults):
        handle = start("127.0.0.1", 0, seed=4, faults=faults)
        handles.append(handle)
        return handle

    yield launch
    for handle in handles:
        handle.stop()


def create_topic(target: str, path: str) -> None:
    from google.pubsub_v1.types import Topic

    channel = pubsub_channel(target)
    channel.unary_unary(
        "/google.pubsub.v1.Publisher/CreateTopic",
        request_serializer=Topic.serialize,
        response_deserializer=Topic.deserialize,
    )(Topic(name=path), timeout=5)
    channel.close()


def subscribe(target: str, topic: str, path: str) -> None:
    from google.pubsub_v1.types import Subscription

    channel = pubsub_channel(target)
    channel.unary_unary(
        "/google.pubsub.v1.Subscriber/CreateSubscription",
        request_serializer=Subscription.serialize,
        response_deserializer=Subscription.deserialize,
    )(Subscription(name=path, topic=topic), timeout=5)
    channel.close()


def ids_received(target: str, subscription: str, expected: int, timeout: float = 30.0) -> dict[str, str]:
    """message id -> attribute n of every message a subscriber pulls (and acknowledges)."""
    from google.pubsub_v1.types import AcknowledgeRequest, PullRequest, PullResponse

    channel = pubsub_channel(target)
    pull = channel.unary_unary(
        "/google.pubsub.v1.Subscriber/Pull",
        request_serializer=PullRequest.serialize,
        response_deserializer=PullResponse.deserialize,
    )
    acknowledge = channel.unary_unary(
        "/google.pubsub.v1.Subscriber/Acknowledge", request_serializer=AcknowledgeRequest.serialize
    )
    received: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(received) < expected and time.monotonic() < deadline:
        response = pull(PullRequest(subscription=subscription, max_messages=1000), timeout=10)
        received.update({m.message.message_id: m.message.attributes["n"] for m in response.received_messages})
        if response.received_messages:
            ack_ids = [m.ack_id for m in response.received_messages]
            acknowledge(AcknowledgeRequest(subscription=subscription, ack_ids=ack_ids), timeout=10)
    channel.close()
    return received


def publish_all(target: str, topic: str, count: int, settings: BatchSettings) -> Outcomes:
    outcomes = Outcomes()
    channel = pubsub_channel(target)
    publisher = BatchPublisher(channel, topic, outcomes, settings)
    for i in range(count):
        publisher.send(Message(f'{{"n": {i}}}'.encode(), {"n": str(i)}))
    publisher.close(timeout=60)
    channel.close()
    return outcomes


def test_every_message_is_published_once_with_its_own_id(emulator_with):
    emulator = emulator_with()
    topic = "projects/bench/topics/plain"
    create_topic(emulator.target, topic)
    subscribe(emulator.target, topic, "projects/bench/subscriptions/plain")
    outcomes = publish_all(emulator.target, topic, 5000, BatchSettings(max_messages=300, max_outstanding_messages=700))
    outcomes.assert_one_each(5000, "published")
    # The id reported for a message is the id a subscriber receives it with, not just any unique id.
    reported = {row.message_id: row.message.attributes["n"] for row in outcomes.rows}
    assert len(reported) == 5000
    assert ids_received(emulator.target, "projects/bench/subscriptions/plain", 5000) == reported


def test_unavailable_is_retried_until_it_succeeds(emulator_with):
    emulator = emulator_with(publish_failure_rate=0.5)
    topic = "projects/bench/topics/flaky"
    create_topic(emulator.target, topic)
    settings = BatchSettings(max_messages=50, initial_backoff_s=0.01, max_backoff_s=0.05)
    outcomes = publish_all(emulator.target, topic, 2000, settings)
    outcomes.assert_one_each(2000, "published")
    assert emulator.store.faults.report()["counts"]["publish_failure"] > 0


def test_retries_stop_at_the_deadline_and_report_failed(emulator_with):
    emulator = emulator_with(publish_failure_rate=1.0)
    topic = "projects/bench/topics/down"
    create_topic(emulator.target, topic)
    settings = BatchSettings(max_messages=100, retry_deadline_s=0.3, initial_backoff_s=0.01, max_backoff_s=0.05)
    outcomes = publish_all(emulator.target, topic, 500, settings)
    outcomes.assert_one_each(500, "failed")


def test_a_missing_topic_fails_at_once_without_retrying(emulator_with):
    emulator = emulator_with()
    started = time.monotonic()
    outcomes = publish_all(emulator.target, "projects/bench/topics/nowhere", 10, BatchSettings(retry_deadline_s=30))
    outcomes.assert_one_each(10, "failed")
    assert time.monotonic() - started < 5  # NOT_FOUND retried would take the 30 s deadline


def test_flow_control_bounds_unconfirmed_bytes(emulator_with):
    emulator = emulator_with(delay_ms=0)
    topic = "projects/bench/topics/large"
    create_topic(emulator.target, topic)
    outcomes = Outcomes()
    channel = pubsub_channel(emulator.target)
    budget = 3 * 1024 * 1024
    publisher = BatchPublisher(channel, topic, outcomes, BatchSettings(max_messages=2, max_outstanding_bytes=budget))
    peak = 0
    for i in range(24):
        publisher.send(Message(bytes([65 + i % 26]) * 1_000_000, {"n": str(i)}))
        peak = max(peak, publisher._outstanding_bytes)
    publisher.close(timeout=60)
    channel.close()
    outcomes.assert_one_each(24, "published")
    assert peak <= budget
    assert publisher._outstanding_bytes == 0
