"""The error the store raises for a request it refuses; the gRPC services turn it into a status code."""

from __future__ import annotations

import grpc


class PubSubError(Exception):
    """A refused request: the gRPC status code and the message the client sees."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid_argument(message: str) -> PubSubError:
    return PubSubError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(what: str) -> PubSubError:
    return PubSubError(grpc.StatusCode.NOT_FOUND, f"{what} not found")


def already_exists(what: str) -> PubSubError:
    return PubSubError(grpc.StatusCode.ALREADY_EXISTS, f"{what} already exists")
