"""IAM policies on topics, subscriptions and snapshots (google.iam.v1.IAMPolicy), stored and returned, never enforced.

Pub/Sub serves GetIamPolicy, SetIamPolicy and TestIamPermissions on its own endpoint, and the client libraries reach
them through `PublisherClient.get_iam_policy(...)` and the SubscriberClient equivalents. This emulator keeps each
resource's policy so that a runbook's bindings can be set and read back offline; like the official emulator it has
no authentication, so nothing is checked against them. It is mixed into emulator.pubsub.store.Store and works on its
state under its lock.

What it follows, from the IAM and Pub/Sub reference (google/iam/v1/iam_policy.proto and policy.proto, and
cloud.google.com/pubsub/docs/reference/rest/v1/projects.topics/getIamPolicy and its siblings):
- GetIamPolicy: NOT_FOUND for a missing resource; a resource without a policy answers an empty policy with the etag
  the real service gives it ("ACAB" in JSON, `EMPTY_ETAG`).
- SetIamPolicy: replaces the policy; the fields it takes follow `update_mask` (default `bindings, etag`); an etag
  that is not the current one is ABORTED (the read-modify-write conflict); every change gets a new etag.
- TestIamPermissions: a missing resource answers an empty set, not NOT_FOUND; wildcards are INVALID_ARGUMENT.
  Nothing is enforced, so every requested permission that exists on the resource's type is granted
  (`PERMISSIONS`, from cloud.google.com/iam/docs/roles-permissions/pubsub); others are not.
- Conditional bindings are INVALID_ARGUMENT: Pub/Sub is not among the services whose resources accept them
  (cloud.google.com/iam/help/conditions/resource-policies).

Policies of topics and subscriptions are journaled (records.IamPolicyPut) and survive a durable restart; snapshot
policies live as long as their snapshot, which is not journaled. Deleting a resource drops its policy, so a resource
created again under the same name starts with an empty policy, as on the real service.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.iam.v1 import policy_pb2

from emulator.pubsub import names
from emulator.pubsub.errors import PubSubError, invalid_argument, not_found
from emulator.pubsub.records import IamPolicyPut, Record
from emulator.pubsub.state import SnapshotState, SubscriptionState, TopicState

PolicyPb = policy_pb2.Policy

# The etag the real service returns for a resource that never had a policy (base64 "ACAB").
EMPTY_ETAG = b"\x00\x20\x01"
# IAM's policy versions; 3 is only needed for conditions, which Pub/Sub does not accept.
VALID_VERSIONS = (0, 1, 3)
STORED_VERSION = 1
DEFAULT_MASK = ("bindings", "etag")
MASKABLE = {"bindings", "etag", "audit_configs", "version"}

# The predefined Pub/Sub roles (cloud.google.com/iam/docs/roles-permissions/pubsub); a misspelt one is refused here,
# while roles of other services and custom roles pass unchecked.
PUBSUB_ROLES = frozenset(
    f"roles/pubsub.{name}" for name in ("admin", "editor", "publisher", "subscriber", "viewer", "serviceAgent")
)

_TAGS = ("createTagBinding", "deleteTagBinding", "listEffectiveTags", "listTagBindings")
# The permissions each resource type can be tested for on the resource itself (create and list are tested on the
# project). Source: the pubsub.* permissions of cloud.google.com/iam/docs/roles-permissions/pubsub and the method
# table of cloud.google.com/pubsub/docs/access-control.
PERMISSIONS: dict[str, frozenset[str]] = {
    "topics": frozenset(
        f"pubsub.topics.{verb}"
        for verb in (
            "attachSubscription",
            "delete",
            "detachSubscription",
            "get",
            "getIamPolicy",
            "publish",
            "setIamPolicy",
            "update",
            *_TAGS,
        )
    ),
    "subscriptions": frozenset(
        f"pubsub.subscriptions.{verb}"
        for verb in ("consume", "delete", "get", "getIamPolicy", "setIamPolicy", "update", *_TAGS)
    ),
    "snapshots": frozenset(
        f"pubsub.snapshots.{verb}"
        for verb in ("delete", "get", "getIamPolicy", "seek", "setIamPolicy", "update", *_TAGS)
    ),
}

_ROLE = re.compile(r"(roles|(projects|organizations)/[^/]+/roles)/[A-Za-z0-9_.]+")
_PERMISSION = re.compile(r"[a-z][a-zA-Z0-9]*(\.[a-zA-Z0-9]+){2,}")
_MEMBER_PREFIXES = (
    "user:",
    "serviceAccount:",
    "group:",
    "domain:",
    "deleted:",
    "principal://",
    "principalSet://",
    "projectOwner:",
    "projectEditor:",
    "projectViewer:",
)
_MEMBER_WORDS = ("allUsers", "allAuthenticatedUsers")


# ------------------------------------------------------------------------------------------------- pure rules
def resource_kind(resource: str) -> str:
    """The collection of a resource name IAM is asked about ("topics", "subscriptions", "snapshots"); raises
    INVALID_ARGUMENT for other names and UNIMPLEMENTED for schemas, which this emulator does not have."""
    parts = resource.split("/")
    kind = parts[2] if len(parts) == 4 and parts[0] == "projects" else ""
    if kind == "topics":
        names.topic_name(resource)
    elif kind == "subscriptions":
        names.subscription_name(resource)
    elif kind == "snapshots":
        names.snapshot_name(resource)
    elif kind == "schemas":
        raise PubSubError(grpc.StatusCode.UNIMPLEMENTED, "Schemas are not supported by this emulator")
    else:
        # The real service's answer for a project: its policy belongs to Resource Manager, not to Pub/Sub.
        raise invalid_argument(
            f"Invalid resource name: (resource={resource}); Pub/Sub manages the policies of topics, subscriptions, "
            "snapshots and schemas"
        )
    return kind


def check_version(version: int, what: str = "policy version") -> None:
    if version not in VALID_VERSIONS:
        raise invalid_argument(f"Invalid {what}: {version}; it must be 0, 1 or 3")


def check_policy(policy: Any) -> None:
    """Refuse a policy IAM would refuse: a bad version, a conditional binding, a binding without members, a
    malformed role or member, or an unknown predefined Pub/Sub role."""
    check_version(policy.version)
    for binding in policy.bindings:
        if binding.HasField("condition"):
            raise invalid_argument(
                f"Conditions are not supported on Pub/Sub resources (binding for role {binding.role})"
            )
        if not _ROLE.fullmatch(binding.role):
            raise invalid_argument(f"Invalid role: {binding.role!r}; roles look like roles/pubsub.viewer")
        if binding.role.startswith("roles/pubsub.") and binding.role not in PUBSUB_ROLES:
            raise invalid_argument(
                f"Role {binding.role} does not exist; Pub/Sub's are {', '.join(sorted(PUBSUB_ROLES))}"
            )
        if not binding.members:
            raise invalid_argument(f"The binding for role {binding.role} has no members; each needs at least one")
        for member in binding.members:
            if not _valid_member(member):
                raise invalid_argument(
                    f"Invalid member: {member!r}; members look like user:EMAIL, serviceAccount:EMAIL, group:EMAIL, "
                    "domain:DOMAIN, allUsers or allAuthenticatedUsers"
                )


def _valid_member(member: str) -> bool:
    if member in _MEMBER_WORDS:
        return True
    return any(member.startswith(prefix) and len(member) > len(prefix) for prefix in _MEMBER_PREFIXES)


def update_paths(paths: Iterable[str]) -> set[str]:
    """The policy fields a SetIamPolicy changes: its update_mask, or `bindings, etag` without one."""
    chosen = set(paths) or set(DEFAULT_MASK)
    unknown = chosen - MASKABLE
    if unknown:
        raise invalid_argument(f"Invalid update_mask: unknown policy field(s) {', '.join(sorted(unknown))}")
    return chosen


def merged_policy(current: Any | None, requested: Any, paths: set[str], etag: bytes) -> Any:
    """The policy stored after a SetIamPolicy: the masked fields from the request, the rest as they were."""
    stored = PolicyPb()
    if current is not None:
        stored.CopyFrom(current)
    if "bindings" in paths:
        del stored.bindings[:]
        stored.bindings.extend(requested.bindings)
    if "audit_configs" in paths:
        del stored.audit_configs[:]
        stored.audit_configs.extend(requested.audit_configs)
    # Without conditions IAM answers version 1 whatever was asked (GetPolicyOptions in google/iam/v1/options.proto).
    stored.version = STORED_VERSION
    stored.etag = etag
    return stored


def granted(kind: str, permissions: Iterable[str]) -> list[str]:
    """TestIamPermissions without enforcement: the requested permissions that exist on this resource type, in the
    order asked. Wildcards and malformed names are INVALID_ARGUMENT."""
    requested = list(permissions)
    for permission in requested:
        if "*" in permission or not _PERMISSION.fullmatch(permission):
            raise invalid_argument(
                f"Invalid permission: {permission!r}; name one permission such as pubsub.topics.publish "
                "(wildcards are not allowed)"
            )
    valid = PERMISSIONS[kind]
    return [p for p in dict.fromkeys(requested) if p in valid]


# --------------------------------------------------------------------------------------------- the store's part
class Iam:
    """IAM policies of the Store's resources (mixed into emulator.pubsub.store.Store)."""

    # The Store's state and services this part uses.
    lock: threading.Lock
    topics: dict[str, TopicState]
    subscriptions: dict[str, SubscriptionState]
    snapshots: dict[str, SnapshotState]
    policies: dict[str, Any]
    _iam_serial: int
    _commit: Callable[[Record], int]
    _wait: Callable[[int], None]

    def get_iam_policy(self, resource: str, requested_version: int = 0) -> Any:
        kind = resource_kind(resource)
        check_version(requested_version, "requested_policy_version")
        with self.lock:
            self._require(kind, resource)
            stored = self.policies.get(resource)
            return stored if stored is not None else PolicyPb(etag=EMPTY_ETAG)

    def set_iam_policy(self, resource: str, policy: Any, mask_paths: Iterable[str] = ()) -> Any:
        kind = resource_kind(resource)
        paths = update_paths(mask_paths)
        check_policy(policy)
        with self.lock:
            self._require(kind, resource)
            current = self.policies.get(resource)
            current_etag = current.etag if current is not None else EMPTY_ETAG
            # Checked whenever the caller sends one: a read-modify-write cycle must never overwrite a newer policy.
            if policy.etag and policy.etag != current_etag:
                raise PubSubError(
                    grpc.StatusCode.ABORTED,
                    "There were concurrent policy changes. Please retry the whole read-modify-write with the "
                    "latest policy.",
                )
            stored = merged_policy(current, policy, paths, self._next_etag())
            if kind == "snapshots":
                self._put_policy(resource, stored)  # snapshots are not journaled, nor are their policies
                return stored
            ticket = self._commit(IamPolicyPut(resource, stored))
        self._wait(ticket)
        return stored

    def test_iam_permissions(self, resource: str, permissions: Iterable[str]) -> list[str]:
        kind = resource_kind(resource)
        allowed = granted(kind, permissions)
        with self.lock:
            return allowed if resource in self._collection(kind) else []

    def _collection(self, kind: str) -> dict[str, Any]:
        return {"topics": self.topics, "subscriptions": self.subscriptions, "snapshots": self.snapshots}[kind]

    def _require(self, kind: str, resource: str) -> None:
        if resource not in self._collection(kind):
            if kind == "snapshots":
                raise PubSubError(grpc.StatusCode.NOT_FOUND, "Snapshot does not exist")
            raise not_found(kind[:-1].capitalize())

    def _next_etag(self) -> bytes:
        # A counter, not a hash of the contents: every change is a new etag, even one that sets the same bindings.
        self._iam_serial += 1
        return self._iam_serial.to_bytes(8, "big")

    def _put_policy(self, resource: str, policy: Any) -> None:
        """Store a policy (live or at replay); one whose resource is gone is dropped, as its deletion would have."""
        kind = resource.split("/")[2]
        if resource not in self._collection(kind):
            return
        self.policies[resource] = policy
        self._iam_serial = max(self._iam_serial, int.from_bytes(policy.etag, "big"))

    def _drop_policy(self, resource: str) -> None:
        self.policies.pop(resource, None)
