"""boto3's S3 client for the local S3 server or any S3 endpoint, or for AWS itself: the one place one is made (the
history publisher, the backfill's readers on Dataflow workers, the local stack).

With an endpoint the client uses it, with the local server's placeholder keys unless keys are given; without one,
boto3's own chain decides everything (AWS_* variables, AWS_ENDPOINT_URL included, ~/.aws, an instance or web
identity). Either way every call has a connect and read timeout and at most MAX_ATTEMPTS attempts, so a server
that is down costs seconds, not boto3's default minutes.

    s3 = s3_client("127.0.0.1:5000")                               # `workbench up --s3`'s server
    s3 = s3_client(None, region="eu-west-1")                       # AWS, the usual environment
    s3 = s3_client(endpoint_url="http://minio:9000", aws_access_key_id=..., aws_secret_access_key=...)
"""

from __future__ import annotations

import os
from typing import Any

from endpoints import http_endpoint

# The local server's credentials and region: moto's documented placeholders, accepted by any local S3 server and by
# no real account (so they are no secret, and `workbench env` prints them in clear).
LOCAL_S3_ACCESS_KEY_ID = "testing"
LOCAL_S3_SECRET_ACCESS_KEY = "testing"
LOCAL_S3_REGION = "us-east-1"

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 60.0  # one 8 MiB multipart part on a slow link
MAX_ATTEMPTS = 3  # botocore's standard retry mode: throttling and 5xx are retried with backoff
ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # boto3 reads both itself


def environment_endpoint() -> str | None:
    """The endpoint boto3 takes from the environment, when it names one (None: AWS's own)."""
    return next((os.environ[name] for name in ENDPOINT_ENV if os.environ.get(name)), None)


def s3_client(
    endpoint: str | None = None,
    region: str | None = None,
    *,
    read_timeout_s: float = READ_TIMEOUT_S,
    attempts: int = MAX_ATTEMPTS,
    **settings: Any,
) -> Any:
    """boto3's S3 client, with bounded timeouts and retries (a reader of large objects may want a longer read
    timeout, a worker more attempts).

    `endpoint` (http://HOST:PORT or HOST:PORT) is a local server: its placeholder keys and region unless given.
    `settings` are boto3's client arguments (endpoint_url, region_name, aws_access_key_id, verify, ...), as Beam's
    --s3_* flags give them; they override the environment. botocore's own exception when it cannot configure one
    (a missing profile, a malformed config file): the caller says what to do about it."""
    import boto3
    from botocore.config import Config

    if endpoint:
        settings.setdefault("endpoint_url", http_endpoint(endpoint))
        settings.setdefault("aws_access_key_id", LOCAL_S3_ACCESS_KEY_ID)
        settings.setdefault("aws_secret_access_key", LOCAL_S3_SECRET_ACCESS_KEY)
        region = region or LOCAL_S3_REGION
    if region:
        settings.setdefault("region_name", region)
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=read_timeout_s,
        retries={"mode": "standard", "total_max_attempts": attempts},
        # A local server answers at one host name: bucket.host would not resolve.
        s3={"addressing_style": "path"} if settings.get("endpoint_url") or environment_endpoint() else None,
    )
    return boto3.session.Session().client("s3", config=config, **settings)


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
