"""Make the local S3 server (moto) refuse reads of one object or one bucket, as real S3 does for a reader whose
role lacks the permission: the backfill's "unreadable object" and "bucket it may not read" cases.

    >>> with s3_reads_denied(endpoint, "workbench-history", "history/part-0003.ndjson") as reader:  # doctest: +SKIP
    ...     s3 = reader.client()                                  # may do everything else, as a backfill's role
    ...     s3.get_object(Bucket="workbench-history", Key="history/part-0003.ndjson")   # ClientError AccessDenied

What really works in server mode (tried with moto 5.2.5; tests/workbench/localstack/test_s3_permissions.py holds it):

- moto checks no signature and no permission by default. Its IAM enforcement turns on once the server has
  answered INITIAL_NO_AUTH_ACTION_COUNT requests; a running server takes a new count over HTTP,
  POST /moto-api/reset-auth with the number as a plain-text body (a form content type leaves the body empty and
  the server answers 500). With 0, every request from then on is checked against the IAM users of that server:
  this helper creates a user whose inline policy allows s3:* and denies s3:GetObject on the one object (or s3:*
  on the bucket and everything in it), hands out its access key, and restores the previous count on exit.
- What the reader then gets: GetObject on the denied object 403 AccessDenied ("Access Denied"); HeadObject 403
  with no body (boto3 says code "403", "Forbidden"); ListObjectsV2 of a denied bucket and GetObject in it 403
  AccessDenied; everything else works. Beam's s3:// filesystem raises its S3ClientError with code 403.
- While it is on, every request needs an IAM user's key: the placeholder keys ("testing") get 403
  InvalidAccessKeyId and unsigned requests fail too. So use the reader's credentials for everything inside the
  block (a session fixture shared by other tests is back to normal after it).
- Not usable: bucket policies. moto consults a bucket policy only for unsigned requests (its ACL check of
  anonymous access), never for a signed boto3 or Beam request, so a Deny there changes nothing for a backfill.
- A missing bucket, for comparison, is 404 NoSuchBucket (ListObjectsV2, GetObject) or a bodiless 404 ("404",
  "Not Found") for HeadBucket and HeadObject; a missing key is 404 NoSuchKey; with or without enforcement.
"""

from __future__ import annotations

import contextlib
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from endpoints import http_endpoint
from endpoints.s3 import LOCAL_S3_ACCESS_KEY_ID, LOCAL_S3_REGION, LOCAL_S3_SECRET_ACCESS_KEY
from eventmodel import resources as names

POLICY_NAME = "s3-reads-denied"


@dataclass(frozen=True)
class S3Reader:
    """An IAM user of the local server: its keys, and where the server is."""

    endpoint: str
    access_key_id: str
    secret_access_key: str

    @property
    def exports(self) -> dict[str, str]:
        """The AWS variables for a child process (a `workbench backfill` run) that reads as this user."""
        return {
            names.AWS_ENDPOINT_ENV: self.endpoint,
            names.AWS_ACCESS_KEY_ID_ENV: self.access_key_id,
            names.AWS_SECRET_ACCESS_KEY_ENV: self.secret_access_key,
            names.AWS_REGION_ENV: LOCAL_S3_REGION,
        }

    @property
    def beam_flags(self) -> list[str]:
        """The same as Beam's S3Options flags, for a pipeline run in this process."""
        return [
            f"--s3_endpoint_url={self.endpoint}",
            f"--s3_access_key_id={self.access_key_id}",
            f"--s3_secret_access_key={self.secret_access_key}",
            f"--s3_region_name={LOCAL_S3_REGION}",
        ]

    def client(self, service: str = "s3") -> Any:
        import boto3

        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            region_name=LOCAL_S3_REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )


def denial_policy(bucket: str, key: str | None = None) -> dict[str, Any]:
    """Allow everything in S3, deny reading `key` of `bucket` (with key None: deny every action on the bucket)."""
    if key is None:
        resources = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
        denied = {"Effect": "Deny", "Action": "s3:*", "Resource": resources}
    else:
        denied = {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/{key}"}
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, denied],
    }


def set_auth_threshold(endpoint: str, count: float) -> float:
    """moto checks signatures and IAM permissions once it has answered `count` requests from now (0: at once;
    inf: never, its default). Returns the previous threshold."""
    request = urllib.request.Request(
        f"{http_endpoint(endpoint)}/moto-api/reset-auth",
        data=str(count).encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},  # a form type would leave moto an empty body (it answers 500)
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
        return float(orjson.loads(response.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"])


@contextlib.contextmanager
def s3_reads_denied(endpoint: str, bucket: str, key: str | None = None) -> Iterator[S3Reader]:
    """Inside the block the server checks every request, and the yielded reader may do anything in S3 except
    read `key` of `bucket` (with key None: anything with that bucket). The previous state is back on exit."""
    endpoint = http_endpoint(endpoint)
    reader_name = f"workbench-reader-{uuid.uuid4().hex[:8]}"
    from endpoints.s3 import s3_client

    admin = s3_client(endpoint)
    iam = _iam_client(admin)
    iam.create_user(UserName=reader_name)
    policy = orjson.dumps(denial_policy(bucket, key)).decode()
    iam.put_user_policy(UserName=reader_name, PolicyName=POLICY_NAME, PolicyDocument=policy)
    created = iam.create_access_key(UserName=reader_name)["AccessKey"]
    reader = S3Reader(endpoint, created["AccessKeyId"], created["SecretAccessKey"])
    previous = set_auth_threshold(endpoint, 0)
    try:
        yield reader
    finally:
        set_auth_threshold(endpoint, previous)
        iam.delete_access_key(UserName=reader_name, AccessKeyId=reader.access_key_id)
        iam.delete_user_policy(UserName=reader_name, PolicyName=POLICY_NAME)
        iam.delete_user(UserName=reader_name)


def _iam_client(s3: Any) -> Any:
    """The IAM API of the same local server, with the same placeholder keys (moto serves every service on one port)."""
    import boto3

    return boto3.session.Session().client(
        "iam",
        endpoint_url=s3.meta.endpoint_url,
        region_name=LOCAL_S3_REGION,
        aws_access_key_id=LOCAL_S3_ACCESS_KEY_ID,
        aws_secret_access_key=LOCAL_S3_SECRET_ACCESS_KEY,
    )
