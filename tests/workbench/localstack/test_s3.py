"""The local S3 server (moto's server mode, the `s3_emulator` fixture) as boto3 and Beam's own s3:// filesystem
see it: objects written and read back, S3's own pagination, what a missing bucket gives."""

from __future__ import annotations

import gzip
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from endpoints.s3 import LOCAL_S3_ACCESS_KEY_ID, LOCAL_S3_REGION, LOCAL_S3_SECRET_ACCESS_KEY
from eventmodel import resources as names
from workbench.localstack.emulators import Emulator

pytestmark = pytest.mark.integration


@pytest.fixture
def bucket(s3_emulator: Emulator) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_emulator.s3_client().create_bucket(Bucket=name)
    return name


def beam_options(s3_emulator: Emulator, *extra: str):
    """Beam's S3Options by their own flag names, as a backfill passes them."""
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(
        [
            f"--s3_endpoint_url={s3_emulator.endpoint}",
            f"--s3_access_key_id={LOCAL_S3_ACCESS_KEY_ID}",
            f"--s3_secret_access_key={LOCAL_S3_SECRET_ACCESS_KEY}",
            f"--s3_region_name={LOCAL_S3_REGION}",
            *extra,
        ]
    )


def test_the_service_binds_loopback_and_exports_the_aws_variables(s3_emulator):
    assert s3_emulator.host == names.LOCAL_HOST
    assert s3_emulator.exports == {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_emulator.port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    argv = s3_emulator.service.argv
    assert argv[argv.index("--host") + 1] == "127.0.0.1"


def test_boto3_writes_reads_and_deletes_objects(s3_emulator, bucket):
    s3 = s3_emulator.s3_client()
    body = b'{"event_id": "e-1"}\n{"event_id": "e-2"}\n'
    s3.put_object(Bucket=bucket, Key="history/2026/part-0.ndjson", Body=body)
    s3.put_object(Bucket=bucket, Key="history/2026/part-1.ndjson.gz", Body=gzip.compress(body))
    assert s3.get_object(Bucket=bucket, Key="history/2026/part-0.ndjson")["Body"].read() == body
    packed = s3.get_object(Bucket=bucket, Key="history/2026/part-1.ndjson.gz")["Body"].read()
    assert gzip.decompress(packed) == body
    head = s3.head_object(Bucket=bucket, Key="history/2026/part-0.ndjson")
    assert head["ContentLength"] == len(body)
    s3.delete_object(Bucket=bucket, Key="history/2026/part-0.ndjson")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="history/")["Contents"]]
    assert keys == ["history/2026/part-1.ndjson.gz"]


def test_the_exports_alone_point_boto3_at_the_server(s3_emulator, bucket, monkeypatch):
    """AWS_ENDPOINT_URL and the placeholder keys are all a client needs (`eval "$(workbench env)"`)."""
    from endpoints.s3 import s3_client

    for key, value in s3_emulator.exports.items():
        monkeypatch.setenv(key, value)
    s3_client(None).put_object(Bucket=bucket, Key="from-env", Body=b"x")
    assert s3_emulator.s3_client().get_object(Bucket=bucket, Key="from-env")["Body"].read() == b"x"


def test_listing_uses_s3_pagination(s3_emulator, bucket):
    s3 = s3_emulator.s3_client()
    keys = [f"history/part-{i:04d}.ndjson" for i in range(23)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}\n")
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="history/", MaxKeys=5))
    assert [page["KeyCount"] for page in pages] == [5, 5, 5, 5, 3]
    assert all(page["IsTruncated"] for page in pages[:-1]) and not pages[-1]["IsTruncated"]
    assert all("NextContinuationToken" in page for page in pages[:-1])
    assert [o["Key"] for page in pages for o in page["Contents"]] == keys


def test_beams_s3_filesystem_writes_reads_and_matches(s3_emulator, bucket):
    from apache_beam.io.aws.s3filesystem import S3FileSystem
    from apache_beam.io.filesystem import CompressionTypes

    fs = S3FileSystem(beam_options(s3_emulator))
    with fs.create(f"s3://{bucket}/history/a.ndjson") as sink:
        sink.write(b'{"n": 1}\n')
    with fs.create(f"s3://{bucket}/history/b.ndjson.gz", compression_type=CompressionTypes.GZIP) as sink:
        sink.write(b'{"n": 2}\n')
    assert fs.open(f"s3://{bucket}/history/a.ndjson").read() == b'{"n": 1}\n'
    assert fs.open(f"s3://{bucket}/history/b.ndjson.gz").read() == b'{"n": 2}\n'  # AUTO: by the .gz suffix
    matched = fs.match([f"s3://{bucket}/history/*"])[0].metadata_list
    assert sorted(m.path for m in matched) == [f"s3://{bucket}/history/a.ndjson", f"s3://{bucket}/history/b.ndjson.gz"]
    # What boto3 sees is what Beam wrote.
    raw = s3_emulator.s3_client().get_object(Bucket=bucket, Key="history/b.ndjson.gz")["Body"].read()
    assert gzip.decompress(raw) == b'{"n": 2}\n'


def test_beams_s3_filesystem_takes_the_endpoint_from_the_aws_environment(s3_emulator, bucket, monkeypatch):
    """No --s3_* flag at all: Beam's boto3 client reads AWS_ENDPOINT_URL and the keys, as on a user's shell."""
    from apache_beam.io.aws.s3filesystem import S3FileSystem
    from apache_beam.options.pipeline_options import PipelineOptions

    for key, value in s3_emulator.exports.items():
        monkeypatch.setenv(key, value)
    s3_emulator.s3_client().put_object(Bucket=bucket, Key="env.txt", Body=b"seen")
    assert S3FileSystem(PipelineOptions([])).open(f"s3://{bucket}/env.txt").read() == b"seen"


def test_beams_listing_follows_continuation_tokens_past_a_thousand_keys(s3_emulator, bucket):
    """S3 answers at most 1,000 keys per ListObjectsV2 call; Beam's match must follow NextContinuationToken."""
    from apache_beam.io.aws.s3filesystem import S3FileSystem

    s3 = s3_emulator.s3_client()
    keys = [f"many/{i:05d}.json" for i in range(1010)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b"{}"), keys))
    first = s3.list_objects_v2(Bucket=bucket, Prefix="many/")
    assert first["KeyCount"] == 1000 and first["IsTruncated"]
    matched = S3FileSystem(beam_options(s3_emulator)).match([f"s3://{bucket}/many/*"])[0].metadata_list
    assert len(matched) == len(keys)


def test_a_beam_pipeline_writes_and_reads_s3_text(s3_emulator, bucket, tmp_path):
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.runners import local_runner

    lines = [f'{{"event_id": "e-{i}"}}' for i in range(50)]
    with beam.Pipeline(runner=local_runner(), options=beam_options(s3_emulator)) as pipeline:
        _ = pipeline | beam.Create(lines) | beam.io.WriteToText(f"s3://{bucket}/out/part", file_name_suffix=".json")
    with beam.Pipeline(runner=local_runner(), options=beam_options(s3_emulator)) as pipeline:
        read = pipeline | beam.io.ReadFromText(f"s3://{bucket}/out/part*")
        assert_that(read, equal_to(lines))
    written = s3_emulator.s3_client().list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]
    assert written and all(o["Key"].endswith(".json") for o in written)  # Beam's temp files renamed away


def test_a_missing_bucket_is_404_no_such_bucket_to_boto3_but_an_empty_match_to_beam(s3_emulator):
    """What a backfill must expect: boto3 names the missing bucket, Beam's match silently finds nothing (its
    listing treats any 404 as "no objects"), so the bucket has to be checked before Beam is asked."""
    from apache_beam.io.aws.s3filesystem import S3FileSystem
    from botocore.exceptions import ClientError

    s3 = s3_emulator.s3_client()
    with pytest.raises(ClientError) as listed:
        s3.list_objects_v2(Bucket="no-such-bucket-here", Prefix="history/")
    assert listed.value.response["Error"]["Code"] == "NoSuchBucket"
    assert listed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as got:
        s3.get_object(Bucket="no-such-bucket-here", Key="k")
    assert got.value.response["Error"]["Code"] == "NoSuchBucket"
    with pytest.raises(ClientError) as headed:
        s3.head_bucket(Bucket="no-such-bucket-here")
    assert headed.value.response["Error"]["Code"] == "404"  # HEAD has no body: the status is all there is

    fs = S3FileSystem(beam_options(s3_emulator))
    assert fs.match(["s3://no-such-bucket-here/history/*"])[0].metadata_list == []
    with pytest.raises(FileNotFoundError):
        fs.open("s3://no-such-bucket-here/history/a.json")
