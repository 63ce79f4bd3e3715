"""google.pubsub.v1.Publisher over grpcio generic handlers (topics and Publish)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.pubsub_v1.types import (
    DeleteTopicRequest,
    GetTopicRequest,
    ListTopicSnapshotsRequest,
    ListTopicSnapshotsResponse,
    ListTopicsRequest,
    ListTopicsResponse,
    ListTopicSubscriptionsRequest,
    ListTopicSubscriptionsResponse,
    PublishRequest,
    PublishResponse,
    Topic,
    UpdateTopicRequest,
)

from emulator.pubsub import names
from emulator.pubsub.delivery import MAX_REQUEST_BYTES
from emulator.pubsub.errors import PubSubError, invalid_argument
from emulator.pubsub.rpc import page, unary
from emulator.pubsub.store import Store

SERVICE = "google.pubsub.v1.Publisher"

PublishRequestPb = PublishRequest.pb()
PublishResponsePb = PublishResponse.pb()
ListTopicsResponsePb = ListTopicsResponse.pb()
ListTopicSubscriptionsResponsePb = ListTopicSubscriptionsResponse.pb()
ListTopicSnapshotsResponsePb = ListTopicSnapshotsResponse.pb()
EMPTY = empty_pb2.Empty()


class _SizedPublishRequest:
    """Parses a PublishRequest and remembers its wire size, which the 10 MB limit is about."""

    @staticmethod
    def FromString(data: bytes) -> tuple[int, Any]:
        return len(data), PublishRequestPb.FromString(data)


class PublisherService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "CreateTopic": unary(self.create_topic, Topic.pb()),
                "UpdateTopic": unary(self.update_topic, UpdateTopicRequest.pb()),
                "Publish": unary(self.publish, _SizedPublishRequest),
                "GetTopic": unary(self.get_topic, GetTopicRequest.pb()),
                "ListTopics": unary(self.list_topics, ListTopicsRequest.pb()),
                "ListTopicSubscriptions": unary(self.list_topic_subscriptions, ListTopicSubscriptionsRequest.pb()),
                "ListTopicSnapshots": unary(self.list_topic_snapshots, ListTopicSnapshotsRequest.pb()),
                "DeleteTopic": unary(self.delete_topic, DeleteTopicRequest.pb()),
            },
        )

    def create_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.create_topic(request)

    def update_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.update_topic(request.topic, request.update_mask.paths)

    def publish(self, sized: tuple[int, Any], context: grpc.ServicerContext) -> Any:
        size, request = sized
        if size > MAX_REQUEST_BYTES:
            raise invalid_argument(f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes.")
        if self.store.faults.any_active and self.store.faults.fail_publish(request.topic):
            raise PubSubError(
                grpc.StatusCode.UNAVAILABLE,
                "The service was unable to fulfill your request (injected fault: publish failure). Please try again.",
            )
        ids = self.store.publish(request.topic, request.messages)
        response = PublishResponsePb()
        response.message_ids.extend(ids)
        return response

    def get_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.get_topic(request.topic)

    def list_topics(self, request: Any, context: grpc.ServicerContext) -> Any:
        topics, token = page(self.store.list_topics(request.project), request.page_size, request.page_token)
        response = ListTopicsResponsePb(next_page_token=token)
        response.topics.extend(topics)
        return response

    def list_topic_subscriptions(self, request: Any, context: grpc.ServicerContext) -> Any:
        subs, token = page(self.store.list_topic_subscriptions(request.topic), request.page_size, request.page_token)
        response = ListTopicSubscriptionsResponsePb(next_page_token=token)
        response.subscriptions.extend(subs)
        return response

    def list_topic_snapshots(self, request: Any, context: grpc.ServicerContext) -> Any:
        snapshots, token = page(self.store.list_topic_snapshots(request.topic), request.page_size, request.page_token)
        response = ListTopicSnapshotsResponsePb(next_page_token=token)
        response.snapshots.extend(snapshots)
        return response

    def delete_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        names.topic_name(request.topic)
        self.store.delete_topic(request.topic)
        return EMPTY
