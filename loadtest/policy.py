"""What the official Pub/Sub client does with a Publish request, for the load test's own blocking calls: how
large a request may be, which errors it retries, and how long it waits between attempts. Pure (no gevent, no
Locust), so the rules are tested on their own and against the installed library.

Retry: the defaults google-cloud-pubsub 2.44 wraps Publish with (google/pubsub_v1/services/publisher/transports/
base.py, `_prep_wrapped_messages`, `self.publish`): retry on ABORTED, CANCELLED, DEADLINE_EXCEEDED, INTERNAL,
RESOURCE_EXHAUSTED, UNAVAILABLE and UNKNOWN; backoff initial 0.1 s, multiplier 4, maximum 60 s; give up 600 s
after the first attempt; 60 s per attempt (default_timeout). The wait is google-api-core's "full jitter"
(google/api_core/retry/retry_base.py `exponential_sleep_generator`): uniform between 0 and a cap that starts at
the initial value and is multiplied after each attempt, up to the maximum. publisher.pubsub.RETRYABLE already
holds those codes; its BatchSettings carries the numbers (its own defaults are a faster generator's, not the
library's). tests/loadtest/test_policy.py reads the installed library's values and compares.

Size: the library refuses to build a request over 10,000,000 bytes, counted as the serialized PublishRequest
(topic plus every message's data, attributes and framing: google/cloud/pubsub_v1/publisher/_batch/thread.py
`_SERVER_PUBLISH_MAX_BYTES`), and Pub/Sub's limits are 10 MB and 1,000 messages per publish request
(cloud.google.com/pubsub/quotas, "Resource limits"). This project's emulator refuses more than 10 MiB with
INVALID_ARGUMENT, as Pub/Sub does; the decimal limit is the stricter one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from publisher.pubsub import RETRYABLE, BatchSettings

# The library's Publish defaults, as BatchSettings (max_bytes: the whole serialized request, not the payloads).
LIBRARY_PUBLISH = BatchSettings(
    max_messages=1000,
    max_bytes=10_000_000,
    request_timeout_s=60.0,
    retry_deadline_s=600.0,
    initial_backoff_s=0.1,
    max_backoff_s=60.0,
)
BACKOFF_MULTIPLIER = 4.0
_MESSAGES_FIELD_TAG_BYTES = 1  # PublishRequest.messages is field 2: its tag is one byte


def retryable(code: grpc.StatusCode) -> bool:
    return code in RETRYABLE


def backoff_cap(attempt: int, settings: BatchSettings = LIBRARY_PUBLISH) -> float:
    """The longest wait after failed attempt number `attempt` (1-based)."""
    return min(settings.initial_backoff_s * BACKOFF_MULTIPLIER ** (attempt - 1), settings.max_backoff_s)


def backoff_delay(attempt: int, rng: random.Random, settings: BatchSettings = LIBRARY_PUBLISH) -> float:
    """The wait after failed attempt `attempt`: uniform in [0, cap], as google-api-core draws it."""
    return rng.uniform(0.0, backoff_cap(attempt, settings))


def _varint_bytes(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def message_bytes(message_pb: Any) -> int:
    """What one PubsubMessage adds to a serialized PublishRequest (the library's `size_increase`)."""
    size = message_pb.ByteSize()
    return _MESSAGES_FIELD_TAG_BYTES + _varint_bytes(size) + size


def split_requests(
    topic_bytes: int, message_pbs: Sequence[Any], settings: BatchSettings = LIBRARY_PUBLISH
) -> Iterator[range]:
    """Consecutive index ranges of `message_pbs`, each a request within the message count and byte limits.

    topic_bytes: the serialized size of a PublishRequest holding only the topic. Order is kept. A message too large
    for any request goes alone, and the server answers for it (INVALID_ARGUMENT), as it would for the library's
    MessageTooLargeError: the manifest records it failed with that code instead of dropping it unsaid."""
    start, size = 0, topic_bytes
    for index, pb in enumerate(message_pbs):
        grow = message_bytes(pb)
        count = index - start
        if count and (count >= settings.max_messages or size + grow > settings.max_bytes):
            yield range(start, index)
            start, size = index, topic_bytes
        size += grow
    if start < len(message_pbs):
        yield range(start, len(message_pbs))
