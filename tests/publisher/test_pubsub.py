"""The lean batch publisher against a real emulator (in this process, on a free loopback port): every message
gets exactly one outcome, injected UNAVAILABLE errors are retried, and what cannot succeed is reported failed."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from publisher.pubsub import BatchPublisher, BatchSettings, open_channel

pytestmark = pytest.mark.integration


@dataclass
class Message:
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)


class Outcomes:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: list[tuple[Message, str, str | None]] = []

    def __call__(self, message, outcome, message_id, latency) -> None:
        assert latency >= 0
        with self.lock:
            self.rows.append((message, outcome, message_id))


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

    channel = open_channel(target)
    channel.unary_unary(
        "/google.pubsub.v1.Publisher/CreateTopic",
        request_serializer=Topic.serialize,
        response_deserializer=Topic.deserialize,
    )(Topic(name=path), timeout=5)
    channel.close()


def publish_all(target: str, topic: str, count: int, settings: BatchSettings) -> Outcomes:
    outcomes = Outcomes()
    channel = open_channel(target)
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
    outcomes = publish_all(emulator.target, topic, 5000, BatchSettings(max_messages=300, max_outstanding_messages=700))
    assert len(outcomes.rows) == 5000
    assert {o for _, o, _ in outcomes.rows} == {"published"}
    assert len({i for _, _, i in outcomes.rows}) == 5000
    assert sorted(int(m.attributes["n"]) for m, _, _ in outcomes.rows) == list(range(5000))


def test_unavailable_is_retried_until_it_succeeds(emulator_with):
    emulator = emulator_with(publish_failure_rate=0.5)
    topic = "projects/bench/topics/flaky"
    create_topic(emulator.target, topic)
    settings = BatchSettings(max_messages=50, initial_backoff_s=0.01, max_backoff_s=0.05)
    outcomes = publish_all(emulator.target, topic, 2000, settings)
    assert len(outcomes.rows) == 2000
    assert {o for _, o, _ in outcomes.rows} == {"published"}
    assert emulator.store.faults.report()["counts"]["publish_failure"] > 0


def test_retries_stop_at_the_deadline_and_report_failed(emulator_with):
    emulator = emulator_with(publish_failure_rate=1.0)
    topic = "projects/bench/topics/down"
    create_topic(emulator.target, topic)
    settings = BatchSettings(max_messages=100, retry_deadline_s=0.3, initial_backoff_s=0.01, max_backoff_s=0.05)
    outcomes = publish_all(emulator.target, topic, 500, settings)
    assert len(outcomes.rows) == 500
    assert {o for _, o, _ in outcomes.rows} == {"failed"}


def test_a_missing_topic_fails_at_once_without_retrying(emulator_with):
    emulator = emulator_with()
    outcomes = publish_all(emulator.target, "projects/bench/topics/nowhere", 10, BatchSettings(retry_deadline_s=30))
    assert [o for _, o, _ in outcomes.rows] == ["failed"] * 10


def test_flow_control_bounds_unconfirmed_bytes(emulator_with):
    emulator = emulator_with(delay_ms=0)
    topic = "projects/bench/topics/large"
    create_topic(emulator.target, topic)
    outcomes = Outcomes()
    channel = open_channel(emulator.target)
    budget = 3 * 1024 * 1024
    publisher = BatchPublisher(channel, topic, outcomes, BatchSettings(max_messages=2, max_outstanding_bytes=budget))
    peak = 0
    for i in range(24):
        publisher.send(Message(bytes([65 + i % 26]) * 1_000_000))
        peak = max(peak, publisher._outstanding_bytes)
    publisher.close(timeout=60)
    channel.close()
    assert {o for _, o, _ in outcomes.rows} == {"published"} and len(outcomes.rows) == 24
    assert peak <= budget
    assert publisher._outstanding_bytes == 0
