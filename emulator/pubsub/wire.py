"""Hand-encoding of the delivery responses, the emulator's hottest path.

PullResponse and StreamingPullResponse both carry `repeated ReceivedMessage received_messages = 1`, and a
ReceivedMessage is `ack_id = 1, message = 2, delivery_attempt = 3`. The store keeps every PubsubMessage already
serialized, so a response is a concatenation of byte strings: no protobuf objects are built per delivery.
"""

from __future__ import annotations

from collections.abc import Iterable


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def received_message(ack_id: bytes, message: bytes, delivery_attempt: int = 0) -> bytes:
    """One serialized ReceivedMessage."""
    body = b"\n" + varint(len(ack_id)) + ack_id + b"\x12" + varint(len(message)) + message
    if delivery_attempt:
        body += b"\x18" + varint(delivery_attempt)
    return body


def pull_response(received: Iterable[bytes]) -> bytes:
    """A serialized PullResponse / StreamingPullResponse from serialized ReceivedMessages."""
    return b"".join(b"\n" + varint(len(item)) + item for item in received)
