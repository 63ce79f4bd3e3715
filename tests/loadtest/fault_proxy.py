"""A gRPC proxy in front of the real Pub/Sub emulator that answers scripted Publish calls with the errors the
emulator's own fault injection cannot give (it injects UNAVAILABLE only, before storing: emulator/pubsub/faults.py):

- "resource_exhausted": refused before forwarding, as a quota refusal is (nothing stored);
- "deadline_exceeded": forwarded, stored by the emulator, then answered DEADLINE_EXCEEDED, as a Publish whose
  response came too late (the message exists, the publisher does not know it);
- "pass" (or an exhausted script): forwarded as is.

Every other call passes through. The bytes are relayed untouched; the proxy records each Publish request's size.
"""

from __future__ import annotations

import threading
from concurrent import futures

import grpc

from publisher.pubsub import PUBLISH_METHOD

REFUSE_BEFORE = "resource_exhausted"
FAIL_AFTER = "deadline_exceeded"
_LIMITS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


class FaultProxy:
    def __init__(self, upstream: str, script: list[str]) -> None:
        self._upstream = grpc.insecure_channel(upstream, options=_LIMITS)
        self._script = list(script)
        self._lock = threading.Lock()
        self.calls: list[tuple[str, int]] = []  # (what was done, request bytes) per Publish
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=_LIMITS)
        self._server.add_generic_rpc_handlers([_Relay(self)])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None).wait(5)
        self._upstream.close()

    def next_action(self, size: int) -> str:
        with self._lock:
            action = self._script.pop(0) if self._script else "pass"
            self.calls.append((action, size))
        return action

    def forward(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        call = self._upstream.unary_unary(method)
        try:
            metadata = [(k, v) for k, v in context.invocation_metadata() if k == "x-goog-request-params"]
            return call(request, timeout=30, metadata=metadata)
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")


class _Relay(grpc.GenericRpcHandler):
    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method
        proxy = self._proxy

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            if method != PUBLISH_METHOD:
                return proxy.forward(method, request, context)
            action = proxy.next_action(len(request))
            if action == REFUSE_BEFORE:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "injected by the test proxy: quota exceeded")
            response = proxy.forward(method, request, context)
            if action == FAIL_AFTER:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "injected by the test proxy: stored, answered late")
            return response

        return grpc.unary_unary_rpc_method_handler(handle)
