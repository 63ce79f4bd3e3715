"""Snapshots and Seek to a snapshot. It is mixed into emulator.pubsub.store.Store and works on its state under
its lock.

A snapshot holds a subscription's unacked messages at its creation plus every message published to the topic
since; it lives 7 days, as in the official emulator. Snapshots are not journaled (they are gone after a
restart); a seek to one is, as its outcome: the exact set of unacked messages (records.Reset).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from emulator.pubsub import names
from emulator.pubsub.clock import Clock
from emulator.pubsub.errors import PubSubError, already_exists, invalid_argument, not_found
from emulator.pubsub.records import Record, Reset
from emulator.pubsub.resources import apply_mask
from emulator.pubsub.state import SnapshotPb, SnapshotState, SubscriptionState, TopicState, attributes_of

SNAPSHOT_LIFETIME = 7 * 24 * 3600.0  # the official emulator sets expire_time to creation + 7 days


class Snapshots:
    """Snapshot administration and Seek to a snapshot (the Store's part that remembers backlogs)."""

    # The Store's state and services this part uses.
    lock: threading.Lock
    clock: Clock
    topics: dict[str, TopicState]
    snapshots: dict[str, SnapshotState]
    _commit: Callable[[Record], int]
    _wait: Callable[[int], None]
    _subscription: Callable[[str], SubscriptionState]
    _drop_policy: Callable[[str], None]

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
            now = self.clock.wall()
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
            apply_mask(updated, pb, paths, immutable={"name", "topic"})
            snapshot.pb = updated
            snapshot.expire_at = updated.expire_time.seconds + updated.expire_time.nanos / 1e9
            return updated

    def delete_snapshot(self, name: str) -> None:
        with self.lock:
            snapshot = self._snapshot(name)
            self._forget_snapshot(snapshot)

    def _forget_snapshot(self, snapshot: SnapshotState) -> None:
        self.snapshots.pop(snapshot.pb.name, None)
        self._drop_policy(snapshot.pb.name)
        topic = self.topics.get(snapshot.pb.topic)
        if topic is not None and snapshot in topic.snapshots:
            topic.snapshots.remove(snapshot)

    def _expire_snapshots(self, wall: float) -> None:
        for snapshot in [s for s in self.snapshots.values() if s.expire_at <= wall]:
            self._forget_snapshot(snapshot)

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
                keep = {seq: m for seq, m in keep.items() if sub.filter(attributes_of(m))}
            ticket = self._commit(Reset(sub.name, [keep[seq] for seq in sorted(keep)]))
        self._wait(ticket)
