"""All of the emulator's state behind one lock, and the one place it changes: `apply(record)`.

The Store is made of four parts, each in its own module: emulator.pubsub.resources (topics and
subscriptions), emulator.pubsub.snapshots, emulator.pubsub.iam (IAM policies, stored, not enforced), and
emulator.pubsub.delivery (the delivery engine: publish, pull, leases, acks, ordering, redelivery, dead letters,
seek). Every change that must survive a restart is a record
(emulator.pubsub.records): the live path builds it and `_commit`s it (apply, then append to the journal), and
start-up replays the journal through the same `apply`, so a change is written once.

One lock guards everything (coarse but short: no I/O and no waiting happens under it, except the condition
waits that release it). Time comes from an injectable clock (emulator.pubsub.clock), so tests move it instead
of sleeping:

    store = Store(clock=Clock(monotonic=fake.monotonic, wall=fake.wall))
    store.create_topic(TopicPb(name="projects/p/topics/t"))     # TopicPb: emulator.pubsub.state
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from emulator.pubsub.clock import SYSTEM_CLOCK, Clock
from emulator.pubsub.delivery import DeliveryEngine
from emulator.pubsub.faults import FaultInjector
from emulator.pubsub.iam import Iam
from emulator.pubsub.journal import Journal
from emulator.pubsub.records import (
    Ack,
    Deliver,
    IamPolicyPut,
    LastSeq,
    Publish,
    Record,
    Reset,
    SeekToTime,
    SubscriptionDelete,
    SubscriptionPut,
    TopicDelete,
    TopicPut,
    decode,
)
from emulator.pubsub.resources import Resources
from emulator.pubsub.snapshots import Snapshots
from emulator.pubsub.state import SnapshotState, SubscriptionState, TopicState

# Compaction writes a subscription's backlog in records of this many messages.
DELIVER_CHUNK = 1000


class Store(Resources, Snapshots, Iam, DeliveryEngine):
    """All emulator state. Methods raise PubSubError; the gRPC services translate it into status codes."""

    def __init__(
        self, faults: FaultInjector | None = None, journal: Journal | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self.topics: dict[str, TopicState] = {}
        self.subscriptions: dict[str, SubscriptionState] = {}
        self.snapshots: dict[str, SnapshotState] = {}
        self.policies: dict[str, Any] = {}  # IAM policies by resource name (emulator.pubsub.iam)
        self._iam_serial = 0
        self.faults = faults or FaultInjector()
        self.journal = journal
        self._seq = itertools.count(1)
        self._lease_token = itertools.count(1)
        self._sub_numbers = itertools.count(1)
        self.stopped = False

    # ---------------------------------------------------------------------------------------------- changes
    def apply(self, record: Record) -> None:
        """Make the change a record describes; the caller holds the lock."""
        match record:
            case TopicPut(pb):
                self._put_topic(pb)
            case TopicDelete(name):
                self._delete_topic(name)
            case SubscriptionPut(pb):
                self._put_subscription(pb)
            case SubscriptionDelete(name):
                self._delete_subscription(name)
            case Publish(topic, messages):
                self._add_published(topic, messages)
            case Deliver(name, messages):
                if name in self.subscriptions:
                    self._enqueue(self.subscriptions[name], messages, self.clock.wall())
            case Ack(name, seqs):
                self._remove(name, seqs)
            case Reset(name, messages):
                if name in self.subscriptions:
                    self._reset(self.subscriptions[name], {msg.seq: msg for msg in messages})
            case SeekToTime(name, when):
                if name in self.subscriptions:
                    self._seek(self.subscriptions[name], when)
            case IamPolicyPut(resource, policy):
                self._put_policy(resource, policy)
            case LastSeq():
                pass  # message numbering only: replay() reports it, and ids continue after it
            case _:
                raise TypeError(f"not a journal record: {record!r}")

    def _commit(self, record: Record) -> int:
        """Apply a change and append it to the journal, under the lock; returns the ticket for _wait (0: none)."""
        self.apply(record)
        return self.journal.append(record.kind, record.encode()) if self.journal is not None else 0

    def _wait(self, ticket: int) -> None:
        """Return once the record of `ticket` is on disk: after the lock is released, before the reply."""
        if ticket and self.journal is not None:
            self.journal.wait(ticket)

    # ------------------------------------------------------------------------------------------ durability
    def replay(self, kind: str, payload: bytes) -> int:
        """Apply one journal record at start-up (journal disabled meanwhile); returns the highest seq it names."""
        record = decode(kind, payload)
        with self.lock:
            self.apply(record)
        return record.top_seq

    def restore_seq(self, last_seq: int) -> None:
        self._seq = itertools.count(last_seq + 1)

    def snapshot_records(self) -> list[tuple[str, bytes]]:
        """The current state as journal records: what compaction writes."""
        records: list[Record] = [TopicPut(topic.pb) for topic in self.topics.values()]
        for sub in self.subscriptions.values():
            records.append(SubscriptionPut(sub.pb))
            pending = sorted(sub.messages)
            for start in range(0, len(pending), DELIVER_CHUNK):
                chunk = [sub.messages[seq].msg for seq in pending[start : start + DELIVER_CHUNK]]
                records.append(Deliver(sub.name, chunk))
        # After the resources they belong to; snapshot policies are left out with their snapshots.
        records.extend(
            IamPolicyPut(name, policy) for name, policy in self.policies.items() if "/snapshots/" not in name
        )
        return [(record.kind, record.encode()) for record in records]

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

    # -------------------------------------------------------------------------------------------- upkeep
    def sweep(self) -> None:
        """Periodic upkeep (the server calls it about 10 times a second): snapshot expiry, lease expiry,
        retention, waking idle pulls."""
        now = self.clock.monotonic()
        wall = self.clock.wall()
        with self.lock:
            self._expire_snapshots(wall)
            self._sweep_subscriptions(now, wall)

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
