"""pipeline/history_read.py directly: its pure parts (an object's key, which listed objects are read, the boto3
arguments from Beam's --s3_* flags), and the reader against moto's S3 server: every record of an object becomes a
message named by its place, the run comes from the key or the object's metadata, and an object that cannot be
read becomes one SOURCE_UNREADABLE dead letter while the rest go on.
"""

from __future__ import annotations

import gzip
import uuid

import pytest
from apache_beam import pvalue
from apache_beam.io.filesystem import FileMetadata
from apache_beam.options.pipeline_options import PipelineOptions

from eventmodel import reasons as R
from eventmodel.resources import ATTR_EVENT_ID, ATTR_RUN_ID, ATTR_SOURCE_LINE, ATTR_SOURCE_OBJECT, S3_RUN_ID_METADATA
from pipeline.constants import DEAD_LETTER
from pipeline.history_read import (
    ListObjectsFn,
    ReadHistory,
    ReadObjectRecordsFn,
    is_listed_object,
    object_key,
    s3_client_settings,
)

BACKFILL_RUN = "backfill-of-today"


# ------------------------------------------------------------------------------------------------ pure


@pytest.mark.parametrize(
    ("uri", "key"),
    [
        ("s3://history/exports/2025/part-0.jsonl", "exports/2025/part-0.jsonl"),
        ("gs://bucket/a.json.gz", "a.json.gz"),
        ("s3://history", "s3://history"),  # a bucket alone has no key: the URI stands for itself
        ("/tmp/history/part-0.jsonl", "/tmp/history/part-0.jsonl"),  # a local file is its own path
    ],
)
def test_the_key_of_an_object_is_its_path_below_the_bucket(uri, key):
    assert object_key(uri) == key


@pytest.mark.parametrize(
    ("path", "read"),
    [
        ("s3://h/exports/part-0.jsonl", True),
        ("s3://h/exports/sub/", False),  # a "folder" marker
        ("s3://h/exports/_SUCCESS", False),  # a writer's flag file
        ("s3://h/exports/.part-1.jsonl.temporary", False),  # a writer still at work
        ("s3://h/exports/_tmp/part-9.jsonl", True),  # only the object's own name decides
    ],
)
def test_folder_markers_and_hidden_objects_are_not_read(path, read):
    assert is_listed_object(FileMetadata(path, 10)) is read


def test_the_s3_flags_become_boto3_arguments_and_unset_ones_are_left_to_boto3():
    options = PipelineOptions(["--s3_endpoint_url", "http://127.0.0.1:9000", "--s3_region_name", "eu-west-1",
                               "--s3_access_key_id", "AK", "--s3_secret_access_key", "SK",
                               "--s3_disable_ssl"])  # fmt: skip
    assert s3_client_settings(options) == {
        "endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1", "aws_access_key_id": "AK",
        "aws_secret_access_key": "SK", "use_ssl": False}  # fmt: skip
    assert s3_client_settings(PipelineOptions([])) == {}


# ------------------------------------------------------------------------------------------ S3 reader


@pytest.fixture
def bucket(s3_emulator):
    """A bucket of the test's own on the session's moto server, and the reader's boto3 arguments for it."""
    name = f"history-read-{uuid.uuid4().hex[:8]}"
    client = s3_emulator.s3_client()
    client.create_bucket(Bucket=name)
    flags = ["--s3_endpoint_url", s3_emulator.endpoint, "--s3_access_key_id", "testing",
             "--s3_secret_access_key", "testing", "--s3_region_name", "us-east-1"]  # fmt: skip
    yield name, client, flags
    for item in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


def read(uri: str, flags: list[str]) -> list:
    """What ReadObjectRecordsFn yields for one listed object, as a worker would run it."""
    reader = ReadObjectRecordsFn(BACKFILL_RUN, s3_settings=s3_client_settings(PipelineOptions(flags)))
    reader.setup()
    return list(reader.process(FileMetadata(uri, 0)))


def test_each_record_is_a_message_named_by_its_place_under_the_run_of_its_folder(bucket):
    name, client, flags = bucket
    key = "exports/20250101-000000-abcd/part-0.jsonl.gz"
    body = b'{"event_type": "order", "n": 1}\n\n{"event_type": "inventory", "n": 2}\n'
    client.put_object(Bucket=name, Key=key, Body=gzip.compress(body))
    uri = f"s3://{name}/{key}"
    messages = read(uri, flags)
    # The blank line is a record too: the validate stage, not the reader, decides it is no event.
    assert [m.data for m in messages] == [
        b'{"event_type": "order", "n": 1}',
        b"",
        b'{"event_type": "inventory", "n": 2}',
    ]
    assert [m.attributes for m in messages] == [
        {ATTR_EVENT_ID: f"{uri}#{i}", ATTR_RUN_ID: "20250101-000000-abcd", ATTR_SOURCE_OBJECT: uri,
         ATTR_SOURCE_LINE: str(i + 1)} for i in range(3)
    ]  # fmt: skip
    assert all(m.message_id is None and m.publish_time is None for m in messages)


def test_the_run_comes_from_the_objects_metadata_when_its_key_names_none_else_the_backfills(bucket):
    name, client, flags = bucket
    client.put_object(Bucket=name, Key="named/part-0.jsonl", Body=b"{}\n", Metadata={S3_RUN_ID_METADATA: "june"})
    client.put_object(Bucket=name, Key="plain/part-0.jsonl", Body=b"{}\n")
    [stamped] = read(f"s3://{name}/named/part-0.jsonl", flags)
    [plain] = read(f"s3://{name}/plain/part-0.jsonl", flags)
    assert (stamped.attributes[ATTR_RUN_ID], plain.attributes[ATTR_RUN_ID]) == ("june", BACKFILL_RUN)


def test_an_object_that_cannot_be_read_is_one_dead_letter_naming_it(bucket):
    name, client, flags = bucket
    key = "exports/cut.jsonl.gz"
    whole = gzip.compress(b"".join(b'{"n": %d}\n' % i for i in range(2000)))
    client.put_object(Bucket=name, Key=key, Body=whole[: len(whole) // 2])  # a gzip stream cut off
    uri = f"s3://{name}/{key}"
    out = read(uri, flags)
    messages = [o for o in out if not isinstance(o, pvalue.TaggedOutput)]
    [tagged] = [o for o in out if isinstance(o, pvalue.TaggedOutput)]
    assert tagged.tag == DEAD_LETTER
    letter = tagged.value
    assert (letter.reason, letter.stage, letter.data, letter.event_id) == (
        R.SOURCE_UNREADABLE,
        "read",
        b"",
        f"{uri}#unreadable",
    )
    assert letter.attributes == {ATTR_EVENT_ID: f"{uri}#unreadable", ATTR_RUN_ID: BACKFILL_RUN,
                                 ATTR_SOURCE_OBJECT: uri}  # fmt: skip
    assert letter.detail.startswith(f"{uri}: reading stopped after {len(messages)} records")
    assert 0 < len(messages) < 2000, "what was read before the break goes on"

    missing = read(f"s3://{name}/exports/gone.jsonl", flags)  # listed, then deleted before it was read
    assert [o.value.reason for o in missing] == [R.SOURCE_UNREADABLE]


def test_a_folder_is_listed_without_its_markers_and_read_whole_through_beam(bucket, tmp_path):
    """ReadHistory in a pipeline: Beam's s3:// filesystem lists (with the same --s3_* flags), the reader reads."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.runners import local_runner

    name, client, flags = bucket
    client.put_object(Bucket=name, Key="h/a.jsonl", Body=b'{"a": 1}\n{"a": 2}\n')
    client.put_object(Bucket=name, Key="h/sub/b.json", Body=b'[{"b": 1}]')
    client.put_object(Bucket=name, Key="h/_SUCCESS", Body=b"")
    root = f"s3://{name}/h"
    options = PipelineOptions(["--runner", "DirectRunner", *flags])
    with TestPipeline(runner=local_runner(), options=options) as pipeline:  # local_runner: no beam-temp left
        messages, letters = pipeline | ReadHistory(root, BACKFILL_RUN, s3_settings=s3_client_settings(options))
        places = messages | beam.Map(lambda m: (m.attributes[ATTR_EVENT_ID], m.data))
        assert_that(places, equal_to([(f"{root}/a.jsonl#0", b'{"a": 1}'), (f"{root}/a.jsonl#1", b'{"a": 2}'),
                                      (f"{root}/sub/b.json#0", b'{"b":1}')]), label="records")  # fmt: skip
        assert_that(letters, equal_to([]), label="no dead letter")

    local = tmp_path / "history"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "part.jsonl").write_bytes(b"{}\n")
    (local / "_SUCCESS").write_bytes(b"")
    listed = [m.path for m in ListObjectsFn().process(str(local))]
    assert listed == [str(local / "sub" / "part.jsonl")], "any Beam filesystem: a local folder too"
