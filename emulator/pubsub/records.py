"""The journal's records: one small class per state change, with its payload codec.

The store applies a record to change its state (emulator.pubsub.store.Store.apply) both while running and when
it replays the journal at start-up, so each change is written once. `kind` names the record in the journal file
(emulator.pubsub.journal keeps the list of kinds; the payload formats below must not change, or an existing
data directory would no longer replay).

    record = Ack("projects/p/subscriptions/s", [3, 4])
    assert decode(record.kind, record.encode()) == record
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from google.iam.v1 import policy_pb2

from emulator.pubsub.state import Message, PubsubMessagePb, SubscriptionPb, TopicPb


class Record:
    kind: ClassVar[str]

    def encode(self) -> bytes:
        raise NotImplementedError

    @property
    def top_seq(self) -> int:
        """The highest message number the record names (0: none); message ids continue after it on restart."""
        return 0


@dataclass
class TopicPut(Record):
    """A topic created or updated."""

    kind: ClassVar[str] = "topic_put"
    pb: Any

    def encode(self) -> bytes:
        return self.pb.SerializeToString()


@dataclass
class TopicDelete(Record):
    kind: ClassVar[str] = "topic_del"
    name: str

    def encode(self) -> bytes:
        return self.name.encode()


@dataclass
class SubscriptionPut(Record):
    """A subscription created or updated."""

    kind: ClassVar[str] = "sub_put"
    pb: Any

    def encode(self) -> bytes:
        return self.pb.SerializeToString()


@dataclass
class SubscriptionDelete(Record):
    kind: ClassVar[str] = "sub_del"
    name: str

    def encode(self) -> bytes:
        return self.name.encode()


@dataclass
class Publish(Record):
    """Messages published to a topic: every subscription of the topic gets them."""

    kind: ClassVar[str] = "publish"
    topic: str
    messages: list[Message]

    def encode(self) -> bytes:
        return _encode_messages(self.topic, self.messages)

    @property
    def top_seq(self) -> int:
        return self.messages[-1].seq if self.messages else 0


@dataclass
class Deliver(Record):
    """Messages unacked on one subscription: how a compacted journal holds the backlog."""

    kind: ClassVar[str] = "deliver"
    subscription: str
    messages: list[Message]

    def encode(self) -> bytes:
        return _encode_messages(self.subscription, self.messages)

    @property
    def top_seq(self) -> int:
        return self.messages[-1].seq if self.messages else 0


@dataclass
class Ack(Record):
    """Messages gone from a subscription: acked, or dropped (retention, dead letter)."""

    kind: ClassVar[str] = "ack"
    subscription: str
    seqs: list[int]

    def encode(self) -> bytes:
        return _encode_name(self.subscription) + b"".join(s.to_bytes(8, "little") for s in self.seqs)


@dataclass
class Reset(Record):
    """Exactly these messages are a subscription's unacked ones (seek to a snapshot: snapshots are not
    journaled, so the outcome is)."""

    kind: ClassVar[str] = "reset"
    subscription: str
    messages: list[Message]

    def encode(self) -> bytes:
        return _encode_messages(self.subscription, self.messages)


@dataclass
class SeekToTime(Record):
    kind: ClassVar[str] = "seek"
    subscription: str
    when: float

    def encode(self) -> bytes:
        return _encode_name(self.subscription) + repr(self.when).encode()


@dataclass
class LastSeq(Record):
    """The highest message number so far, first in a compacted journal: ids stay unique even when every message
    was acked."""

    kind: ClassVar[str] = "seq"
    seq: int

    def encode(self) -> bytes:
        return self.seq.to_bytes(8, "little")

    @property
    def top_seq(self) -> int:
        return self.seq


@dataclass
class IamPolicyPut(Record):
    """The IAM policy of a topic or subscription, set (emulator.pubsub.iam); deleting the resource drops it."""

    kind: ClassVar[str] = "iam_put"
    resource: str
    policy: Any

    def encode(self) -> bytes:
        return _encode_name(self.resource) + self.policy.SerializeToString()


def decode(kind: str, payload: bytes) -> Record:
    """The record of one journal entry."""
    if kind == "topic_put":
        return TopicPut(TopicPb.FromString(payload))
    if kind == "topic_del":
        return TopicDelete(payload.decode())
    if kind == "sub_put":
        return SubscriptionPut(SubscriptionPb.FromString(payload))
    if kind == "sub_del":
        return SubscriptionDelete(payload.decode())
    if kind in ("publish", "deliver", "reset"):
        target, messages = _decode_messages(payload)
        return {"publish": Publish, "deliver": Deliver, "reset": Reset}[kind](target, messages)
    if kind == "ack":
        name, body = _decode_name(payload)
        return Ack(name, [int.from_bytes(body[i : i + 8], "little") for i in range(0, len(body), 8)])
    if kind == "seek":
        name, body = _decode_name(payload)
        return SeekToTime(name, float(body.decode()))
    if kind == "seq":
        return LastSeq(int.from_bytes(payload, "little"))
    if kind == "iam_put":
        name, body = _decode_name(payload)
        return IamPolicyPut(name, policy_pb2.Policy.FromString(body))
    raise ValueError(f"unknown journal record kind {kind!r}")


def _encode_name(name: str) -> bytes:
    raw = name.encode()
    return len(raw).to_bytes(2, "little") + raw


def _decode_name(payload: bytes) -> tuple[str, bytes]:
    """The name a payload starts with, and the rest of the payload."""
    n = int.from_bytes(payload[:2], "little")
    return payload[2 : 2 + n].decode(), payload[2 + n :]


def _encode_messages(target: str, messages: list[Message]) -> bytes:
    parts = [_encode_name(target)]
    for msg in messages:
        parts.append(msg.size.to_bytes(4, "little"))
        parts.append(msg.data)
    return b"".join(parts)


def _decode_messages(payload: bytes) -> tuple[str, list[Message]]:
    target, body = _decode_name(payload)
    pos = 0
    messages = []
    while pos < len(body):
        size = int.from_bytes(body[pos : pos + 4], "little")
        data = body[pos + 4 : pos + 4 + size]
        pos += 4 + size
        pb = PubsubMessagePb.FromString(data)
        publish_time = pb.publish_time.seconds + pb.publish_time.nanos / 1e9
        messages.append(Message(int(pb.message_id), data, pb.ordering_key, publish_time, dict(pb.attributes)))
    return target, messages
