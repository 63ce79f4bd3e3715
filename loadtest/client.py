"""The Pub/Sub client of a Locust user: publishes a batch with blocking Publish calls, retried as the official
client retries them, and reports every message to Locust (request events) and to the run manifest.

Requests: a batch is split into requests within Pub/Sub's 1,000 messages and 10 MB (loadtest.policy). A request
that fails with a code the library retries (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ...) is sent
again after the library's backoff, until it is confirmed, fails with another code, or 600 s have passed since its
first attempt. When Locust stops the user, the attempt under way finishes and no new one starts: the messages are
then recorded failed with the last code.

Request events, one set per message:
- request_type "publish", name = the event type or the malformed kind: the final outcome. response_time = the
  milliseconds from the first attempt to the confirmation (backoff included: what a producer waits), exception =
  the last gRPC error when the message finally failed.
- request_type "retry", same name, one per failed attempt that was retried: a failure in Locust's statistics with
  the gRPC error (locust_failures.csv counts them per code), response_time = that attempt's milliseconds.
So "publish" rows count messages and what finally became of them, and every error the server gave, retried or
not, is a failure Locust reports (and exits 1 for); the manifest holds what was finally confirmed.

Run manifest: events-N.csv gets one line per message with its final outcome and message id. A message confirmed
after a retried attempt may exist more than once in Pub/Sub: a DEADLINE_EXCEEDED, for one, can come after the
server stored it. The copies carry the same event_id attribute, which the pipeline deduplicates on and reconcile
counts by. publish-errors-N.csv (run_manifest.AttemptLog) lists every failed attempt, so the run says which
messages were retried and how each failure ended.
"""

from __future__ import annotations

import random
import time
from typing import Any

import gevent
import gevent.event
import grpc
import grpc.experimental.gevent
from google.pubsub_v1.types import PublishRequest, PublishResponse, PubsubMessage

from endpoints.pubsub import pubsub_channel
from loadtest.policy import LIBRARY_PUBLISH, backoff_delay, retryable, split_requests
from publisher.manifest import FAILED, PUBLISHED
from publisher.pubsub import PUBLISH_METHOD, BatchSettings

# gRPC's cooperative mode for gevent: must run before the first channel of the process is created.
grpc.experimental.gevent.init_gevent()

# Raw protobuf classes (~4 µs a message), as publisher.pubsub builds its requests.
_MessagePb, _RequestPb, _ResponsePb = PubsubMessage.pb(), PublishRequest.pb(), PublishResponse.pb()
REQUEST_TYPE = "publish"
RETRY_TYPE = "retry"
STOP_GRACE_S = 1.0  # beyond the attempt under way, for the bookkeeping after it


class PubSubClient:
    """One user's publisher: its own channel, blocking Publish requests with retries, events fired per message."""

    def __init__(self, topic_path: str, emulator_host: str | None, request_event: Any, event_log: Any,
                 attempt_log: Any = None, settings: BatchSettings = LIBRARY_PUBLISH,
                 rng: random.Random | None = None) -> None:  # fmt: skip
        self.topic_path = topic_path
        self._channel = pubsub_channel(emulator_host)
        self._publish = self._channel.unary_unary(
            PUBLISH_METHOD,
            request_serializer=_RequestPb.SerializeToString,
            response_deserializer=_ResponsePb.FromString,
        )
        self._metadata = (("x-goog-request-params", f"topic={topic_path}"),)
        self._topic_bytes = _RequestPb(topic=topic_path).ByteSize()
        self._request_event = request_event
        self._log = event_log
        self._attempts = attempt_log
        self._settings = settings
        self._rng = rng or random.Random()
        self._stopping = gevent.event.Event()

    def publish(self, messages: list[Any]) -> None:
        """Publish messages (generator OutgoingMessage); every message gets one final outcome.

        The calls and their bookkeeping run in a greenlet of their own: when Locust stops a user (it kills the
        user's greenlet, possibly mid-call) the attempt under way still ends with its outcome in the manifest, and
        no retry follows. Killed in the middle, the messages could have reached the server with no line to say so,
        and reconcile would call them unexpected (it did, which is how this came to be).
        """
        job = gevent.spawn(self._send_all, messages)
        try:
            job.join()
        except gevent.GreenletExit:
            self._stopping.set()
            job.join(self._settings.request_timeout_s + STOP_GRACE_S)
            raise
        if job.exception is not None:
            raise job.exception

    def _send_all(self, messages: list[Any]) -> None:
        pbs = [_MessagePb(data=m.data, attributes=m.attributes) for m in messages]
        for part in split_requests(self._topic_bytes, pbs, self._settings):
            if self._stopping.is_set():  # the rest was never sent: no outcome to record
                return
            self._send(messages[part.start : part.stop], pbs[part.start : part.stop])

    def _send(self, messages: list[Any], pbs: list[Any]) -> None:
        request = _RequestPb(topic=self.topic_path, messages=pbs)
        first = time.perf_counter()
        give_up_at = first + self._settings.retry_deadline_s
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            timeout = max(0.001, min(self._settings.request_timeout_s, give_up_at - started))
            try:
                response = self._publish(request, timeout=timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                error = RpcFailure(exc)
            else:
                self._settle(messages, list(response.message_ids), None, first)
                return
            now = time.perf_counter()
            wait = backoff_delay(attempt, self._rng, self._settings)
            if retryable(error.code) and now + wait < give_up_at and not self._stopping.is_set():
                self._retried(messages, error, attempt, (now - started) * 1000, wait)
                if not self._stopping.wait(wait):  # a stop during the wait ends the retries at once
                    continue
            self._settle(messages, [], error, first, attempt)
            return

    def _retried(self, messages: list[Any], error: RpcFailure, attempt: int, attempt_ms: float,
                 wait_s: float) -> None:  # fmt: skip
        fire = self._request_event.fire
        for message in messages:
            if self._attempts is not None:
                self._attempts.record(message, attempt, error, "retried", attempt_ms, wait_s * 1000)
            fire(request_type=RETRY_TYPE, name=message.kind or message.event_type, response_time=attempt_ms,
                 response_length=len(message.data), exception=error, context={})  # fmt: skip

    def _settle(self, messages: list[Any], ids: list[str], error: RpcFailure | None, first: float,
                attempt: int = 0) -> None:  # fmt: skip
        """The final outcome of every message of one request: in the manifest, and as Locust's publish event."""
        elapsed_ms = (time.perf_counter() - first) * 1000
        fire = self._request_event.fire
        for i, message in enumerate(messages):
            if error is None:
                self._log.record(message, PUBLISHED, ids[i])
            else:
                self._log.record(message, FAILED, None)
                if self._attempts is not None:
                    self._attempts.record(message, attempt, error, "failed", elapsed_ms, 0.0)
            fire(request_type=REQUEST_TYPE, name=message.kind or message.event_type, response_time=elapsed_ms,
                 response_length=len(message.data), exception=error, context={})  # fmt: skip

    def close(self) -> None:
        self._channel.close()


class RpcFailure(Exception):
    """A failed Publish RPC as Locust's failure table shows it: the gRPC status code and the server's message.

    Not publisher.errors.PublishError, which is a user's mistake with a fix (exit 2): this is the service's answer
    to one request, counted and retried by the load test."""

    def __init__(self, error: grpc.RpcError) -> None:
        code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details or ""
