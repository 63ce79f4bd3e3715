"""s3_reads_denied really makes the local S3 server refuse: a 403 from the server for one object or one bucket,
to boto3 and to Beam's s3:// filesystem, everything else readable, the server back to normal afterwards."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from workbench.localstack.s3_permissions import s3_reads_denied

pytestmark = pytest.mark.integration


@pytest.fixture
def history(s3_emulator) -> str:
    name = f"perm-{uuid.uuid4().hex[:12]}"
    s3 = s3_emulator.s3_client()
    s3.create_bucket(Bucket=name)
    for key in ("h/ok.ndjson", "h/locked.ndjson"):
        s3.put_object(Bucket=name, Key=key, Body=b'{"event_id": "e"}\n')
    return name


def error_of(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"], raised.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_one_object_is_refused_with_access_denied_and_the_rest_reads(s3_emulator, history):
    with s3_reads_denied(s3_emulator.endpoint, history, "h/locked.ndjson") as reader:
        s3 = reader.client()
        assert error_of(lambda: s3.get_object(Bucket=history, Key="h/locked.ndjson")) == ("AccessDenied", 403)
        assert error_of(lambda: s3.head_object(Bucket=history, Key="h/locked.ndjson")) == ("403", 403)
        assert s3.get_object(Bucket=history, Key="h/ok.ndjson")["Body"].read() == b'{"event_id": "e"}\n'
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket=history)["Contents"]]
        assert listed == ["h/locked.ndjson", "h/ok.ndjson"]  # listing is allowed: the object is there, unreadable
        # The check is the server's: the placeholder keys no longer pass while it is on.
        anyone = s3_emulator.s3_client()
        assert error_of(lambda: anyone.list_objects_v2(Bucket=history)) == ("InvalidAccessKeyId", 403)
    # Back to normal: the placeholder keys read everything again.
    assert s3_emulator.s3_client().get_object(Bucket=history, Key="h/locked.ndjson")["Body"].read()


def test_a_whole_bucket_is_refused(s3_emulator, history):
    with s3_reads_denied(s3_emulator.endpoint, history) as reader:
        s3 = reader.client()
        assert error_of(lambda: s3.list_objects_v2(Bucket=history)) == ("AccessDenied", 403)
        assert error_of(lambda: s3.get_object(Bucket=history, Key="h/ok.ndjson")) == ("AccessDenied", 403)
        # A missing bucket stays what it is: 404 NoSuchBucket, not a permission error.
        assert error_of(lambda: s3.list_objects_v2(Bucket="no-such-bucket-here")) == ("NoSuchBucket", 404)


def test_beams_s3_filesystem_gets_the_403(s3_emulator, history):
    from apache_beam.io.aws.clients.s3.messages import S3ClientError
    from apache_beam.io.aws.s3filesystem import S3FileSystem
    from apache_beam.io.filesystem import BeamIOError
    from apache_beam.options.pipeline_options import PipelineOptions

    with s3_reads_denied(s3_emulator.endpoint, history, "h/locked.ndjson") as reader:
        fs = S3FileSystem(PipelineOptions(reader.beam_flags))
        assert fs.open(f"s3://{history}/h/ok.ndjson").read() == b'{"event_id": "e"}\n'
        with pytest.raises(S3ClientError) as refused:
            fs.open(f"s3://{history}/h/locked.ndjson").read()
        assert refused.value.code == 403
    with s3_reads_denied(s3_emulator.endpoint, history) as reader, pytest.raises(BeamIOError, match="403"):
        S3FileSystem(PipelineOptions(reader.beam_flags)).match([f"s3://{history}/h/*"])


def test_the_reader_exports_are_a_complete_aws_environment(s3_emulator, history, monkeypatch):
    from endpoints.s3 import s3_client

    with s3_reads_denied(s3_emulator.endpoint, history, "h/locked.ndjson") as reader:
        for key, value in reader.exports.items():
            monkeypatch.setenv(key, value)
        s3 = s3_client(None)  # the usual AWS environment, as a child `workbench backfill` would build it
        assert s3.get_object(Bucket=history, Key="h/ok.ndjson")["Body"].read()
        assert error_of(lambda: s3.get_object(Bucket=history, Key="h/locked.ndjson")) == ("AccessDenied", 403)
