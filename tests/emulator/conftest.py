"""Clients for the Pub/Sub emulator tests, bound to the emulator processes of tests/conftest.py (`backend`,
`workbench_emulator`, `official_emulator`): unique resource names, publish/pull helpers, and private emulators
started with flags for one test. Tests that change faults while the emulator runs use `admin_pubsub`, whose
emulator serves the admin service (`--admin`); the shared one does not, as by default.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from workbench.localstack.emulators import Emulator, start_pubsub_emulator

PROJECT = "p"  # the project of every resource these tests create (the emulators accept any id)

_names = itertools.count(1)


@dataclass
class PubSub:
    """Official clients pointed at one emulator, plus unique resource names and cleanup."""

    emulator: Emulator
    publisher: object
    subscriber: object
    project: str = PROJECT

    @property
    def official(self) -> bool:
        return self.emulator.name == "official-pubsub"

    def topic_path(self, prefix: str = "topic") -> str:
        return f"projects/{self.project}/topics/{prefix}-{next(_names)}-{uuid.uuid4().hex[:6]}"

    def subscription_path(self, prefix: str = "sub") -> str:
        return f"projects/{self.project}/subscriptions/{prefix}-{next(_names)}-{uuid.uuid4().hex[:6]}"

    def topic(self) -> str:
        name = self.topic_path()
        self.publisher.create_topic(name=name)
        return name

    def subscription(self, topic: str, **settings: object) -> str:
        name = self.subscription_path()
        self.subscriber.create_subscription(request={"name": name, "topic": topic, **settings})
        return name

    def publish(self, topic: str, *payloads: bytes, **attributes: str) -> list[str]:
        futures = [self.publisher.publish(topic, payload, **attributes) for payload in payloads]
        return [f.result(timeout=30) for f in futures]

    def pull(self, subscription: str, count: int, timeout: float = 20.0, ack: bool = True) -> list:
        """Pull until `count` messages arrived or the timeout passed; acks them unless ack=False."""
        from google.api_core import exceptions

        received: list = []
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            try:
                response = self.subscriber.pull(
                    request={"subscription": subscription, "max_messages": count - len(received)},
                    timeout=max(1.0, min(5.0, deadline - time.monotonic())),
                )
            except exceptions.DeadlineExceeded:
                continue
            received.extend(response.received_messages)
            if ack and response.received_messages:
                self.subscriber.acknowledge(
                    request={"subscription": subscription, "ack_ids": [m.ack_id for m in response.received_messages]}
                )
        return received

    def pull_nothing(self, subscription: str, wait: float = 1.5) -> list:
        """Pull for `wait` seconds expecting nothing; returns whatever came (unacked).

        It sees only what is deliverable now: a leased message stays away for its lease (10 s at least), so a
        check that acked messages stay acked goes through redelivered_after_nack.
        """
        return self.pull(subscription, 1000, timeout=wait, ack=False)

    def redelivered_after_nack(self, subscription: str, ack_ids: list[str], wait: float = 1.5) -> list:
        """Nack messages that should be acked, then pull_nothing: a lost ack comes back at once, not after its
        lease (a nack of an acked message does nothing, here as in the real service)."""
        self.subscriber.modify_ack_deadline(
            request={"subscription": subscription, "ack_ids": ack_ids, "ack_deadline_seconds": 0}
        )
        return self.pull_nothing(subscription, wait)


@pytest.fixture
def pubsub(backend: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    yield from _clients(backend, monkeypatch)


@pytest.fixture
def workbench_pubsub(workbench_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    yield from _clients(workbench_emulator, monkeypatch)


@pytest.fixture(scope="session")
def workbench_admin_emulator() -> Iterator[Emulator]:
    """This project's emulator with its admin (fault-injection) service on, for the session."""
    emulator = start_pubsub_emulator(project=PROJECT, admin=True)
    yield emulator
    emulator.stop()


@pytest.fixture
def admin_pubsub(workbench_admin_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    yield from _clients(workbench_admin_emulator, monkeypatch)


def _clients(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.target)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.005),
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
    )
    subscriber = pubsub_v1.SubscriberClient()
    yield PubSub(emulator, publisher, subscriber)
    publisher.stop()
    subscriber.close()


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Emulator], PubSub]]:
    """Open clients on any emulator (e.g. one from fresh_emulator); all are closed after the test."""
    opened: list[Iterator[PubSub]] = []

    def factory(emulator: Emulator) -> PubSub:
        clients = _clients(emulator, monkeypatch)
        opened.append(clients)
        return next(clients)

    yield factory
    for clients in opened:
        next(clients, None)


@pytest.fixture
def fresh_emulator() -> Iterator[Callable[..., Emulator]]:
    """Start private emulator processes (with flags) for one test; all are stopped afterwards."""
    started: list[Emulator] = []

    def launch(*args: str, port: int | None = None) -> Emulator:
        emulator = start_pubsub_emulator(*args, port=port, project=PROJECT)
        started.append(emulator)
        return emulator

    yield launch
    for emulator in started:
        emulator.stop()
