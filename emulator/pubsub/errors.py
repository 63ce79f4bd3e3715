"""The emulator's two errors: PubSubError for a request it refuses (the gRPC services turn it into a status code),
EmulatorError for an emulator that cannot start or be reached as asked (its front ends print it)."""

from __future__ import annotations

import grpc

from endpoints.errors import FixableError


class PubSubError(Exception):
    """A refused request: the gRPC status code and the message the client sees."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EmulatorError(FixableError):
    """A problem the operator can fix (a taken port, an unwritable data directory, the admin service off): what
    went wrong and what to do instead. `python -m emulator.pubsub` prints both and exits with status 2; the
    workbench CLI shows them as its own errors."""


def invalid_argument(message: str) -> PubSubError:
    return PubSubError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(what: str) -> PubSubError:
    return PubSubError(grpc.StatusCode.NOT_FOUND, f"{what} not found")


def already_exists(what: str) -> PubSubError:
    return PubSubError(grpc.StatusCode.ALREADY_EXISTS, f"{what} already exists")
