"""google.pubsub.v1.Subscriber over grpcio generic handlers (subscriptions, Pull, StreamingPull, acks, Seek).

Pull and StreamingPull responses are built as bytes by emulator.pubsub.wire; StreamingPull reads the client's
requests (acks, modacks, flow-control changes) on a thread of its own while the handler streams messages out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.pubsub_v1.types import (
    AcknowledgeRequest,
    CreateSnapshotRequest,
    DeleteSnapshotRequest,
    DeleteSubscriptionRequest,
    GetSnapshotRequest,
    GetSubscriptionRequest,
    ListSnapshotsRequest,
    ListSnapshotsResponse,
    ListSubscriptionsRequest,
    ListSubscriptionsResponse,
    ModifyAckDeadlineRequest,
    PullRequest,
    SeekRequest,
    SeekResponse,
    StreamingPullRequest,
    Subscription,
    UpdateSnapshotRequest,
    UpdateSubscriptionRequest,
)

from emulator.pubsub.errors import PubSubError, invalid_argument
from emulator.pubsub.rpc import page, raw, unary
from emulator.pubsub.state import Stream
from emulator.pubsub.store import Store
from emulator.pubsub.wire import pull_response

SERVICE = "google.pubsub.v1.Subscriber"

StreamingPullRequestPb = StreamingPullRequest.pb()
ListSubscriptionsResponsePb = ListSubscriptionsResponse.pb()
ListSnapshotsResponsePb = ListSnapshotsResponse.pb()
SeekResponsePb = SeekResponse.pb()
EMPTY = empty_pb2.Empty()

# A Pull without return_immediately waits at most this long for a first message (the real service returns
# an empty response after a while too; clients such as Beam's DirectRunner simply pull again).
PULL_WAIT_SECONDS = 5.0
MAX_PULL_MESSAGES = 1000
# StreamingPullResponse.subscription_properties (field 4) with message_ordering_enabled (field 2) = true, as
# the real service sends it; exactly_once_delivery_enabled stays false because delivery is at-least-once.
ORDERED_PROPERTIES = b"\x22\x02\x10\x01"
STREAM_BATCH = 1000


class SubscriberService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "CreateSubscription": unary(self.create_subscription, Subscription.pb()),
                "GetSubscription": unary(self.get_subscription, GetSubscriptionRequest.pb()),
                "UpdateSubscription": unary(self.update_subscription, UpdateSubscriptionRequest.pb()),
                "ListSubscriptions": unary(self.list_subscriptions, ListSubscriptionsRequest.pb()),
                "DeleteSubscription": unary(self.delete_subscription, DeleteSubscriptionRequest.pb()),
                "ModifyAckDeadline": unary(self.modify_ack_deadline, ModifyAckDeadlineRequest.pb()),
                "Acknowledge": unary(self.acknowledge, AcknowledgeRequest.pb()),
                "Pull": unary(self.pull, PullRequest.pb(), serializer=raw),
                "StreamingPull": grpc.stream_stream_rpc_method_handler(
                    self.streaming_pull,
                    request_deserializer=StreamingPullRequestPb.FromString,
                    response_serializer=raw,
                ),
                "Seek": unary(self.seek, SeekRequest.pb()),
                "CreateSnapshot": unary(self.create_snapshot, CreateSnapshotRequest.pb()),
                "GetSnapshot": unary(self.get_snapshot, GetSnapshotRequest.pb()),
                "ListSnapshots": unary(self.list_snapshots, ListSnapshotsRequest.pb()),
                "UpdateSnapshot": unary(self.update_snapshot, UpdateSnapshotRequest.pb()),
                "DeleteSnapshot": unary(self.delete_snapshot, DeleteSnapshotRequest.pb()),
            },
        )

    # ------------------------------------------------------------------------------------- administration
    def create_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.HasField("push_config") and request.push_config.push_endpoint:
            raise PubSubError(grpc.StatusCode.UNIMPLEMENTED, "Push subscriptions are not supported by this emulator")
        return self.store.create_subscription(request)

    def get_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.get_subscription(request.subscription)

    def update_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.update_subscription(request.subscription, request.update_mask.paths)

    def list_subscriptions(self, request: Any, context: grpc.ServicerContext) -> Any:
        subs, token = page(self.store.list_subscriptions(request.project), request.page_size, request.page_token)
        response = ListSubscriptionsResponsePb(next_page_token=token)
        response.subscriptions.extend(subs)
        return response

    def delete_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.store.delete_subscription(request.subscription)
        return EMPTY

    # ------------------------------------------------------------------------------------------- delivery
    def pull(self, request: Any, context: grpc.ServicerContext) -> bytes:
        if request.max_messages <= 0:
            raise invalid_argument("max_messages must be greater than 0")
        wait = 0.0 if request.return_immediately else PULL_WAIT_SECONDS
        remaining = context.time_remaining()
        if remaining is not None:
            wait = max(0.0, min(wait, remaining - 0.5))
        received, _ = self.store.pull(request.subscription, min(request.max_messages, MAX_PULL_MESSAGES), wait)
        return pull_response(received)

    def acknowledge(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.ack_ids:
            raise invalid_argument("No ack ids specified")
        self.store.acknowledge(request.subscription, request.ack_ids)
        return EMPTY

    def modify_ack_deadline(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.ack_ids:
            raise invalid_argument("No ack ids specified")
        self.store.modify_ack_deadline(request.subscription, request.ack_ids, request.ack_deadline_seconds)
        return EMPTY

    def seek(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.HasField("time"):
            self.store.seek_to_time(request.subscription, request.time.seconds + request.time.nanos / 1e9)
            return SeekResponsePb()
        if request.snapshot:
            self.store.seek_to_snapshot(request.subscription, request.snapshot)
            return SeekResponsePb()
        raise invalid_argument("Seek needs a time or a snapshot")

    # ------------------------------------------------------------------------------------------ snapshots
    def create_snapshot(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.create_snapshot(request.name, request.subscription, dict(request.labels))

    def get_snapshot(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.get_snapshot(request.snapshot)

    def list_snapshots(self, request: Any, context: grpc.ServicerContext) -> Any:
        snapshots, token = page(self.store.list_snapshots(request.project), request.page_size, request.page_token)
        response = ListSnapshotsResponsePb(next_page_token=token)
        response.snapshots.extend(snapshots)
        return response

    def update_snapshot(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.update_snapshot(request.snapshot, request.update_mask.paths)

    def delete_snapshot(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.store.delete_snapshot(request.snapshot)
        return EMPTY

    def streaming_pull(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            first = next(requests)
        except StopIteration:
            return
        try:
            name = first.subscription
            self.store.get_subscription(name)
            if not 10 <= first.stream_ack_deadline_seconds <= 600:
                raise invalid_argument(
                    f"Invalid stream_ack_deadline_seconds: {first.stream_ack_deadline_seconds}; "
                    "it must be between 10 and 600"
                )
            _check_modacks(first)
        except PubSubError as exc:
            context.abort(exc.code, exc.message)
        stream = Stream(first.stream_ack_deadline_seconds, first.max_outstanding_messages, first.max_outstanding_bytes)
        self._apply(name, stream, first)
        context.add_callback(lambda: self.store.close_stream(name, stream))
        threading.Thread(
            target=self._read, args=(name, stream, requests), daemon=True, name="streaming-pull-reader"
        ).start()
        while True:
            try:
                received, sub = self.store.pull(name, STREAM_BATCH, wait=1.0, stream=stream)
            except PubSubError as exc:
                context.abort(exc.code, exc.message)
            if stream.closed or self.store.stopped:
                return
            if received:
                yield pull_response(received) + (ORDERED_PROPERTIES if sub.ordered else b"")

    def _apply(self, name: str, stream: Stream, request: Any) -> None:
        modacks = list(zip(request.modify_deadline_ack_ids, request.modify_deadline_seconds, strict=False))
        if request.ack_ids or modacks:
            self.store.stream_requests(name, stream, request.ack_ids, modacks)

    def _read(self, name: str, stream: Stream, requests: Iterator[Any]) -> None:
        """Consume the client's half of the stream until it ends or breaks."""
        try:
            for request in requests:
                if len(request.modify_deadline_ack_ids) != len(request.modify_deadline_seconds):
                    break
                if request.stream_ack_deadline_seconds:
                    stream.ack_deadline = max(10, min(600, request.stream_ack_deadline_seconds))
                self._apply(name, stream, request)
        except Exception:
            pass
        finally:
            self.store.close_stream(name, stream)


def _check_modacks(request: Any) -> None:
    if len(request.modify_deadline_ack_ids) != len(request.modify_deadline_seconds):
        raise invalid_argument("modify_deadline_ack_ids and modify_deadline_seconds must have the same length")
