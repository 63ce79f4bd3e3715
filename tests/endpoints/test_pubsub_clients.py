"""endpoints/pubsub.py against this project's Pub/Sub emulator: the official clients through a channel without
gRPC's 4 MiB receive limit, which a pull of one large message (Pub/Sub takes up to 10 MB) exceeds."""

from __future__ import annotations

import uuid

import pytest

from endpoints.pubsub import publisher_client, pubsub_channel, subscriber_client

pytestmark = pytest.mark.integration

PROJECT = "endpoints-tests"
MESSAGE_BYTES = 5_000_000  # over gRPC's default receive limit, under Pub/Sub's 10 MB
GRPC_DEFAULT_LIMIT = 4 * 1024 * 1024


def test_a_pull_larger_than_grpcs_default_limit_arrives(workbench_emulator):
    name = uuid.uuid4().hex[:8]
    topic, subscription = f"projects/{PROJECT}/topics/t-{name}", f"projects/{PROJECT}/subscriptions/s-{name}"
    publisher = publisher_client(workbench_emulator.host_port)
    subscriber = subscriber_client(workbench_emulator.host_port)
    try:
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic)
        publisher.publish(topic, b"x" * MESSAGE_BYTES).result(timeout=30)
        received = []
        for _ in range(5):  # bounded: the emulator answers at once with what it holds
            answer = subscriber.pull(subscription=subscription, max_messages=10, timeout=30)
            received += answer.received_messages
            if received:
                break
        assert [len(m.message.data) for m in received] == [MESSAGE_BYTES]
        assert answer._pb.ByteSize() > GRPC_DEFAULT_LIMIT
        subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in received])
    finally:
        subscriber.delete_subscription(subscription=subscription)
        publisher.delete_topic(topic=topic)
        publisher.transport.close()
        subscriber.close()


def test_the_channel_is_a_plain_loopback_one_to_an_emulator(workbench_emulator):
    import grpc

    channel = pubsub_channel(workbench_emulator.host_port)
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
    finally:
        channel.close()
