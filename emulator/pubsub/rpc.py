"""Glue between the store and grpcio's generic handlers: request parsing and error translation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from emulator.pubsub.errors import PubSubError


def raw(data: bytes) -> bytes:
    """Serializer for responses the emulator already holds as bytes."""
    return data


def unary(
    fn: Callable[[Any, grpc.ServicerContext], Any], request_class: Any, serializer: Callable[[Any], bytes] | None = None
) -> grpc.RpcMethodHandler:
    """A unary-unary handler that turns PubSubError into the matching status code."""

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request, context)
        except PubSubError as exc:
            context.abort(exc.code, exc.message)

    return grpc.unary_unary_rpc_method_handler(
        handler,
        request_deserializer=request_class.FromString,
        response_serializer=serializer or (lambda message: message.SerializeToString()),
    )


def page(items: list[Any], page_size: int, page_token: str) -> tuple[list[Any], str]:
    """Slice a sorted list for List* calls; the token is the offset of the next page."""
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        raise PubSubError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid page token: {page_token}") from None
    size = page_size if page_size > 0 else 1000
    chunk = items[start : start + size]
    more = start + size < len(items)
    return chunk, str(start + size) if more else ""
