"""The Pub/Sub client of a Locust user: publishes a batch with one blocking Publish call and reports every
message to Locust (a request event) and to the run manifest (its events CSV).

Request events: request_type "publish", name = the event type or the malformed kind, response_time = the
milliseconds until the server confirmed the batch, response_length = the payload's bytes, exception = the gRPC
error when the call failed (a failure in Locust's statistics, never a crash and never a success).
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import grpc
import grpc.experimental.gevent
from google.pubsub_v1.types import PublishRequest, PublishResponse, PubsubMessage

from publisher.manifest import FAILED, PUBLISHED
from publisher.pubsub import PUBLISH_METHOD, open_channel

# gRPC's cooperative mode for gevent: must run before the first channel of the process is created.
grpc.experimental.gevent.init_gevent()

# Raw protobuf classes (~4 µs a message), as publisher.pubsub builds its requests.
_MessagePb, _RequestPb, _ResponsePb = PubsubMessage.pb(), PublishRequest.pb(), PublishResponse.pb()
REQUEST_TYPE = "publish"
DEFAULT_TIMEOUT_S = 30.0


class PubSubClient:
    """One user's publisher: its own channel, a blocking Publish per batch, events fired per message."""

    def __init__(self, topic_path: str, emulator_host: str | None, request_event: Any, event_log: Any,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:  # fmt: skip
        self.topic_path = topic_path
        self._channel = open_channel(emulator_host)
        self._publish = self._channel.unary_unary(
            PUBLISH_METHOD,
            request_serializer=_RequestPb.SerializeToString,
            response_deserializer=_ResponsePb.FromString,
        )
        self._metadata = (("x-goog-request-params", f"topic={topic_path}"),)
        self._request_event = request_event
        self._log = event_log
        self._timeout = timeout

    def publish(self, messages: list[Any]) -> None:
        """Publish messages (generator OutgoingMessage) as one request; every message gets an outcome.

        The call and its bookkeeping run in a greenlet of their own: when Locust stops a user (it kills the
        user's greenlet, possibly mid-call) the batch still ends with its outcome in the manifest. Killed in the
        middle, the messages could have reached the server with no line to say so, and reconcile would call them
        unexpected (it did, which is how this came to be).
        """
        job = gevent.spawn(self._send, messages)
        try:
            job.join()
        except gevent.GreenletExit:
            job.join(self._timeout)
            raise
        if job.exception is not None:
            raise job.exception

    def _send(self, messages: list[Any]) -> None:
        request = _RequestPb(
            topic=self.topic_path, messages=[_MessagePb(data=m.data, attributes=m.attributes) for m in messages]
        )
        started = time.perf_counter()
        error: Exception | None = None
        ids: list[str] = []
        try:
            ids = list(self._publish(request, timeout=self._timeout, metadata=self._metadata).message_ids)
        except grpc.RpcError as exc:
            error = PublishError(exc)
        elapsed_ms = (time.perf_counter() - started) * 1000
        fire = self._request_event.fire
        for i, message in enumerate(messages):
            message_id = ids[i] if error is None else None
            self._log.record(message, PUBLISHED if error is None else FAILED, message_id)
            fire(request_type=REQUEST_TYPE, name=message.kind or message.event_type, response_time=elapsed_ms,
                 response_length=len(message.data), exception=error, context={})  # fmt: skip

    def close(self) -> None:
        self._channel.close()


class PublishError(Exception):
    """A failed Publish as Locust shows it: the gRPC status code and the server's message."""

    def __init__(self, error: grpc.RpcError) -> None:
        code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        super().__init__(f"{code.name}: {details}")
        self.code = code
