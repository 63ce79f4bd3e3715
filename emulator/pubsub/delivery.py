"""The delivery engine: publish, pull, leases, acks, nacks, ordering keys, backoff, dead letters, seek and the
upkeep of leases and retention. It is mixed into emulator.pubsub.store.Store and works on its state under its
one lock (no I/O and no waiting happens under it, except the condition waits that release it).

Delivery model (what the real service documents, what clients rely on):
- at-least-once: a delivered message is leased until its ack deadline; an expired lease, or a nack (modack 0),
  makes it deliverable again, after the retry policy's backoff if the subscription has one;
- dead letter: once a message has been delivered `max_delivery_attempts` times and is not acked, it is
  republished to the dead-letter topic with the CloudPubSubDeadLetterSource* attributes and removed;
- ordering keys (subscriptions with enable_message_ordering): per key, messages go out in publish order, and
  nothing of a key is delivered while an earlier message of that key is leased (a batch may hold several);
- filters: messages a subscription's filter rejects are never delivered (acknowledged at publish, as documented);
- retention: unacked messages older than message_retention_duration are dropped; with retain_acked_messages,
  acked ones (and dropped ones, as a replayed journal cannot tell them apart) are kept for Seek to a time.

Changes that the journal records go through Store._commit (apply, then journal); `_add_published`, `_enqueue`,
`_remove`, `_seek` and `_reset` are what Store.apply runs for them, live and at replay alike.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from emulator.pubsub import names
from emulator.pubsub.clock import Clock
from emulator.pubsub.errors import invalid_argument, not_found
from emulator.pubsub.faults import FaultInjector
from emulator.pubsub.records import Ack, Publish, Record, SeekToTime
from emulator.pubsub.state import (
    Delivery,
    Message,
    PubsubMessagePb,
    Stream,
    SubscriptionState,
    TopicState,
    parse_ack_id,
)
from emulator.pubsub.wire import received_message

MAX_PUBLISH_MESSAGES = 1000
MAX_REQUEST_BYTES = 10 * 1024 * 1024
# Pull/StreamingPull responses stay under gRPC's default 4 MiB receive limit, which google-cloud-pubsub keeps on
# its emulator channel (PUBSUB_EMULATOR_HOST) and Beam's reader inherits; 64 KiB is left for ack ids and framing.
# Only a single message larger than that goes out alone, above it. A bigger batch gains nothing measurable.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024 - 64 * 1024


class DeliveryEngine:
    """Publish and delivery (the Store's part that moves messages). Methods raise PubSubError."""

    # The Store's state and services this part uses.
    lock: threading.Lock
    clock: Clock
    faults: FaultInjector
    topics: dict[str, TopicState]
    subscriptions: dict[str, SubscriptionState]
    stopped: bool
    _seq: Iterator[int]
    _lease_token: Iterator[int]
    _commit: Callable[[Record], int]
    _wait: Callable[[int], None]
    _subscription: Callable[[str], SubscriptionState]

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
        now = self.clock.wall()
        seconds = int(now)
        nanos = int((now - seconds) * 1e9)
        with self.lock:
            topic = self.topics.get(topic_name)
            if topic is None:
                names.topic_name(topic_name)
                raise not_found("Topic")
            need_attributes = any(s.filter is not None for s in topic.subscriptions)
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
            ticket = self._commit(Publish(topic_name, stored))
        self._wait(ticket)
        return ids

    def _add_published(self, topic_name: str, stored: list[Message]) -> None:
        """Messages published to a topic: queued on each of its subscriptions, added to its snapshots."""
        topic = self.topics.get(topic_name)
        if topic is None:
            return
        topic.published += len(stored)
        now = self.clock.wall()
        for sub in topic.subscriptions:
            self._enqueue(sub, stored, now)
        for snapshot in topic.snapshots:
            snapshot.after.update((msg.seq, msg) for msg in stored)

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

        Returns serialized ReceivedMessages. Raises NOT_FOUND once the subscription is gone. The wait is real
        time whatever the store's clock: it is a wait on a condition variable.
        """
        deadline = time.monotonic() + wait
        with self.lock:
            sub = self._subscription(name)
            while True:
                if sub.deleted:
                    raise not_found("Subscription")
                if self.stopped or (stream is not None and stream.closed):
                    return [], sub
                now = self.clock.monotonic()
                self._expire(sub, now)
                # limit_b is the stream's flow-control room: soft, a response may pass it by one message as
                # the service's does. MAX_RESPONSE_BYTES, applied in _take, is hard.
                limit_n, limit_b = stream.room() if stream is not None else (max_messages, MAX_RESPONSE_BYTES)
                limit_n = min(limit_n, max_messages)
                if limit_n > 0 and limit_b > 0:
                    out = self._take(sub, limit_n, limit_b, stream, now)
                    if out:
                        return out, sub
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return [], sub
                sub.waiters += 1
                try:
                    sub.cond.wait(min(remaining, self._next_event(sub, now)))
                finally:
                    sub.waiters -= 1

    def _next_event(self, sub: SubscriptionState, now: float) -> float:
        """How long a waiting pull may sleep before a lease expiry or delayed message needs it (<= 1 s)."""
        soonest = 1.0
        if sub.leases:
            soonest = min(soonest, sub.leases[0][0] - now)
        if sub.delayed:
            soonest = min(soonest, sub.delayed[0][0] - self.clock.wall())
        return max(soonest, 0.005)

    def _take(
        self, sub: SubscriptionState, limit_n: int, limit_b: int, stream: Stream | None, now: float
    ) -> list[bytes]:
        out: list[bytes] = []
        leased: list[Delivery] = []
        size = 0
        wall = self.clock.wall()
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
        wall = self.clock.wall()
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
        self._commit(Ack(sub.name, [d.msg.seq]))

    def acknowledge(self, name: str, ack_ids: Iterable[str]) -> None:
        with self.lock:
            sub = self._subscription(name)
            ticket = self._ack(sub, ack_ids)
        self._wait(ticket)

    def _ack(self, sub: SubscriptionState, ack_ids: Iterable[str]) -> int:
        """Ack what the ack ids name (unless a lost-ack fault drops one); returns the journal ticket (0: none)."""
        faults = self.faults
        injecting = faults.any_active
        acked: dict[int, None] = {}  # in order, once each
        for ack_id in ack_ids:
            seq, _ = parse_ack_id(ack_id, sub.number)
            if seq in acked or seq not in sub.messages:
                continue
            if injecting and faults.lose_ack(sub.name):
                continue
            acked[seq] = None
        if not acked:
            return 0
        sub.acked += len(acked)
        return self._commit(Ack(sub.name, list(acked)))

    def _remove(self, name: str, seqs: list[int]) -> None:
        """Messages gone from a subscription (acked or dropped): their leases end; kept for Seek if it retains
        acked messages."""
        sub = self.subscriptions.get(name)
        if sub is None:
            return
        for seq in seqs:
            d = sub.messages.pop(seq, None)
            if d is None:
                continue
            d.done = True
            if d.out:
                self._release(sub, d)
            if sub.retain_acked:
                sub.acked_retained.append(d.msg)
        if sub.waiters:
            sub.cond.notify_all()

    def modify_ack_deadline(self, name: str, ack_ids: Iterable[str], seconds: int) -> None:
        if not 0 <= seconds <= 600:
            raise invalid_argument(f"Invalid ack deadline: {seconds}; it must be between 0 and 600 seconds")
        with self.lock:
            sub = self._subscription(name)
            self._modack(sub, ack_ids, seconds)

    def _modack(self, sub: SubscriptionState, ack_ids: Iterable[str], seconds: float) -> None:
        messages = sub.messages
        now = self.clock.monotonic()
        wall = self.clock.wall()
        extended = []
        for ack_id in ack_ids:
            seq, gen = parse_ack_id(ack_id, sub.number)
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
        now = self.clock.wall()
        seq = next(self._seq)
        copy.message_id = str(seq)
        copy.publish_time.FromNanoseconds(int(now * 1e9))
        msg = Message(seq, copy.SerializeToString(), copy.ordering_key, now, dict(copy.attributes))
        self._commit(Publish(topic.pb.name, [msg]))

    # ---------------------------------------------------------------------------------------------- seek
    def seek_to_time(self, name: str, when: float) -> None:
        """Messages published before `when` become acked; retained acked ones published after become unacked."""
        with self.lock:
            sub = self._subscription(name)
            ticket = self._commit(SeekToTime(sub.name, when))
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

    # -------------------------------------------------------------------------------------------- upkeep
    def _sweep_subscriptions(self, now: float, wall: float) -> None:
        """Lease expiry, retention, and waking pulls whose delayed or ordered messages became deliverable."""
        for sub in self.subscriptions.values():
            self._expire(sub, now)
            if sub.ready:
                cutoff = wall - sub.retention
                while sub.ready and sub.ready[0].msg.publish_time < cutoff:
                    self._drop(sub, sub.ready.popleft())
            # After the drops above, which a subscription that retains acked messages keeps too.
            if sub.acked_retained:
                cutoff = wall - sub.retention
                while sub.acked_retained and sub.acked_retained[0].publish_time < cutoff:
                    sub.acked_retained.popleft()
            if sub.waiters and ((sub.delayed and sub.delayed[0][0] <= wall) or sub.ready_keys):
                sub.cond.notify_all()
