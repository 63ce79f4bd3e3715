"""Pull responses stay under the 4 MiB that google-cloud-pubsub's emulator channel (and Beam's reader) accepts,
so a backlog of large messages drains instead of failing every pull with RESOURCE_EXHAUSTED."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("size", [1_000_100, 3_000_000])
def test_large_messages_drain_through_the_default_client(workbench_emulator, monkeypatch, size):
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", workbench_emulator.target)
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=f"projects/big/topics/large-{size}").name
    subscription = subscriber.create_subscription(name=f"projects/big/subscriptions/large-{size}", topic=topic).name
    for i in range(6):
        publisher.publish(topic, bytes([65 + i]) * size).result(timeout=30)
    received = []
    for _ in range(20):
        response = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)
        received += [m.message.data[:1] for m in response.received_messages]
        if response.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
        if len(received) == 6:
            break
    subscriber.close()
    assert sorted(received) == [bytes([65 + i]) for i in range(6)]
