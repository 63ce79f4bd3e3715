"""The emulator's state and delivery semantics: topics, subscriptions, messages, leases, redelivery.

One lock guards everything (coarse but short: no I/O and no waiting happens under it, except the condition
waits that release it). Messages are stored once, already serialized with their message_id and publish_time,
and shared by every subscription of the topic; a subscription holds one small `Delivery` per unacked message.

Delivery model (what the real service documents, what clients rely on):
- at-least-once: a delivered message is leased until its ack deadline; an expired lease, or a nack (modack 0),
  makes it deliverable again, after the retry policy's backoff if the subscription has one;
- dead letter: once a message has been delivered `max_delivery_attempts` times and is not acked, it is
  republished to the dead-letter topic with the CloudPubSubDeadLetterSource* attributes and removed;
- ordering keys (subscriptions with enable_message_ordering): per key, messages go out in publish order, and
  nothing of a key is delivered while an earlier message of that key is leased (a batch may hold several);
- filters: messages a subscription's filter rejects are never delivered (acknowledged at publish, as documented);
- retention: unacked messages older than message_retention_duration are dropped; with retain_acked_messages,
  acked ones are kept for Seek to a time.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.pubsub_v1.types import PubsubMessage, Snapshot, Subscription, Topic

from emulator.pubsub import names
from emulator.pubsub.errors import PubSubError, already_exists, invalid_argument, not_found
from emulator.pubsub.faults import FaultInjector
from emulator.pubsub.filters import Predicate, compile_filter
from emulator.pubsub.wire import received_message

TopicPb = Topic.pb()
SubscriptionPb = Subscription.pb()
PubsubMessagePb = PubsubMessage.pb()
SnapshotPb = Snapshot.pb()

MAX_PUBLISH_MESSAGES = 1000
MAX_REQUEST_BYTES = 10 * 1024 * 1024
# Pull/StreamingPull responses stay under gRPC's default 4 MiB receive limit, which google-cloud-pubsub keeps on
# its emulator channel (PUBSUB_EMULATOR_HOST) and Beam's reader inherits; 64 KiB is left for ack ids and framing.
# Only a single message larger than that goes out alone, above it. A bigger batch gains nothing measurable.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024 - 64 * 1024
DEFAULT_ACK_DEADLINE = 10
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600
DEFAULT_MAX_DELIVERY_ATTEMPTS = 5
DEFAULT_MIN_BACKOFF = 10.0
DEFAULT_MAX_BACKOFF = 600.0
SNAPSHOT_LIFETIME = 7 * 24 * 3600.0  # the official emulator sets expire_time to creation + 7 days


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


class Store:
    """All emulator state. Methods raise PubSubError; the gRPC services translate it into status codes."""

    def __init__(self, faults: FaultInjector | None = None, journal: Any = None) -> None:
        self.lock = threading.Lock()
        self.topics: dict[str, TopicState] = {}
        self.subscriptions: dict[str, SubscriptionState] = {}
        self.snapshots: dict[str, SnapshotState] = {}
        self.faults = faults or FaultInjector()
        self.journal = journal
        self._seq = itertools.count(1)
        self._lease_token = itertools.count(1)
        self._sub_numbers = itertools.count(1)
        self.stopped = False

    # ------------------------------------------------------------------------------------------------ topics
    def create_topic(self, pb: Any) -> Any:
        names.topic_name(pb.name)
        if pb.HasField("message_retention_duration"):
            self._check_retention(pb.message_retention_duration)
        with self.lock:
            if pb.name in self.topics:
                raise already_exists("Topic")
            stored = TopicPb()
            stored.CopyFrom(pb)
            self.topics[pb.name] = TopicState(stored)
            ticket = self._log("topic_put", stored.SerializeToString())
        self._wait(ticket)
        return stored

    def get_topic(self, name: str) -> Any:
        names.topic_name(name)
        with self.lock:
            topic = self.topics.get(name)
            if topic is None:
                raise not_found("Topic")
            return topic.pb

    def update_topic(self, pb: Any, paths: Iterable[str]) -> Any:
        names.topic_name(pb.name)
        paths = list(paths)
        if not paths:
            raise invalid_argument("No update_mask provided or update_mask is empty")
        with self.lock:
            topic = self.topics.get(pb.name)
            if topic is None:
                raise not_found("Topic")
            updated = TopicPb()
            updated.CopyFrom(topic.pb)
            _apply_mask(updated, pb, paths, immutable={"name"})
            topic.pb = updated
            ticket = self._log("topic_put", updated.SerializeToString())
        self._wait(ticket)
        return updated

    def list_topics(self, project: str) -> list[Any]:
        names.project_name(project)
        prefix = project + "/topics/"
        with self.lock:
            return [t.pb for name, t in sorted(self.topics.items()) if name.startswith(prefix)]

    def list_topic_subscriptions(self, topic_name: str) -> list[str]:
        names.topic_name(topic_name)
        with self.lock:
            topic = self.topics.get(topic_name)
            if topic is None:
                raise not_found("Topic")
            return sorted(s.name for s in topic.subscriptions)

    def delete_topic(self, name: str) -> None:
        names.topic_name(name)
        with self.lock:
            topic = self.topics.pop(name, None)
            if topic is None:
                raise not_found("Topic")
            # Subscriptions survive their topic, pointing at the marker the real service uses.
            for sub in topic.subscriptions:
                sub.topic = names.DELETED_TOPIC
                sub.pb.topic = names.DELETED_TOPIC
            ticket = self._log("topic_del", name.encode())
        self._wait(ticket)

    # ----------------------------------------------------------------------------------------- subscriptions
    def create_subscription(self, pb: Any) -> Any:
        names.subscription_name(pb.name)
        names.topic_name(pb.topic)
        stored = SubscriptionPb()
        stored.CopyFrom(pb)
        self._validate_subscription(stored)
        with self.lock:
            if pb.name in self.subscriptions:
                raise already_exists("Subscription")
            topic = self.topics.get(pb.topic)
            if topic is None:
                raise not_found("Topic")
            sub = SubscriptionState(stored, threading.Condition(self.lock), next(self._sub_numbers))
            self.subscriptions[pb.name] = sub
            topic.subscriptions.append(sub)
            ticket = self._log("sub_put", stored.SerializeToString())
        self._wait(ticket)
        return stored

    def _validate_subscription(self, pb: Any) -> None:
        if pb.ack_deadline_seconds == 0:
            pb.ack_deadline_seconds = DEFAULT_ACK_DEADLINE
        if not 10 <= pb.ack_deadline_seconds <= 600:
            raise invalid_argument(
                f"Invalid ack_deadline_seconds: {pb.ack_deadline_seconds}; it must be between 10 and 600"
            )
        if pb.HasField("message_retention_duration"):
            self._check_retention(pb.message_retention_duration)
        else:
            pb.message_retention_duration.seconds = DEFAULT_RETENTION_SECONDS
        compile_filter(pb.filter)
        if pb.HasField("dead_letter_policy"):
            policy = pb.dead_letter_policy
            if policy.dead_letter_topic:
                names.topic_name(policy.dead_letter_topic)
            if policy.max_delivery_attempts == 0:
                policy.max_delivery_attempts = DEFAULT_MAX_DELIVERY_ATTEMPTS
            if not 5 <= policy.max_delivery_attempts <= 100:
                raise invalid_argument("Invalid max_delivery_attempts: it must be between 5 and 100")
        if pb.HasField("retry_policy"):
            rp = pb.retry_policy
            low = rp.minimum_backoff.seconds + rp.minimum_backoff.nanos / 1e9
            high = (
                rp.maximum_backoff.seconds + rp.maximum_backoff.nanos / 1e9
                if rp.HasField("maximum_backoff")
                else DEFAULT_MAX_BACKOFF
            )
            if not (0 <= low <= 600 and 0 <= high <= 600 and low <= high):
                raise invalid_argument("Invalid retry_policy: backoffs must be within 0-600 s and minimum <= maximum")

    @staticmethod
    def _check_retention(duration: Any) -> None:
        seconds = duration.seconds + duration.nanos / 1e9
        if not 600 <= seconds <= 31 * 24 * 3600:
            raise invalid_argument("Invalid message_retention_duration: it must be between 10 minutes and 31 days")

    def get_subscription(self, name: str) -> Any:
        return self._subscription(name).pb

    def _subscription(self, name: str) -> SubscriptionState:
        names.subscription_name(name)
        sub = self.subscriptions.get(name)
        if sub is None:
            raise not_found("Subscription")
        return sub

    def update_subscription(self, pb: Any, paths: Iterable[str]) -> Any:
        names.subscription_name(pb.name)
        paths = list(paths)
        if not paths:
            raise invalid_argument("No update_mask provided or update_mask is empty")
        immutable = {"name", "topic", "filter", "enable_message_ordering"}
        with self.lock:
            sub = self._subscription(pb.name)
            updated = SubscriptionPb()
            updated.CopyFrom(sub.pb)
            _apply_mask(updated, pb, paths, immutable=immutable)
            self._validate_subscription(updated)
            sub.pb = updated
            sub.configure()
            ticket = self._log("sub_put", updated.SerializeToString())
        self._wait(ticket)
        return updated

    def list_subscriptions(self, project: str) -> list[Any]:
        names.project_name(project)
        prefix = project + "/subscriptions/"
        with self.lock:
            return [s.pb for name, s in sorted(self.subscriptions.items()) if name.startswith(prefix)]

    def delete_subscription(self, name: str) -> None:
        with self.lock:
            sub = self._subscription(name)
            del self.subscriptions[name]
            topic = self.topics.get(sub.topic)
            if topic is not None:
                topic.subscriptions.remove(sub)
            sub.deleted = True
            sub.cond.notify_all()
            ticket = self._log("sub_del", name.encode())
        self._wait(ticket)

    # ---------------------------------------------------------------------------------------------- publish
    def publish(self, topic_name: str, messages: Any) -> list[str]:
        """Store a PublishRequest's messages (raw protobuf PubsubMessage objects, modified in place)."""
        if not messages:
            raise invalid_argument("The request contains no messages")
        if len(messages) > MAX_PUBLISH_MESSAGES:
            raise invalid_argument(
                f"The value for message_count is too large. You passed {len(messages)} in the request, "
                f"but the maximum value is {MAX_PUBLISH_MESSAGES}."
            )
        for m in messages:
            if not m.data and not m.attributes:
                raise invalid_argument("Some messages contain no data and no attributes; at least one is required")
        now = time.time()
        seconds = int(now)
        nanos = int((now - seconds) * 1e9)
        with self.lock:
            topic = self.topics.get(topic_name)
            if topic is None:
                names.topic_name(topic_name)
                raise not_found("Topic")
            subs = topic.subscriptions
            need_attributes = any(s.filter is not None for s in subs)
            ids = []
            stored = []
            seq_counter = self._seq
            for m in messages:
                seq = next(seq_counter)
                message_id = str(seq)
                m.message_id = message_id
                ts = m.publish_time
                ts.seconds = seconds
                ts.nanos = nanos
                data = m.SerializeToString()
                stored.append(Message(seq, data, m.ordering_key, now, dict(m.attributes) if need_attributes else None))
                ids.append(message_id)
            topic.published += len(stored)
            for sub in subs:
                self._enqueue(sub, stored, now)
            for snapshot in topic.snapshots:
                snapshot.after.update((msg.seq, msg) for msg in stored)
            ticket = self._log("publish", _encode_publish(topic_name, stored))
        self._wait(ticket)
        return ids

    def _enqueue(self, sub: SubscriptionState, stored: list[Message], now: float) -> None:
        faults = self.faults
        delaying = (
            faults.any_active and faults.config_for(sub.name).delay_ms + faults.config_for(sub.name).jitter_ms > 0
        )
        predicate = sub.filter
        messages = sub.messages
        for msg in stored:
            if predicate is not None and not predicate(msg.attributes or {}):
                continue
            d = Delivery(msg)
            messages[msg.seq] = d
            if delaying:
                d.available_at = now + faults.delay_seconds(sub.name)
            if sub.ordered and msg.ordering_key:
                self._key_append(sub, d)
            elif delaying:
                heapq.heappush(sub.delayed, (d.available_at, msg.seq, d))
            else:
                sub.ready.append(d)
        if sub.waiters:
            sub.cond.notify_all()

    def _key_append(self, sub: SubscriptionState, d: Delivery) -> None:
        key = d.msg.ordering_key
        queue = sub.key_queues.get(key)
        if queue is None:
            queue = sub.key_queues[key] = deque()
        queue.append(d)
        if not sub.key_out.get(key) and key not in sub.ready_key_set:
            sub.ready_key_set.add(key)
            sub.ready_keys.append(key)

    # ------------------------------------------------------------------------------------------------ pull
    def pull(
        self, name: str, max_messages: int, wait: float, stream: Stream | None = None
    ) -> tuple[list[bytes], SubscriptionState]:
        """Lease up to max_messages (within the stream's flow control); waits up to `wait` s for the first.

        Returns serialized ReceivedMessages. Raises NOT_FOUND once the subscription is gone.
        """
        deadline = time.monotonic() + wait
        with self.lock:
            sub = self._subscription(name)
            while True:
                if sub.deleted:
                    raise not_found("Subscription")
                if self.stopped or (stream is not None and stream.closed):
                    return [], sub
                now = time.monotonic()
                self._expire(sub, now)
                # limit_b is the stream's flow-control room: soft, a response may pass it by one message as
                # the service's does. MAX_RESPONSE_BYTES, applied in _take, is hard.
                limit_n, limit_b = stream.room() if stream is not None else (max_messages, MAX_RESPONSE_BYTES)
                limit_n = min(limit_n, max_messages)
                if limit_n > 0 and limit_b > 0:
                    out = self._take(sub, limit_n, limit_b, stream, now)
                    if out:
                        return out, sub
                remaining = deadline - now
                if remaining <= 0:
                    return [], sub
                sub.waiters += 1
                try:
                    sub.cond.wait(min(remaining, self._next_event(sub, now)))
                finally:
                    sub.waiters -= 1

    @staticmethod
    def _next_event(sub: SubscriptionState, now: float) -> float:
        """How long a waiting pull may sleep before a lease expiry or delayed message needs it (<= 1 s)."""
        soonest = 1.0
        if sub.leases:
            soonest = min(soonest, sub.leases[0][0] - now)
        if sub.delayed:
            soonest = min(soonest, sub.delayed[0][0] - time.time())
        return max(soonest, 0.005)

    def _take(
        self, sub: SubscriptionState, limit_n: int, limit_b: int, stream: Stream | None, now: float
    ) -> list[bytes]:
        out: list[bytes] = []
        leased: list[Delivery] = []
        size = 0
        wall = time.time()
        faults = self.faults
        injecting = faults.any_active
        with_attempt = sub.dead_letter_topic is not None
        deadline_s = stream.ack_deadline if stream is not None else sub.ack_deadline

        # Injected duplicates go out first: a second copy of a message delivered earlier.
        while sub.duplicates and len(out) < limit_n:
            d = sub.duplicates.popleft()
            out.append(received_message(d.ack_id(sub.number), d.msg.data, d.attempts if with_attempt else 0))

        if sub.delayed:
            while sub.delayed and sub.delayed[0][0] <= wall:
                _, _, d = heapq.heappop(sub.delayed)
                if not d.done:
                    sub.redeliver.append(d) if d.attempts else sub.ready.append(d)

        retention_cutoff = wall - sub.retention

        def deliver(d: Delivery) -> bool:
            nonlocal size
            if d.msg.publish_time < retention_cutoff:
                self._drop(sub, d)
                return False
            if with_attempt and d.attempts >= sub.max_attempts:
                self._dead_letter(sub, d)
                return False
            d.attempts += 1
            d.gen += 1
            d.out = True
            sub.outstanding += 1
            d.stream = stream
            if stream is not None:
                stream.out_messages += 1
                stream.out_bytes += d.msg.size
            leased.append(d)
            out.append(received_message(d.ack_id(sub.number), d.msg.data, d.attempts if with_attempt else 0))
            size += d.msg.size
            if injecting and faults.duplicate(sub.name):
                sub.duplicates.append(d)
            return True

        for queue in (sub.redeliver, sub.ready):
            while queue and len(out) < limit_n:
                d = queue[0]
                if size >= limit_b or (not d.done and out and size + d.msg.size > MAX_RESPONSE_BYTES):
                    break  # flow control is used up, or the response would pass its hard size limit
                queue.popleft()
                if not d.done:
                    deliver(d)

        # Ordered keys: deliver a run of each free key's queue, in publish order.
        if sub.ready_keys:
            keys = sub.ready_keys
            for _ in range(len(keys)):
                if len(out) >= limit_n or size >= limit_b:
                    break
                key = keys.popleft()
                queue = sub.key_queues.get(key)
                while queue and queue[0].done:
                    queue.popleft()
                if not queue or sub.key_out.get(key):
                    sub.ready_key_set.discard(key)
                    if not queue:
                        sub.key_queues.pop(key, None)
                    continue
                if queue[0].available_at > wall:
                    keys.append(key)  # looked at again on a later pull; the wait wakes at least once a second
                    continue
                # A bounded copy: a hot key may queue far more than one response can carry, and delivering
                # (dead letter) may append to queues.
                for d in list(itertools.islice(queue, 0, limit_n - len(out) + 64)):
                    too_big = out and size + d.msg.size > MAX_RESPONSE_BYTES
                    if len(out) >= limit_n or size >= limit_b or too_big or d.available_at > wall:
                        break
                    if d.done:
                        continue
                    if d.out:
                        break
                    if deliver(d):
                        sub.key_out[key] = sub.key_out.get(key, 0) + 1
                while queue and queue[0].done:
                    queue.popleft()
                if sub.key_out.get(key) or not queue:
                    sub.ready_key_set.discard(key)
                    if not queue:
                        sub.key_queues.pop(key, None)
                else:
                    keys.append(key)

        if leased:
            token = next(self._lease_token)
            for d in leased:
                d.lease = token
            heapq.heappush(sub.leases, (now + deadline_s, token, leased))
            sub.delivered += len(leased)
        return out

    # --------------------------------------------------------------------------------------- leases and acks
    def _release(self, sub: SubscriptionState, d: Delivery) -> None:
        """End a lease (ack, nack, expiry): free the stream's flow control and the ordering key."""
        d.out = False
        d.lease = 0
        sub.outstanding -= 1
        stream = d.stream
        if stream is not None:
            stream.out_messages -= 1
            stream.out_bytes -= d.msg.size
            d.stream = None
        key = d.msg.ordering_key
        if key and sub.ordered:
            left = sub.key_out.get(key, 0) - 1
            if left > 0:
                sub.key_out[key] = left
            else:
                sub.key_out.pop(key, None)
                if key in sub.key_queues and key not in sub.ready_key_set:
                    sub.ready_key_set.add(key)
                    sub.ready_keys.append(key)

    def _return(self, sub: SubscriptionState, d: Delivery, now_wall: float) -> None:
        """Make a nacked or expired message deliverable again, after the retry backoff if any; a message that
        used up its delivery attempts goes to the dead-letter topic instead."""
        self._release(sub, d)
        if sub.dead_letter_topic is not None and d.attempts >= sub.max_attempts:
            self._dead_letter(sub, d)
            return
        if sub.ordered and d.msg.ordering_key:
            # It stays in its key queue. As the real service does, the later messages of the key that are
            # still leased come back too, so the key is redelivered in order from this message on.
            for other in sub.key_queues.get(d.msg.ordering_key, ()):
                if other.out and other.msg.seq > d.msg.seq:
                    self._release(sub, other)
            if sub.min_backoff is not None:
                d.available_at = now_wall + self._backoff(sub, d)
            return
        if sub.min_backoff is not None:
            d.available_at = now_wall + self._backoff(sub, d)
            heapq.heappush(sub.delayed, (d.available_at, d.msg.seq, d))
        else:
            sub.redeliver.append(d)

    @staticmethod
    def _backoff(sub: SubscriptionState, d: Delivery) -> float:
        low = sub.min_backoff or 0.0
        return min(sub.max_backoff, low * (2 ** max(d.attempts - 1, 0)))

    def _expire(self, sub: SubscriptionState, now: float) -> None:
        leases = sub.leases
        if not leases or leases[0][0] > now:
            return
        wall = time.time()
        expired = False
        while leases and leases[0][0] <= now:
            _, token, batch = heapq.heappop(leases)
            for d in batch:
                if d.lease == token and not d.done:
                    self._return(sub, d, wall)
                    expired = True
        if expired and sub.waiters:
            sub.cond.notify_all()

    def _drop(self, sub: SubscriptionState, d: Delivery) -> None:
        """Remove a message without an ack (retention, dead letter); journaled like an ack."""
        d.done = True
        if d.out:
            self._release(sub, d)
        sub.messages.pop(d.msg.seq, None)
        self._log("ack", _encode_ack(sub.name, [d.msg.seq]))

    def acknowledge(self, name: str, ack_ids: Iterable[str]) -> None:
        with self.lock:
            sub = self._subscription(name)
            ticket = self._ack(sub, ack_ids)
        self._wait(ticket)

    def _ack(self, sub: SubscriptionState, ack_ids: Iterable[str]) -> int:
        messages = sub.messages
        faults = self.faults
        injecting = faults.any_active
        acked = []
        for ack_id in ack_ids:
            seq = _ack_seq(ack_id, sub.number)
            d = messages.get(seq)
            if d is None:
                continue
            if injecting and faults.lose_ack(sub.name):
                continue
            d.done = True
            del messages[seq]
            if d.out:
                self._release(sub, d)
            if sub.retain_acked:
                sub.acked_retained.append(d.msg)
            acked.append(seq)
        sub.acked += len(acked)
        if acked and sub.waiters:
            sub.cond.notify_all()
        return self._log("ack", _encode_ack(sub.name, acked)) if acked else 0

    def modify_ack_deadline(self, name: str, ack_ids: Iterable[str], seconds: int) -> None:
        if not 0 <= seconds <= 600:
            raise invalid_argument(f"Invalid ack deadline: {seconds}; it must be between 0 and 600 seconds")
        with self.lock:
            sub = self._subscription(name)
            self._modack(sub, ack_ids, seconds)

    def _modack(self, sub: SubscriptionState, ack_ids: Iterable[str], seconds: float) -> None:
        messages = sub.messages
        now = time.monotonic()
        wall = time.time()
        extended = []
        for ack_id in ack_ids:
            seq, gen = _ack_seq_gen(ack_id, sub.number)
            d = messages.get(seq)
            if d is None or not d.out or d.gen != gen:
                continue  # stale or unknown ack id: ignored, like the real service
            if seconds == 0:
                self._return(sub, d, wall)
            else:
                extended.append(d)
        if extended:
            token = next(self._lease_token)
            for d in extended:
                d.lease = token
            heapq.heappush(sub.leases, (now + seconds, token, extended))
        elif sub.waiters:
            sub.cond.notify_all()

    def stream_requests(
        self, name: str, stream: Stream, ack_ids: Iterable[str], modacks: Iterable[tuple[str, int]]
    ) -> None:
        """Acks and modacks received on a StreamingPull stream (no reply, so no durability wait)."""
        with self.lock:
            sub = self.subscriptions.get(name)
            if sub is None:
                return
            if ack_ids:
                self._ack(sub, ack_ids)
            by_seconds: dict[int, list[str]] = {}
            for ack_id, seconds in modacks:
                by_seconds.setdefault(seconds, []).append(ack_id)
            for seconds, ids in by_seconds.items():
                self._modack(sub, ids, max(0, min(600, seconds)))
            if sub.waiters:
                sub.cond.notify_all()

    def close_stream(self, name: str, stream: Stream) -> None:
        with self.lock:
            stream.closed = True
            sub = self.subscriptions.get(name)
            if sub is not None:
                sub.cond.notify_all()

    # ------------------------------------------------------------------------------------------- dead letter
    def _dead_letter(self, sub: SubscriptionState, d: Delivery) -> None:
        """Forward to the dead-letter topic (as a new publish, with the source attributes) and remove."""
        self._drop(sub, d)
        sub.dead_lettered += 1
        topic = self.topics.get(sub.dead_letter_topic or "")
        if topic is None:
            return  # the real service drops too when the dead-letter topic is missing (and logs it)
        original = PubsubMessagePb.FromString(d.msg.data)
        copy = PubsubMessagePb()
        copy.data = original.data
        copy.attributes.update(original.attributes)
        copy.ordering_key = original.ordering_key
        project, sub_id = names.subscription_name(sub.name)
        copy.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] = str(d.attempts)
        copy.attributes["CloudPubSubDeadLetterSourceSubscription"] = sub_id
        copy.attributes["CloudPubSubDeadLetterSourceSubscriptionProject"] = project
        # Millisecond RFC 3339, as the official emulator writes it.
        published = original.publish_time
        copy.attributes["CloudPubSubDeadLetterSourceTopicPublishTime"] = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(published.seconds)) + f".{published.nanos // 1_000_000:03d}Z"
        )
        now = time.time()
        seq = next(self._seq)
        copy.message_id = str(seq)
        copy.publish_time.FromNanoseconds(int(now * 1e9))
        msg = Message(seq, copy.SerializeToString(), copy.ordering_key, now, dict(copy.attributes))
        topic.published += 1
        for target in topic.subscriptions:
            self._enqueue(target, [msg], now)
        self._log("publish", _encode_publish(topic.pb.name, [msg]))

    # ---------------------------------------------------------------------------------------------- seek
    def seek_to_time(self, name: str, when: float) -> None:
        """Messages published before `when` become acked; retained acked ones published after become unacked."""
        with self.lock:
            sub = self._subscription(name)
            self._seek(sub, when)
            ticket = self._log("seek", _encode_seek(sub.name, when))
        self._wait(ticket)

    def _seek(self, sub: SubscriptionState, when: float) -> None:
        keep: dict[int, Message] = {}
        for d in sub.messages.values():
            if d.msg.publish_time >= when:
                keep[d.msg.seq] = d.msg
        for msg in sub.acked_retained:
            if msg.publish_time >= when:
                keep[msg.seq] = msg
        self._reset(sub, keep)

    def _reset(self, sub: SubscriptionState, keep: dict[int, Message]) -> None:
        """Make exactly `keep` the unacked messages (fresh, undelivered); the rest count as acked."""
        for d in sub.messages.values():
            if d.out:
                self._release(sub, d)
            d.done = True
            if sub.retain_acked and d.msg.seq not in keep:
                sub.acked_retained.append(d.msg)
        sub.acked_retained = deque(sorted((m for m in sub.acked_retained if m.seq not in keep), key=lambda m: m.seq))
        sub.messages.clear()
        sub.ready.clear()
        sub.redeliver.clear()
        sub.delayed.clear()
        sub.leases.clear()
        sub.duplicates.clear()
        sub.key_queues.clear()
        sub.key_out.clear()
        sub.ready_keys.clear()
        sub.ready_key_set.clear()
        for seq in sorted(keep):
            msg = keep[seq]
            d = Delivery(msg)
            sub.messages[seq] = d
            if sub.ordered and msg.ordering_key:
                self._key_append(sub, d)
            else:
                sub.ready.append(d)
        if sub.waiters:
            sub.cond.notify_all()

    # -------------------------------------------------------------------------------------------- snapshots
    def create_snapshot(self, name: str, subscription: str, labels: dict[str, str]) -> Any:
        names.snapshot_name(name)
        with self.lock:
            sub = self._subscription(subscription)
            if name in self.snapshots:
                raise already_exists("Snapshot")
            topic = self.topics.get(sub.topic)
            if topic is None:
                raise PubSubError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "The subscription's topic was deleted; a snapshot needs a topic",
                )
            now = time.time()
            pb = SnapshotPb(name=name, topic=sub.topic, labels=labels)
            pb.expire_time.FromNanoseconds(int((now + SNAPSHOT_LIFETIME) * 1e9))
            snapshot = SnapshotState(
                pb, now + SNAPSHOT_LIFETIME, unacked={seq: d.msg for seq, d in sub.messages.items()}
            )
            self.snapshots[name] = snapshot
            topic.snapshots.append(snapshot)
            return pb

    def get_snapshot(self, name: str) -> Any:
        return self._snapshot(name).pb

    def _snapshot(self, name: str) -> SnapshotState:
        names.snapshot_name(name)
        snapshot = self.snapshots.get(name)
        if snapshot is None:
            raise PubSubError(grpc.StatusCode.NOT_FOUND, "Snapshot does not exist")
        return snapshot

    def list_snapshots(self, project: str) -> list[Any]:
        names.project_name(project)
        prefix = project + "/snapshots/"
        with self.lock:
            return [s.pb for name, s in sorted(self.snapshots.items()) if name.startswith(prefix)]

    def list_topic_snapshots(self, topic_name: str) -> list[str]:
        names.topic_name(topic_name)
        with self.lock:
            topic = self.topics.get(topic_name)
            if topic is None:
                raise not_found("Topic")
            return sorted(s.pb.name for s in topic.snapshots)

    def update_snapshot(self, pb: Any, paths: Iterable[str]) -> Any:
        paths = list(paths)
        if not paths:
            raise invalid_argument("No update_mask provided or update_mask is empty")
        with self.lock:
            snapshot = self._snapshot(pb.name)
            updated = SnapshotPb()
            updated.CopyFrom(snapshot.pb)
            _apply_mask(updated, pb, paths, immutable={"name", "topic"})
            snapshot.pb = updated
            snapshot.expire_at = updated.expire_time.seconds + updated.expire_time.nanos / 1e9
            return updated

    def delete_snapshot(self, name: str) -> None:
        with self.lock:
            snapshot = self._snapshot(name)
            self._forget_snapshot(snapshot)

    def _forget_snapshot(self, snapshot: SnapshotState) -> None:
        self.snapshots.pop(snapshot.pb.name, None)
        topic = self.topics.get(snapshot.pb.topic)
        if topic is not None and snapshot in topic.snapshots:
            topic.snapshots.remove(snapshot)

    def seek_to_snapshot(self, name: str, snapshot_name: str) -> None:
        """The snapshot's messages (unacked at its creation, or published since) become the unacked ones."""
        with self.lock:
            sub = self._subscription(name)
            snapshot = self._snapshot(snapshot_name)
            if snapshot.pb.topic != sub.topic:
                raise PubSubError(
                    grpc.StatusCode.FAILED_PRECONDITION, "The snapshot's topic is not the subscription's topic"
                )
            keep = dict(snapshot.unacked)
            keep.update(snapshot.after)
            if sub.filter is not None:
                keep = {seq: m for seq, m in keep.items() if sub.filter(m.attributes or _attributes(m))}
            self._reset(sub, keep)
            # Snapshots are not journaled, so the outcome is: the exact set of unacked messages.
            ticket = self._log("reset", _encode_publish(sub.name, [keep[seq] for seq in sorted(keep)]))
        self._wait(ticket)

    # -------------------------------------------------------------------------------------------- upkeep
    def sweep(self) -> None:
        """Periodic upkeep (the server calls it about 10 times a second): lease expiry, delayed messages,
        retention of acked messages, waking idle pulls."""
        now = time.monotonic()
        wall = time.time()
        with self.lock:
            for snapshot in [s for s in self.snapshots.values() if s.expire_at <= wall]:
                self._forget_snapshot(snapshot)
            for sub in self.subscriptions.values():
                self._expire(sub, now)
                if sub.acked_retained:
                    cutoff = wall - sub.retention
                    while sub.acked_retained and sub.acked_retained[0].publish_time < cutoff:
                        sub.acked_retained.popleft()
                if sub.ready:
                    cutoff = wall - sub.retention
                    while sub.ready and sub.ready[0].msg.publish_time < cutoff:
                        self._drop(sub, sub.ready.popleft())
                if sub.waiters and ((sub.delayed and sub.delayed[0][0] <= wall) or sub.ready_keys):
                    sub.cond.notify_all()

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            for sub in self.subscriptions.values():
                sub.cond.notify_all()

    def stats(self) -> dict[str, Any]:
        """Counters for the live view and the admin call."""
        with self.lock:
            return {
                "topics": {
                    name: {"published": t.published, "subscriptions": len(t.subscriptions)}
                    for name, t in self.topics.items()
                },
                "subscriptions": {
                    name: {
                        "topic": s.topic,
                        "backlog": len(s.messages),
                        "outstanding": s.outstanding,
                        "delivered": s.delivered,
                        "acked": s.acked,
                        "dead_lettered": s.dead_lettered,
                    }
                    for name, s in self.subscriptions.items()
                },
            }

    # ------------------------------------------------------------------------------------------ durability
    def _log(self, kind: str, payload: bytes) -> int:
        return self.journal.append(kind, payload) if self.journal is not None else 0

    def _wait(self, ticket: int) -> None:
        if ticket and self.journal is not None:
            self.journal.wait(ticket)

    def maybe_compact(self) -> bool:
        """Rewrite the journal as a snapshot when it has grown past its threshold and at most half of it is
        live state; returns True when it did. Called by the server's upkeep thread."""
        journal = self.journal
        if journal is None or journal.size < journal.next_compaction:
            return False
        with self.lock:
            # Estimate the live size without building the snapshot: that would copy every unacked message.
            live = sum(d.msg.size + 8 for sub in self.subscriptions.values() for d in sub.messages.values())
            if live * 2 > journal.size:
                journal.next_compaction = journal.size * 2  # mostly live: look again when it doubled
                return False
            records = self.snapshot_records()
            top = next(self._seq) - 1
            self._seq = itertools.count(top + 1)
            journal.rewrite(top, records)
            journal.next_compaction = max(journal.next_compaction, live * 4)
        return True

    def restore_seq(self, last_seq: int) -> None:
        self._seq = itertools.count(last_seq + 1)

    def replay(self, kind: str, payload: bytes) -> int:
        """Apply one journal record at start-up (journal disabled meanwhile); returns the highest seq seen."""
        top = 0
        if kind == "seq":
            top = int.from_bytes(payload, "little")
        elif kind == "topic_put":
            pb = TopicPb.FromString(payload)
            if pb.name in self.topics:
                self.topics[pb.name].pb = pb
            else:
                self.topics[pb.name] = TopicState(pb)
        elif kind == "topic_del":
            name = payload.decode()
            topic = self.topics.pop(name, None)
            for sub in topic.subscriptions if topic else []:
                sub.topic = sub.pb.topic = names.DELETED_TOPIC
        elif kind == "sub_put":
            pb = SubscriptionPb.FromString(payload)
            existing = self.subscriptions.get(pb.name)
            if existing is not None:
                existing.pb = pb
                existing.configure()
            else:
                sub = SubscriptionState(pb, threading.Condition(self.lock), next(self._sub_numbers))
                self.subscriptions[pb.name] = sub
                topic = self.topics.get(pb.topic)
                if topic is not None:
                    topic.subscriptions.append(sub)
        elif kind == "sub_del":
            sub = self.subscriptions.pop(payload.decode(), None)
            if sub is not None and sub.topic in self.topics:
                self.topics[sub.topic].subscriptions.remove(sub)
        elif kind in ("publish", "deliver"):
            target, stored = _decode_publish(payload)
            if stored:
                top = stored[-1].seq
            if kind == "publish":
                topic = self.topics.get(target)
                if topic is not None:
                    topic.published += len(stored)
                    for sub in topic.subscriptions:
                        self._enqueue(sub, stored, time.time())
            else:
                sub = self.subscriptions.get(target)
                if sub is not None:
                    self._enqueue(sub, stored, time.time())
        elif kind == "ack":
            name, seqs = _decode_ack(payload)
            sub = self.subscriptions.get(name)
            if sub is not None:
                for seq in seqs:
                    d = sub.messages.pop(seq, None)
                    if d is not None:
                        d.done = True
                        if sub.retain_acked:
                            sub.acked_retained.append(d.msg)
        elif kind == "reset":
            target, stored = _decode_publish(payload)
            sub = self.subscriptions.get(target)
            if sub is not None:
                self._reset(sub, {msg.seq: msg for msg in stored})
        elif kind == "seek":
            name, when = _decode_seek(payload)
            sub = self.subscriptions.get(name)
            if sub is not None:
                self._seek(sub, when)
        return top

    def snapshot_records(self) -> list[tuple[str, bytes]]:
        """The current state as journal records: what compaction writes at start-up."""
        records: list[tuple[str, bytes]] = []
        for topic in self.topics.values():
            records.append(("topic_put", topic.pb.SerializeToString()))
        for sub in self.subscriptions.values():
            records.append(("sub_put", sub.pb.SerializeToString()))
            pending = sorted(sub.messages)
            for start in range(0, len(pending), 1000):
                chunk = [sub.messages[seq].msg for seq in pending[start : start + 1000]]
                records.append(("deliver", _encode_publish(sub.name, chunk)))
        return records


# ---------------------------------------------------------------------------------------------- helpers
def _ack_seq(ack_id: str, subscription_number: int) -> int:
    """The message number an ack id refers to; -1 when it belongs to another subscription."""
    return _ack_seq_gen(ack_id, subscription_number)[0]


def _ack_seq_gen(ack_id: str, subscription_number: int) -> tuple[int, int]:
    """(message number, delivery number) of an ack id `{seq}-{gen}-{subscription}`; (-1, -1) when it belongs
    to another subscription (ack ids are only valid on the subscription that handed them out)."""
    parts = ack_id.split("-")
    try:
        seq, gen, number = (int(part) for part in parts)
    except ValueError:
        raise invalid_argument(f"Invalid ack id (ack_id={ack_id})") from None
    if number != subscription_number:
        return -1, -1
    return seq, gen


def _attributes(msg: Message) -> dict[str, str]:
    """A message's attributes, parsed from its bytes when they were not kept at publish."""
    msg.attributes = dict(PubsubMessagePb.FromString(msg.data).attributes)
    return msg.attributes


def _apply_mask(target: Any, source: Any, paths: list[str], immutable: set[str]) -> None:
    """Copy the top-level fields named by an update mask from `source` into `target`."""
    for path in paths:
        top = path.split(".")[0]
        if top in immutable:
            raise invalid_argument(f"Invalid update_mask provided: the field {top} cannot be updated")
        descriptor = target.DESCRIPTOR.fields_by_name.get(top)
        if descriptor is None:
            raise invalid_argument(f"Invalid update_mask provided: unknown field {path}")
        if descriptor.message_type is not None and descriptor.label != descriptor.LABEL_REPEATED:
            target.ClearField(top)
            if source.HasField(top):
                getattr(target, top).CopyFrom(getattr(source, top))
        elif descriptor.label == descriptor.LABEL_REPEATED:
            target.ClearField(top)
            field_value = getattr(target, top)
            if hasattr(field_value, "update"):
                field_value.update(getattr(source, top))
            else:
                field_value.extend(getattr(source, top))
        else:
            setattr(target, top, getattr(source, top))


def _encode_publish(target: str, stored: list[Message]) -> bytes:
    name = target.encode()
    parts = [len(name).to_bytes(2, "little"), name]
    for msg in stored:
        parts.append(msg.size.to_bytes(4, "little"))
        parts.append(msg.data)
    return b"".join(parts)


def _decode_publish(payload: bytes) -> tuple[str, list[Message]]:
    n = int.from_bytes(payload[:2], "little")
    target = payload[2 : 2 + n].decode()
    pos = 2 + n
    stored = []
    while pos < len(payload):
        size = int.from_bytes(payload[pos : pos + 4], "little")
        data = payload[pos + 4 : pos + 4 + size]
        pos += 4 + size
        pb = PubsubMessagePb.FromString(data)
        stored.append(
            Message(
                int(pb.message_id),
                data,
                pb.ordering_key,
                pb.publish_time.seconds + pb.publish_time.nanos / 1e9,
                dict(pb.attributes),
            )
        )
    return target, stored


def _encode_ack(name: str, seqs: list[int]) -> bytes:
    raw = name.encode()
    return len(raw).to_bytes(2, "little") + raw + b"".join(s.to_bytes(8, "little") for s in seqs)


def _decode_ack(payload: bytes) -> tuple[str, list[int]]:
    n = int.from_bytes(payload[:2], "little")
    name = payload[2 : 2 + n].decode()
    body = payload[2 + n :]
    return name, [int.from_bytes(body[i : i + 8], "little") for i in range(0, len(body), 8)]


def _encode_seek(name: str, when: float) -> bytes:
    raw = name.encode()
    return len(raw).to_bytes(2, "little") + raw + repr(when).encode()


def _decode_seek(payload: bytes) -> tuple[str, float]:
    n = int.from_bytes(payload[:2], "little")
    return payload[2 : 2 + n].decode(), float(payload[2 + n :].decode())
