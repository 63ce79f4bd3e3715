"""Publishing to and reading from a Pub/Sub emulator, for the tests of every package (tests/ is on sys.path)."""

from __future__ import annotations

import time

from endpoints.pubsub import publisher_client, subscriber_client


def pull_all(subscription: str, emulator_host: str, expected: int, timeout: float = 30.0) -> list:
    """Pull and ack until `expected` messages came or `timeout` passed; the messages, in arrival order. The
    toolkit's channel has no 4 MiB receive limit, so the catalogue's 1 MB payloads (and their dead letters) pass."""
    from google.api_core import exceptions

    subscriber = subscriber_client(emulator_host)
    received: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(received) < expected and time.monotonic() < deadline:
            try:
                response = subscriber.pull(request={"subscription": subscription, "max_messages": 1000}, timeout=5)
            except exceptions.DeadlineExceeded:
                continue
            if response.received_messages:
                received += [m.message for m in response.received_messages]
                subscriber.acknowledge(
                    request={"subscription": subscription, "ack_ids": [m.ack_id for m in response.received_messages]}
                )
    finally:
        subscriber.close()
    return received


def publish_one(emulator_host: str, topic: str, data: bytes = b"{}") -> str:
    """Publish one message to projects/P/topics/T on the emulator and wait for its id."""
    client = publisher_client(emulator_host)
    try:
        return client.publish(topic, data).result(timeout=10)
    finally:
        client.stop()
