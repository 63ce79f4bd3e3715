"""google.iam.v1.IAMPolicy over grpcio generic handlers: the IAM methods Pub/Sub serves on its own endpoint, which
`PublisherClient.get_iam_policy` / `set_iam_policy` / `test_iam_permissions` (and the SubscriberClient's) call.
The rules are in emulator.pubsub.iam."""

from __future__ import annotations

from typing import Any

import grpc
from google.iam.v1 import iam_policy_pb2

from emulator.pubsub.rpc import unary
from emulator.pubsub.store import Store

SERVICE = "google.iam.v1.IAMPolicy"


class IamService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "GetIamPolicy": unary(self.get_iam_policy, iam_policy_pb2.GetIamPolicyRequest),
                "SetIamPolicy": unary(self.set_iam_policy, iam_policy_pb2.SetIamPolicyRequest),
                "TestIamPermissions": unary(self.test_iam_permissions, iam_policy_pb2.TestIamPermissionsRequest),
            },
        )

    def get_iam_policy(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.get_iam_policy(request.resource, request.options.requested_policy_version)

    def set_iam_policy(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.set_iam_policy(request.resource, request.policy, request.update_mask.paths)

    def test_iam_permissions(self, request: Any, context: grpc.ServicerContext) -> Any:
        allowed = self.store.test_iam_permissions(request.resource, request.permissions)
        return iam_policy_pb2.TestIamPermissionsResponse(permissions=allowed)
