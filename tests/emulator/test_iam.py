"""IAM policies in this project's Pub/Sub emulator (emulator/pubsub/iam.py), through the official client library
against the emulator process: stored and returned, never enforced.

What the official emulator does with the same calls (it answers UNIMPLEMENTED) is in test_conformance.py.
"""

from __future__ import annotations

import re
import signal
import uuid
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.iam.v1 import policy_pb2

from eventmodel.resources import DEAD_LETTER_TOPIC, SUBSCRIPTION, TOPIC

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EMPTY_ETAG = b"\x00\x20\x01"  # "ACAB" in JSON: what the real service answers for a resource without a policy
DOCS = Path(__file__).resolve().parents[2] / "docs"
SA = "serviceAccount:event-pipeline@my-project.iam.gserviceaccount.com"


def two_bindings(policy: policy_pb2.Policy) -> policy_pb2.Policy:
    """The change the Pub/Sub client library's own system tests make (an editor domain and a viewer group)."""
    policy.bindings.add(role="roles/pubsub.editor", members=["domain:example.com"])
    policy.bindings.add(role="roles/pubsub.viewer", members=["group:cloud-logs@example.com"])
    return policy


def by_role(policy: policy_pb2.Policy) -> dict[str, list[str]]:
    return {binding.role: list(binding.members) for binding in policy.bindings}


def add_iam_policy_binding(client, resource: str, member: str, role: str) -> policy_pb2.Policy:
    """What `gcloud pubsub ... add-iam-policy-binding` does: read, add the member, write back with the etag read."""
    policy = client.get_iam_policy(request={"resource": resource})
    for binding in policy.bindings:
        if binding.role == role:
            if member not in binding.members:
                binding.members.append(member)
            break
    else:
        policy.bindings.add(role=role, members=[member])
    return client.set_iam_policy(request={"resource": resource, "policy": policy})


# --------------------------------------------------------------------------------------------- round trips
def test_topic_policy_round_trip(workbench_pubsub):
    topic = workbench_pubsub.topic()
    publisher = workbench_pubsub.publisher
    empty = publisher.get_iam_policy(request={"resource": topic})
    assert list(empty.bindings) == [] and empty.etag == EMPTY_ETAG and empty.version == 0

    stored = publisher.set_iam_policy(request={"resource": topic, "policy": two_bindings(empty)})
    read = publisher.get_iam_policy(request={"resource": topic})
    assert read == stored
    assert by_role(read) == {
        "roles/pubsub.editor": ["domain:example.com"],
        "roles/pubsub.viewer": ["group:cloud-logs@example.com"],
    }
    assert read.version == 1  # what IAM answers for a policy without conditions
    assert read.etag not in (b"", EMPTY_ETAG)


def test_subscription_policy_round_trip(workbench_pubsub):
    subscription = workbench_pubsub.subscription(workbench_pubsub.topic())
    subscriber = workbench_pubsub.subscriber
    policy = subscriber.get_iam_policy(request={"resource": subscription})
    stored = subscriber.set_iam_policy(request={"resource": subscription, "policy": two_bindings(policy)})
    assert subscriber.get_iam_policy(request={"resource": subscription}) == stored
    assert len(stored.bindings) == 2


def test_snapshot_policy_round_trip(workbench_pubsub):
    subscription = workbench_pubsub.subscription(workbench_pubsub.topic())
    snapshot = subscription.replace("/subscriptions/", "/snapshots/")
    subscriber = workbench_pubsub.subscriber
    subscriber.create_snapshot(name=snapshot, subscription=subscription)
    stored = add_iam_policy_binding(subscriber, snapshot, SA, "roles/pubsub.subscriber")
    assert by_role(subscriber.get_iam_policy(request={"resource": snapshot})) == by_role(stored)
    subscriber.delete_snapshot(snapshot=snapshot)
    with pytest.raises(exceptions.NotFound):
        subscriber.get_iam_policy(request={"resource": snapshot})


# ------------------------------------------------------------------------------------------------ etags
def test_a_stale_etag_is_aborted_and_changes_nothing(workbench_pubsub):
    topic = workbench_pubsub.topic()
    publisher = workbench_pubsub.publisher
    read_by_a = publisher.get_iam_policy(request={"resource": topic})
    read_by_b = publisher.get_iam_policy(request={"resource": topic})
    written_by_b = add_iam_policy_binding(publisher, topic, "user:b@example.com", "roles/pubsub.viewer")

    read_by_a.bindings.add(role="roles/pubsub.publisher", members=["user:a@example.com"])
    with pytest.raises(exceptions.Aborted):
        publisher.set_iam_policy(request={"resource": topic, "policy": read_by_a})
    assert read_by_b.etag == read_by_a.etag  # both read the same version; only the first write may use it
    assert publisher.get_iam_policy(request={"resource": topic}) == written_by_b

    # Retrying the whole read-modify-write works; every write gets a new etag.
    retried = add_iam_policy_binding(publisher, topic, "user:a@example.com", "roles/pubsub.publisher")
    assert retried.etag != written_by_b.etag
    assert by_role(retried) == {
        "roles/pubsub.viewer": ["user:b@example.com"],
        "roles/pubsub.publisher": ["user:a@example.com"],
    }


def test_a_policy_without_etag_overwrites(workbench_pubsub):
    topic = workbench_pubsub.topic()
    publisher = workbench_pubsub.publisher
    add_iam_policy_binding(publisher, topic, "user:a@example.com", "roles/pubsub.viewer")
    blind = policy_pb2.Policy()
    blind.bindings.add(role="roles/pubsub.publisher", members=[SA])
    publisher.set_iam_policy(request={"resource": topic, "policy": blind})
    assert by_role(publisher.get_iam_policy(request={"resource": topic})) == {"roles/pubsub.publisher": [SA]}


def test_update_mask_chooses_the_fields_set(workbench_pubsub):
    topic = workbench_pubsub.topic()
    publisher = workbench_pubsub.publisher
    add_iam_policy_binding(publisher, topic, SA, "roles/pubsub.publisher")
    audit_only = policy_pb2.Policy()
    audit_only.audit_configs.add(service="allServices")
    stored = publisher.set_iam_policy(
        request={"resource": topic, "policy": audit_only, "update_mask": {"paths": ["audit_configs"]}}
    )
    assert by_role(stored) == {"roles/pubsub.publisher": [SA]}  # bindings not in the mask: kept
    assert [c.service for c in stored.audit_configs] == ["allServices"]
    with pytest.raises(exceptions.InvalidArgument):
        publisher.set_iam_policy(request={"resource": topic, "policy": audit_only, "update_mask": {"paths": ["owner"]}})


# ------------------------------------------------------------------------------------------ missing, invalid
def test_missing_resources_are_not_found_but_test_permissions_is_empty(workbench_pubsub):
    topic, subscription = workbench_pubsub.topic_path(), workbench_pubsub.subscription_path()
    with pytest.raises(exceptions.NotFound):
        workbench_pubsub.publisher.get_iam_policy(request={"resource": topic})
    with pytest.raises(exceptions.NotFound):
        workbench_pubsub.publisher.set_iam_policy(
            request={"resource": topic, "policy": two_bindings(policy_pb2.Policy())}
        )
    with pytest.raises(exceptions.NotFound):
        workbench_pubsub.subscriber.get_iam_policy(request={"resource": subscription})
    # The IAM reference: "If the resource does not exist, this will return an empty set of permissions".
    answer = workbench_pubsub.publisher.test_iam_permissions(
        request={"resource": topic, "permissions": ["pubsub.topics.publish"]}
    )
    assert list(answer.permissions) == []


def _binding(role: str = "roles/pubsub.viewer", members: tuple[str, ...] = ("user:a@example.com",), **extra):
    return {"role": role, "members": list(members), **extra}


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param({"version": 2, "bindings": [_binding()]}, id="version-2"),
        pytest.param({"bindings": [_binding(members=())]}, id="binding-without-members"),
        pytest.param({"bindings": [_binding(members=("alice@example.com",))]}, id="member-without-type"),
        pytest.param({"bindings": [_binding(role="pubsub.viewer")]}, id="role-without-roles-prefix"),
        pytest.param({"bindings": [_binding(role="roles/pubsub.subscribers")]}, id="misspelt-pubsub-role"),
        pytest.param(
            {
                "version": 3,
                "bindings": [_binding(condition={"expression": "request.time < timestamp('2030-01-01T00:00:00Z')"})],
            },
            id="conditional-binding",
        ),
    ],
)
def test_invalid_policies_are_refused(workbench_pubsub, policy):
    topic = workbench_pubsub.topic()
    with pytest.raises(exceptions.InvalidArgument):
        workbench_pubsub.publisher.set_iam_policy(request={"resource": topic, "policy": policy})
    assert list(workbench_pubsub.publisher.get_iam_policy(request={"resource": topic}).bindings) == []


@pytest.mark.parametrize("resource", ["projects/p", "projects/p/buckets/b", "projects/p/topics/1bad"])
def test_resources_pubsub_does_not_manage_are_invalid(workbench_pubsub, resource):
    with pytest.raises(exceptions.InvalidArgument):
        workbench_pubsub.publisher.get_iam_policy(request={"resource": resource})


def test_schema_policies_are_unimplemented_like_schemas(workbench_pubsub):
    with pytest.raises(exceptions.MethodNotImplemented):
        workbench_pubsub.publisher.get_iam_policy(request={"resource": "projects/p/schemas/some-schema"})


def test_an_unsupported_policy_version_is_refused_on_get(workbench_pubsub):
    topic = workbench_pubsub.topic()
    with pytest.raises(exceptions.InvalidArgument):
        workbench_pubsub.publisher.get_iam_policy(
            request={"resource": topic, "options": {"requested_policy_version": 2}}
        )
    asked_for_3 = workbench_pubsub.publisher.get_iam_policy(
        request={"resource": topic, "options": {"requested_policy_version": 3}}
    )
    assert asked_for_3.etag == EMPTY_ETAG


# ------------------------------------------------------------------------------------------- permissions
def test_permissions_granted_are_those_of_the_resource_type(workbench_pubsub):
    topic = workbench_pubsub.topic()
    subscription = workbench_pubsub.subscription(topic)
    asked = ["pubsub.topics.publish", "pubsub.subscriptions.consume", "pubsub.topics.update", "storage.objects.get"]
    on_topic = workbench_pubsub.publisher.test_iam_permissions(request={"resource": topic, "permissions": asked})
    assert list(on_topic.permissions) == ["pubsub.topics.publish", "pubsub.topics.update"]
    on_sub = workbench_pubsub.subscriber.test_iam_permissions(request={"resource": subscription, "permissions": asked})
    assert list(on_sub.permissions) == ["pubsub.subscriptions.consume"]
    # Not enforced: an empty policy, or one naming someone else, grants the same.
    add_iam_policy_binding(
        workbench_pubsub.subscriber, subscription, "user:someone-else@example.com", "roles/pubsub.viewer"
    )
    again = workbench_pubsub.subscriber.test_iam_permissions(request={"resource": subscription, "permissions": asked})
    assert list(again.permissions) == ["pubsub.subscriptions.consume"]


@pytest.mark.parametrize("permission", ["*", "pubsub.*", "pubsub.topics.*", "publish"])
def test_wildcard_or_malformed_permissions_are_invalid(workbench_pubsub, permission):
    topic = workbench_pubsub.topic()
    with pytest.raises(exceptions.InvalidArgument):
        workbench_pubsub.publisher.test_iam_permissions(request={"resource": topic, "permissions": [permission]})


# ------------------------------------------------------------------------------------- lifetime of a policy
def test_deleting_a_resource_drops_its_policy(workbench_pubsub):
    topic = workbench_pubsub.topic()
    subscription = workbench_pubsub.subscription(topic)
    add_iam_policy_binding(workbench_pubsub.publisher, topic, SA, "roles/pubsub.publisher")
    add_iam_policy_binding(workbench_pubsub.subscriber, subscription, SA, "roles/pubsub.subscriber")
    workbench_pubsub.subscriber.delete_subscription(subscription=subscription)
    workbench_pubsub.publisher.delete_topic(topic=topic)

    # Created again under the same names, they are new resources with none of the old policy.
    workbench_pubsub.publisher.create_topic(name=topic)
    workbench_pubsub.subscriber.create_subscription(name=subscription, topic=topic)
    for client, resource in ((workbench_pubsub.publisher, topic), (workbench_pubsub.subscriber, subscription)):
        policy = client.get_iam_policy(request={"resource": resource})
        assert list(policy.bindings) == [] and policy.etag == EMPTY_ETAG


def test_policies_survive_a_kill_and_restart_of_a_durable_emulator(fresh_emulator, connect, tmp_path):
    emulator = fresh_emulator("--data-dir", str(tmp_path))
    pubsub = connect(emulator)
    topic, gone = pubsub.topic(), pubsub.topic()
    subscription = pubsub.subscription(topic)
    topic_policy = add_iam_policy_binding(pubsub.publisher, topic, SA, "roles/pubsub.publisher")
    sub_policy = add_iam_policy_binding(pubsub.subscriber, subscription, SA, "roles/pubsub.subscriber")
    add_iam_policy_binding(pubsub.publisher, gone, SA, "roles/pubsub.viewer")
    pubsub.publisher.delete_topic(topic=gone)
    emulator.stop(signal.SIGKILL)  # a confirmed SetIamPolicy is on disk before its reply

    port = int(emulator.target.rsplit(":", 1)[1])
    restarted = connect(fresh_emulator("--data-dir", str(tmp_path), port=port))
    assert restarted.publisher.get_iam_policy(request={"resource": topic}) == topic_policy
    assert restarted.subscriber.get_iam_policy(request={"resource": subscription}) == sub_policy
    restarted.publisher.create_topic(name=gone)
    assert list(restarted.publisher.get_iam_policy(request={"resource": gone}).bindings) == []
    # The etag read before the restart is still the current one, and the next one is new.
    after = add_iam_policy_binding(restarted.publisher, topic, "user:a@example.com", "roles/pubsub.viewer")
    assert after.etag not in (topic_policy.etag, sub_policy.etag)


# ------------------------------------------------------------------------------------------------ runbook
def runbook_bindings() -> list[tuple[str, str, str, str]]:
    """(collection, resource id, member, role) of every `gcloud pubsub ... add-iam-policy-binding` in docs/, except
    the emulator's own page, whose commands probe a real project (some are meant to fail)."""
    found = []
    for page in sorted(p for p in DOCS.glob("*.md") if p.name != "pubsub-emulator.md"):
        text = page.read_text().replace("\\\n", " ")
        for match in re.finditer(r"gcloud pubsub (topics|subscriptions) add-iam-policy-binding ([^\s]+)([^\n]*)", text):
            collection, resource_id, flags = match.groups()
            member = re.search(r"--member=(\S+)", flags).group(1).replace("${SA}", SA.split(":", 1)[1])
            role = re.search(r"--role=(\S+)", flags).group(1)
            found.append((collection, resource_id, member, role))
    return found


def test_the_runbooks_pubsub_bindings_apply_offline(workbench_pubsub):
    """Every Pub/Sub binding the runbooks grant (docs/pipeline.md, step 2) is accepted and reads back: a misspelt
    role or member in a runbook fails here instead of on the project."""
    bindings = runbook_bindings()
    assert {(c, r) for c, r, _, _ in bindings} >= {("subscriptions", SUBSCRIPTION), ("topics", DEAD_LETTER_TOPIC)}
    # A project of its own, so the runbook's fixed names meet nothing another test created.
    project = f"projects/runbook-{uuid.uuid4().hex[:8]}"
    for topic_id in sorted({TOPIC, DEAD_LETTER_TOPIC} | {r for c, r, _, _ in bindings if c == "topics"}):
        workbench_pubsub.publisher.create_topic(name=f"{project}/topics/{topic_id}")
    for subscription_id in sorted({r for c, r, _, _ in bindings if c == "subscriptions"}):
        # Which topic does not matter to IAM; the runbook's subscriptions read the event topic or the dead letters.
        topic_id = DEAD_LETTER_TOPIC if subscription_id.startswith(DEAD_LETTER_TOPIC) else TOPIC
        workbench_pubsub.subscriber.create_subscription(
            name=f"{project}/subscriptions/{subscription_id}", topic=f"{project}/topics/{topic_id}"
        )
    for collection, resource_id, member, role in bindings:
        resource = f"{project}/{collection}/{resource_id}"
        client = workbench_pubsub.publisher if collection == "topics" else workbench_pubsub.subscriber
        add_iam_policy_binding(client, resource, member, role)
        assert member in by_role(client.get_iam_policy(request={"resource": resource}))[role]
    pipeline_sub = f"{project}/subscriptions/{SUBSCRIPTION}"
    roles = by_role(workbench_pubsub.subscriber.get_iam_policy(request={"resource": pipeline_sub}))
    assert {"roles/pubsub.subscriber", "roles/pubsub.viewer"} <= set(roles)
