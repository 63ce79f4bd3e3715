"""The load test's Publish rules (loadtest.policy) against the installed google-cloud-pubsub: the same retried codes,
backoff, deadlines and request size limit, and request splits that stay within 1,000 messages and 10 MB.

Pure: no Locust import (it would gevent-patch pytest), no network.
"""

from __future__ import annotations

import itertools
import random
import string

import grpc
import pytest
from google.api_core import exceptions as core_exceptions
from google.api_core.retry import retry_base
from google.auth.credentials import AnonymousCredentials
from google.pubsub_v1.types import PublishRequest, PubsubMessage

from loadtest.policy import BACKOFF_MULTIPLIER, LIBRARY_PUBLISH, backoff_cap, backoff_delay, retryable, split_requests

TOPIC = "projects/p/topics/backend-events-topic"
_MessagePb, _RequestPb = PubsubMessage.pb(), PublishRequest.pb()


@pytest.fixture(scope="module")
def library_publish():
    """The retry and timeout google-cloud-pubsub wraps Publish with (its transport's defaults, as built)."""
    from google.pubsub_v1.services.publisher import PublisherClient

    client = PublisherClient(credentials=AnonymousCredentials(), client_options={"api_endpoint": "127.0.0.1:9"})
    transport = client._transport
    return transport._wrapped_methods[transport.publish]


def test_the_retried_codes_are_the_librarys(library_publish):
    predicate = library_publish._retry._predicate
    library = {code for code in grpc.StatusCode if predicate(core_exceptions.from_grpc_status(code, "x"))}
    ours = {code for code in grpc.StatusCode if retryable(code)}
    assert ours == library
    assert {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED} <= ours


def test_backoff_and_deadlines_are_the_librarys(library_publish):
    retry = library_publish._retry
    assert (LIBRARY_PUBLISH.initial_backoff_s, LIBRARY_PUBLISH.max_backoff_s) == (retry._initial, retry._maximum)
    assert retry._multiplier == BACKOFF_MULTIPLIER
    assert LIBRARY_PUBLISH.retry_deadline_s == retry._timeout
    assert LIBRARY_PUBLISH.request_timeout_s == library_publish._timeout


def test_the_waits_follow_google_api_cores_full_jitter(monkeypatch):
    """api-core draws uniform(0, cap), the cap growing by the multiplier up to the maximum: ours has the same caps
    (read at the draw's upper bound) and draws inside them."""
    monkeypatch.setattr(retry_base.random, "uniform", lambda low, high: high)
    library = retry_base.exponential_sleep_generator(
        LIBRARY_PUBLISH.initial_backoff_s, LIBRARY_PUBLISH.max_backoff_s, BACKOFF_MULTIPLIER
    )
    assert [next(library) for _ in range(7)] == pytest.approx([backoff_cap(n) for n in range(1, 8)])
    assert [backoff_cap(n) for n in range(1, 8)] == pytest.approx([0.1, 0.4, 1.6, 6.4, 25.6, 60.0, 60.0])
    rng = random.Random(1)
    draws = [backoff_delay(3, rng) for _ in range(500)]
    assert all(0 <= d <= 1.6 for d in draws) and max(draws) > 1.4 and min(draws) < 0.2


def test_the_request_size_limit_is_the_librarys():
    from google.cloud.pubsub_v1.publisher._batch import thread

    assert LIBRARY_PUBLISH.max_bytes == thread._SERVER_PUBLISH_MAX_BYTES
    assert LIBRARY_PUBLISH.max_messages == 1000


def message(size: int, rng: random.Random) -> object:
    data = "".join(rng.choices(string.ascii_letters, k=size)).encode()
    return _MessagePb(data=data, attributes={"event_id": f"{rng.random()}", "run_id": "r"})


def requests_of(pbs: list) -> list[list]:
    topic_bytes = _RequestPb(topic=TOPIC).ByteSize()
    return [pbs[part.start : part.stop] for part in split_requests(topic_bytes, pbs)]


def test_large_messages_split_into_requests_under_10_mb_in_order():
    rng = random.Random(4)
    pbs = [message(rng.choice((900_000, 1_100_000, 300)), rng) for _ in range(40)]  # ~27 MB in all
    parts = requests_of(pbs)
    sizes = [_RequestPb(topic=TOPIC, messages=part).ByteSize() for part in parts]
    assert len(parts) > 2 and all(size <= 10_000_000 for size in sizes)
    assert [m for part in parts for m in part] == pbs  # every message once, in order
    for part, following in itertools.pairwise(parts):  # greedy: the next message would not have fitted
        assert _RequestPb(topic=TOPIC, messages=[*part, following[0]]).ByteSize() > 10_000_000


def test_small_messages_split_by_count():
    rng = random.Random(5)
    parts = requests_of([message(50, rng) for _ in range(2_500)])
    assert [len(p) for p in parts] == [1000, 1000, 500]


def test_a_message_too_large_for_any_request_goes_alone():
    """The server answers for it (INVALID_ARGUMENT), so its outcome is recorded, as for any refused request."""
    rng = random.Random(6)
    pbs = [message(100, rng), message(10_000_001, rng), message(100, rng)]
    assert [len(p) for p in requests_of(pbs)] == [1, 1, 1]


@pytest.mark.parametrize(
    ("kinds", "says"),
    [("nope=1", "unknown name(s) nope"), ("bad_uuid=x", "write KIND=WEIGHT pairs"), ("empty_body=-1", ">= 0")],
)
def test_bad_malformed_kinds_stop_the_load_test_before_any_user_starts(kinds, says):
    """--malformed-kinds is read by the parser `publish` uses too (generator.stream.parse_malformed_weights)."""
    from types import SimpleNamespace

    from loadtest.options import check

    options = SimpleNamespace(malformed_rate=0.1, duplicate_rate=0.0, malformed_kinds=kinds, user_rate=0.0,
                              batch_size=20)  # fmt: skip
    with pytest.raises(SystemExit, match="--malformed-kinds: ") as stopped:
        check(options)
    assert says in str(stopped.value)
