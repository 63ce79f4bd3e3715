"""Topics and subscriptions: create, get, update, list, delete, with the checks the real service makes. It is
mixed into emulator.pubsub.store.Store and works on its state under its lock.

Changes go through Store._commit (apply, then journal); `_put_topic`, `_delete_topic`, `_put_subscription` and
`_delete_subscription` are what Store.apply runs for them, live and at replay alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from emulator.pubsub import names
from emulator.pubsub.errors import already_exists, invalid_argument, not_found
from emulator.pubsub.filters import compile_filter
from emulator.pubsub.records import Record, SubscriptionDelete, SubscriptionPut, TopicDelete, TopicPut
from emulator.pubsub.state import (
    DEFAULT_ACK_DEADLINE,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_DELIVERY_ATTEMPTS,
    DEFAULT_RETENTION_SECONDS,
    SubscriptionPb,
    SubscriptionState,
    TopicPb,
    TopicState,
)


class Resources:
    """Topic and subscription administration (the Store's part that names things). Methods raise PubSubError."""

    # The Store's state and services this part uses.
    lock: threading.Lock
    topics: dict[str, TopicState]
    subscriptions: dict[str, SubscriptionState]
    _sub_numbers: Iterator[int]
    _commit: Callable[[Record], int]
    _wait: Callable[[int], None]
    _drop_policy: Callable[[str], None]

    # ------------------------------------------------------------------------------------------------ topics
    def create_topic(self, pb: Any) -> Any:
        names.topic_name(pb.name)
        if pb.HasField("message_retention_duration"):
            _check_retention(pb.message_retention_duration)
        with self.lock:
            if pb.name in self.topics:
                raise already_exists("Topic")
            stored = TopicPb()
            stored.CopyFrom(pb)
            ticket = self._commit(TopicPut(stored))
        self._wait(ticket)
        return stored

    def get_topic(self, name: str) -> Any:
        names.topic_name(name)
        with self.lock:
            return self._topic(name).pb

    def _topic(self, name: str) -> TopicState:
        topic = self.topics.get(name)
        if topic is None:
            raise not_found("Topic")
        return topic

    def update_topic(self, pb: Any, paths: Iterable[str]) -> Any:
        names.topic_name(pb.name)
        paths = list(paths)
        if not paths:
            raise invalid_argument("No update_mask provided or update_mask is empty")
        with self.lock:
            updated = TopicPb()
            updated.CopyFrom(self._topic(pb.name).pb)
            apply_mask(updated, pb, paths, immutable={"name"})
            ticket = self._commit(TopicPut(updated))
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
            return sorted(s.name for s in self._topic(topic_name).subscriptions)

    def delete_topic(self, name: str) -> None:
        names.topic_name(name)
        with self.lock:
            self._topic(name)
            ticket = self._commit(TopicDelete(name))
        self._wait(ticket)

    def _put_topic(self, pb: Any) -> None:
        topic = self.topics.get(pb.name)
        if topic is None:
            self.topics[pb.name] = TopicState(pb)
        else:
            topic.pb = pb

    def _delete_topic(self, name: str) -> None:
        topic = self.topics.pop(name, None)
        self._drop_policy(name)
        # Subscriptions survive their topic, pointing at the marker the real service uses.
        for sub in topic.subscriptions if topic is not None else ():
            sub.topic = names.DELETED_TOPIC
            sub.pb.topic = names.DELETED_TOPIC

    # ----------------------------------------------------------------------------------------- subscriptions
    def create_subscription(self, pb: Any) -> Any:
        names.subscription_name(pb.name)
        names.topic_name(pb.topic)
        stored = SubscriptionPb()
        stored.CopyFrom(pb)
        _validate_subscription(stored)
        with self.lock:
            if pb.name in self.subscriptions:
                raise already_exists("Subscription")
            self._topic(pb.topic)
            ticket = self._commit(SubscriptionPut(stored))
        self._wait(ticket)
        return stored

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
            updated = SubscriptionPb()
            updated.CopyFrom(self._subscription(pb.name).pb)
            apply_mask(updated, pb, paths, immutable=immutable)
            _validate_subscription(updated)
            ticket = self._commit(SubscriptionPut(updated))
        self._wait(ticket)
        return updated

    def list_subscriptions(self, project: str) -> list[Any]:
        names.project_name(project)
        prefix = project + "/subscriptions/"
        with self.lock:
            return [s.pb for name, s in sorted(self.subscriptions.items()) if name.startswith(prefix)]

    def delete_subscription(self, name: str) -> None:
        with self.lock:
            self._subscription(name)
            ticket = self._commit(SubscriptionDelete(name))
        self._wait(ticket)

    def _put_subscription(self, pb: Any) -> None:
        sub = self.subscriptions.get(pb.name)
        if sub is not None:
            sub.pb = pb
            sub.configure()
            return
        sub = SubscriptionState(pb, threading.Condition(self.lock), next(self._sub_numbers))
        self.subscriptions[pb.name] = sub
        topic = self.topics.get(pb.topic)
        if topic is not None:
            topic.subscriptions.append(sub)

    def _delete_subscription(self, name: str) -> None:
        sub = self.subscriptions.pop(name, None)
        if sub is None:
            return
        self._drop_policy(name)
        topic = self.topics.get(sub.topic)
        if topic is not None:
            topic.subscriptions.remove(sub)
        sub.deleted = True  # its waiting pulls and streams end with NOT_FOUND
        sub.cond.notify_all()


def _validate_subscription(pb: Any) -> None:
    """Refuse what the real service refuses; fill in the defaults it fills in."""
    if pb.ack_deadline_seconds == 0:
        pb.ack_deadline_seconds = DEFAULT_ACK_DEADLINE
    if not 10 <= pb.ack_deadline_seconds <= 600:
        raise invalid_argument(
            f"Invalid ack_deadline_seconds: {pb.ack_deadline_seconds}; it must be between 10 and 600"
        )
    if pb.HasField("message_retention_duration"):
        _check_retention(pb.message_retention_duration)
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


def _check_retention(duration: Any) -> None:
    seconds = duration.seconds + duration.nanos / 1e9
    if not 600 <= seconds <= 31 * 24 * 3600:
        raise invalid_argument("Invalid message_retention_duration: it must be between 10 minutes and 31 days")


def apply_mask(target: Any, source: Any, paths: list[str], immutable: set[str]) -> None:
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
