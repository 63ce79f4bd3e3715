"""The emulator's state, as plain objects the store's modules share: messages, topics, subscriptions (with their
delivery queues), snapshots, and the flow control of a StreamingPull connection.

Messages are stored once, already serialized with their message_id and publish_time, and shared by every
subscription of the topic; a subscription holds one small `Delivery` per unacked message. An ack id is
`{message seq}-{delivery number}-{subscription number}`: valid on one subscription, stale after a redelivery.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from google.pubsub_v1.types import PubsubMessage, Snapshot, Subscription, Topic

from emulator.pubsub.errors import invalid_argument
from emulator.pubsub.filters import Predicate, compile_filter

TopicPb = Topic.pb()
SubscriptionPb = Subscription.pb()
PubsubMessagePb = PubsubMessage.pb()
SnapshotPb = Snapshot.pb()

DEFAULT_ACK_DEADLINE = 10
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600
DEFAULT_MAX_DELIVERY_ATTEMPTS = 5
DEFAULT_MIN_BACKOFF = 10.0
DEFAULT_MAX_BACKOFF = 600.0


class Message:
    """One published message, shared by all subscriptions of its topic."""

    __slots__ = ("attributes", "data", "ordering_key", "publish_time", "seq", "size")

    def __init__(
        self, seq: int, data: bytes, ordering_key: str, publish_time: float, attributes: dict[str, str] | None
    ) -> None:
        self.seq = seq
        self.data = data
        self.size = len(data)
        self.ordering_key = ordering_key
        self.publish_time = publish_time
        # Kept only when some subscription needs them (filters); dead-lettering re-parses `data`.
        self.attributes = attributes


class Delivery:
    """One subscription's state for one unacked message."""

    __slots__ = ("attempts", "available_at", "done", "gen", "lease", "msg", "out", "stream")

    def __init__(self, msg: Message, available_at: float = 0.0) -> None:
        self.msg = msg
        self.attempts = 0
        self.gen = 0  # bumped on every delivery: part of the ack id, so stale modacks are ignored
        self.lease = 0  # token of the current lease; 0 when not leased
        self.out = False  # delivered and not yet acked, nacked or expired
        self.done = False  # acked, dead-lettered, expired by retention or removed by seek
        self.stream: Stream | None = None
        self.available_at = available_at

    def ack_id(self, subscription_number: int) -> bytes:
        return b"%d-%d-%d" % (self.msg.seq, self.gen, subscription_number)


class Stream:
    """Flow-control and lease bookkeeping of one StreamingPull connection."""

    __slots__ = ("ack_deadline", "closed", "max_bytes", "max_messages", "out_bytes", "out_messages")

    def __init__(self, ack_deadline: float, max_messages: int, max_bytes: int) -> None:
        self.ack_deadline = ack_deadline
        self.max_messages = max_messages  # 0 = unlimited, as in the API
        self.max_bytes = max_bytes
        self.out_messages = 0
        self.out_bytes = 0
        self.closed = False

    def room(self) -> tuple[int, int]:
        n = self.max_messages - self.out_messages if self.max_messages > 0 else 1 << 30
        b = self.max_bytes - self.out_bytes if self.max_bytes > 0 else 1 << 62
        return n, b


@dataclass
class SnapshotState:
    """A subscription's unacked messages at creation, plus every message published to the topic since."""

    pb: Any
    expire_at: float
    unacked: dict[int, Message] = field(default_factory=dict)
    after: dict[int, Message] = field(default_factory=dict)


@dataclass
class TopicState:
    pb: Any
    subscriptions: list[SubscriptionState] = field(default_factory=list)
    snapshots: list[SnapshotState] = field(default_factory=list)
    published: int = 0


class SubscriptionState:
    def __init__(self, pb: Any, cond: threading.Condition, number: int) -> None:
        self.pb = pb
        self.number = number  # part of every ack id, so an ack id is only valid on this subscription
        self.name: str = pb.name
        self.topic: str = pb.topic
        self.cond = cond
        self.messages: dict[int, Delivery] = {}
        self.ready: deque[Delivery] = deque()
        self.redeliver: deque[Delivery] = deque()
        self.delayed: list[tuple[float, int, Delivery]] = []  # (available_at, seq, delivery)
        self.leases: list[tuple[float, int, list[Delivery]]] = []  # (deadline, token, deliveries)
        self.duplicates: deque[Delivery] = deque()
        self.key_queues: dict[str, deque[Delivery]] = {}
        self.key_out: dict[str, int] = {}
        self.ready_keys: deque[str] = deque()
        self.ready_key_set: set[str] = set()
        self.acked_retained: deque[Message] = deque()
        self.waiters = 0
        self.outstanding = 0  # leased messages
        self.deleted = False
        self.delivered = 0
        self.acked = 0
        self.dead_lettered = 0
        self.configure()

    def configure(self) -> None:
        pb = self.pb
        self.ack_deadline = float(pb.ack_deadline_seconds or DEFAULT_ACK_DEADLINE)
        self.filter: Predicate | None = compile_filter(pb.filter)
        self.ordered = bool(pb.enable_message_ordering)
        retention = pb.message_retention_duration
        self.retention = (
            float(retention.seconds + retention.nanos / 1e9)
            if pb.HasField("message_retention_duration")
            else float(DEFAULT_RETENTION_SECONDS)
        )
        self.retain_acked = bool(pb.retain_acked_messages)
        if pb.HasField("dead_letter_policy") and pb.dead_letter_policy.dead_letter_topic:
            self.dead_letter_topic: str | None = pb.dead_letter_policy.dead_letter_topic
            self.max_attempts = pb.dead_letter_policy.max_delivery_attempts or DEFAULT_MAX_DELIVERY_ATTEMPTS
        else:
            self.dead_letter_topic = None
            self.max_attempts = 0
        if pb.HasField("retry_policy"):
            rp = pb.retry_policy
            self.min_backoff: float | None = (
                rp.minimum_backoff.seconds + rp.minimum_backoff.nanos / 1e9
                if rp.HasField("minimum_backoff")
                else DEFAULT_MIN_BACKOFF
            )
            self.max_backoff = (
                rp.maximum_backoff.seconds + rp.maximum_backoff.nanos / 1e9
                if rp.HasField("maximum_backoff")
                else DEFAULT_MAX_BACKOFF
            )
        else:
            self.min_backoff = None
            self.max_backoff = 0.0

    @property
    def backlog(self) -> int:
        return len(self.messages)


def parse_ack_id(ack_id: str, subscription_number: int) -> tuple[int, int]:
    """(message seq, delivery number) of an ack id; (-1, -1) when it belongs to another subscription (ack ids are
    only valid on the subscription that handed them out)."""
    parts = ack_id.split("-")
    try:
        seq, gen, number = (int(part) for part in parts)
    except ValueError:
        raise invalid_argument(f"Invalid ack id (ack_id={ack_id})") from None
    if number != subscription_number:
        return -1, -1
    return seq, gen


def attributes_of(msg: Message) -> dict[str, str]:
    """A message's attributes, parsed from its bytes when they were not kept at publish."""
    if msg.attributes is None:
        msg.attributes = dict(PubsubMessagePb.FromString(msg.data).attributes)
    return msg.attributes
