"""The tests' one "stack with resources" factory (tests/stack_support.py): what it makes is there, named for the
test alone, with the environment pointing at it; and what it made is gone after it."""

from __future__ import annotations

import os

import pytest
from stack_support import LocalStack, delete_resources

from endpoints.storage import storage_client
from eventmodel import resources as names

pytestmark = pytest.mark.integration


def what_exists(stack: LocalStack) -> dict[str, set[str]]:
    from endpoints.pubsub import publisher_client, subscriber_client

    place = {"project": f"projects/{stack.project}"}
    publisher, subscriber = publisher_client(stack.pubsub), subscriber_client(stack.pubsub)
    try:
        topics = {t.name.rsplit("/", 1)[1] for t in publisher.list_topics(request=place, timeout=10)}
        subscriptions = {s.name.rsplit("/", 1)[1] for s in subscriber.list_subscriptions(request=place, timeout=10)}
    finally:
        publisher.transport.close()
        subscriber.close()
    with stack.bigquery_client() as client:
        datasets = {d.dataset_id for d in client.list_datasets(project=stack.project, timeout=30)}
        tables = {t.table_id for d in datasets for t in client.list_tables(f"{stack.project}.{d}", timeout=30)}
    buckets = {b["Name"] for b in stack.s3_emulator.s3_client().list_buckets()["Buckets"]}
    gcs = {b.name for b in storage_client(stack.project, stack.gcs_emulator.endpoint).list_buckets()}
    return {"topics": topics, "subscriptions": subscriptions, "datasets": datasets, "tables": tables,
            "buckets": buckets & {stack.bucket}, "gcs buckets": gcs & {stack.gcs_bucket}}  # fmt: skip


@pytest.fixture
def gcs():
    from workbench.localstack.emulators import start_gcs_emulator

    with start_gcs_emulator() as emulator:
        yield emulator


def test_a_stack_is_made_named_for_its_test_pointed_at_and_deleted(make_stack, request, gcs):
    stack = make_stack(request, "factory-it", s3=True, gcs=gcs, dataset="events_factory")
    other = make_stack(request, "factory-it")
    assert stack.project.startswith("factory-it-") and other.project != stack.project
    assert stack.bucket.startswith("factory-it-") and other.bucket is None
    made = what_exists(stack)
    assert made["topics"] == {names.TOPIC, names.DEAD_LETTER_TOPIC}
    assert made["subscriptions"] >= {names.SUBSCRIPTION, names.DEAD_LETTER_SUBSCRIPTION}
    assert "events_factory" in made["datasets"] and "orders" in made["tables"]  # (and the model's snapshots)
    assert made["buckets"] == {stack.bucket} and made["gcs buckets"] == {stack.gcs_bucket}
    assert stack.gcs_root == f"gs://{stack.gcs_bucket}" and os.environ["STORAGE_EMULATOR_HOST"] == gcs.endpoint
    assert os.environ["PUBSUB_EMULATOR_HOST"] == other.pubsub  # the later stack's, as the environment reads
    assert os.environ["WORKBENCH_HOME"] == str(other.home)

    stack.s3_emulator.s3_client().put_object(Bucket=stack.bucket, Key="a/b.json", Body=b"{}")  # not only empty ones
    storage_client(stack.project, gcs.endpoint).bucket(stack.gcs_bucket).blob("a/b.json").upload_from_string(b"{}")
    delete_resources(stack)
    assert what_exists(stack) == {kind: set() for kind in made}
    delete_resources(stack)  # again, as the teardown will: nothing left is no error
