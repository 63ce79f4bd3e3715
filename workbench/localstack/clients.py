"""Google client libraries and boto3 pointed at the local emulators or at the cloud: the one place they are made.

With an emulator host the clients are anonymous and never ask Google for credentials (no metadata-server probe);
without one they use Application Default Credentials. The caller's environment (PUBSUB_EMULATOR_HOST, ...) is
neither needed nor changed: a client here goes where it is told. S3 the same way: with an endpoint, the local
server's placeholder keys; without one, boto3's own chain (AWS_* variables, ~/.aws, an instance or web identity).
"""

from __future__ import annotations

import os
from typing import Any

from eventmodel import resources as names
from eventmodel.resources import http_endpoint
from workbench.errors import WorkbenchError


def bigquery_client(project: str, emulator: str | None, location: str | None = "US") -> Any:
    """google-cloud-bigquery's client for the emulator at HOST:PORT or http://HOST:PORT, or for BigQuery
    (eventmodel.bigquery_client, strict when WORKBENCH_BIGQUERY_STRICT=1), with the fix for missing credentials."""
    from eventmodel.bigquery_client import bigquery_client as make

    if emulator:
        os.environ.setdefault("NO_GCE_CHECK", "true")
        return make(project, emulator, location)
    try:
        return make(project, None, location)
    except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError and friends
        raise WorkbenchError(
            f"cannot reach BigQuery for project {project}: {exc}",
            "run `gcloud auth application-default login`, or pass --emulator HOST:PORT for the local emulator",
        ) from None


def pubsub_channel(emulator: str):
    """A loopback gRPC channel to a Pub/Sub emulator, without gRPC's 4 MiB receive limit (a pull of 1,000 large
    messages exceeds it, and the client would fail every pull)."""
    import grpc

    return grpc.insecure_channel(
        emulator, options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    )


def publisher_client(emulator: str | None) -> Any:
    """pubsub_v1.PublisherClient for the emulator at HOST:PORT, or for Pub/Sub itself."""
    from google.cloud import pubsub_v1

    if not emulator:
        return pubsub_v1.PublisherClient()
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=pubsub_channel(emulator)))


def subscriber_client(emulator: str | None) -> Any:
    """pubsub_v1.SubscriberClient for the emulator at HOST:PORT, or for Pub/Sub itself."""
    from google.cloud import pubsub_v1

    if not emulator:
        return pubsub_v1.SubscriberClient()
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=pubsub_channel(emulator)))


def use_anonymous_beam_credentials() -> None:
    """Local mode for Beam's own GCP clients (the gs:// filesystem): no credential lookup, which retries for
    ~18 s when there are none, and no GCE metadata probe.

    Beam 2.77 has no public switch for this: --no_auth is read only by the Dataflow API client, and gcsio asks
    apache_beam.internal.gcp.auth for credentials (None = anonymous). So the cached answer is set to None; a
    canary test (tests/workbench/pipeline_run/test_beam_private_hooks.py) fails when Beam renames what this writes.
    """
    os.environ["NO_GCE_CHECK"] = "true"
    from apache_beam.internal.gcp import auth

    with auth._Credentials._credentials_lock:
        auth._Credentials._credentials = None
        auth._Credentials._credentials_init = True


def s3_client(endpoint: str | None, region: str | None = None) -> Any:
    """boto3's S3 client for the local server at http://HOST:PORT (or HOST:PORT), with its placeholder keys; for
    endpoint None, the one boto3 makes from the usual AWS environment (which honours AWS_ENDPOINT_URL too)."""
    import boto3

    session = boto3.session.Session()
    if endpoint:
        return session.client(
            "s3",
            endpoint_url=http_endpoint(endpoint),
            region_name=region or names.LOCAL_S3_REGION,
            aws_access_key_id=names.LOCAL_S3_ACCESS_KEY_ID,
            aws_secret_access_key=names.LOCAL_S3_SECRET_ACCESS_KEY,
        )
    return session.client("s3", region_name=region)


def create_buckets(client: Any, buckets: tuple[str, ...] | list[str]) -> None:
    """Create each bucket that does not exist yet (idempotent, like the Pub/Sub resources of `workbench up`)."""
    existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
    for bucket in buckets:
        if bucket in existing:
            continue
        region = client.meta.region_name
        if region and region != "us-east-1":  # S3 refuses a LocationConstraint of us-east-1 and needs any other
            client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        else:
            client.create_bucket(Bucket=bucket)
