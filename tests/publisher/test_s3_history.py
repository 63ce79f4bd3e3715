"""`workbench publish --history ... --to s3://...` against the local S3 server (moto, the s3_emulator fixture):
every manifest row is found at its object and position with exactly its bytes, each input shape a backfill
meets, real gzip, multipart, determinism, and the failures a user can fix."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from endpoints import http_endpoint
from publisher import objects as layout
from publisher.errors import PublishError
from publisher.manifest import MANIFEST_VERSION, iter_events, iter_objects, load_manifest, payload_digest
from publisher.s3 import PART_SIZE, S3Sink, S3Target, SinkContext
from workbench.cli import cli
from workbench.localstack.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
HISTORY = "2025-01-01..2025-01-08"


@pytest.fixture
def s3(s3_emulator, tmp_path, monkeypatch):
    """A fresh bucket on the shared server, the AWS environment pointing at it, and a WORKBENCH_HOME of its own."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    for name, value in s3_emulator.exports.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = s3_emulator.s3_client()
    bucket = f"history-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def publish(cli_runner, *args: str):
    result = cli_runner.invoke(cli, ["publish", "--history", HISTORY, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def records(body: bytes, key: str) -> list[tuple[int, bytes]]:
    """(line, bytes) of each record of an object, by the reader rule of publisher/objects.py, written here again
    on purpose: this is what a backfill must do."""
    if key.endswith(".gz"):
        assert body[:2] == b"\x1f\x8b"
        body, key = gzip.decompress(body), key[: -len(".gz")]
    if key.endswith(".jsonl"):
        assert body.endswith(b"\n")
        return [(i + 1, line) for i, line in enumerate(body[:-1].split(b"\n"))]
    assert key.endswith(".json")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, list):
        lines = body.split(b"\n")
        assert lines[0] == b"[" and lines[-2:] == [b"]", b""]
        elements = lines[1:-2]
        assert all(e.endswith(b",") for e in elements[:-1])
        assert len(value) == len(elements)
        return [(i + 2, e.removesuffix(b",")) for i, e in enumerate(elements)]
    return [(1, body)]


def check_run(client, bucket: str, run_id: str) -> dict:
    """Every row is at its object, line and index with its exact bytes; every record of every object is a row;
    objects-0.csv agrees with S3. Returns what was found, for the shape checks."""
    manifest = load_manifest(run_id)
    assert manifest["status"] == "completed" and manifest["manifest_version"] == MANIFEST_VERSION == 5
    rows = list(iter_events(run_id))
    assert len(rows) == manifest["totals"]["published"] == manifest["plan"]["count"]
    assert all(r["outcome"] == "published" for r in rows)
    prefix = manifest["target"]["run_prefix"]
    listed = {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="")
              for o in page.get("Contents", [])}  # fmt: skip
    written = {o["key"]: o for o in iter_objects(run_id)}
    assert set(written) == listed and all(o["outcome"] == "published" for o in written.values())
    assert all(f"s3://{bucket}/{key}".startswith(prefix) for key in listed)
    found: dict[str, list[tuple[int, bytes]]] = {}
    heads = {}
    for key in listed:
        answer = client.get_object(Bucket=bucket, Key=key)
        body = answer["Body"].read()
        heads[key] = answer
        assert answer["Metadata"] == {"workbench-run-id": run_id}
        assert int(written[key]["stored_bytes"]) == len(body)
        found[key] = records(body, key)
        raw = gzip.decompress(body) if key.endswith(".gz") else body
        assert payload_digest(raw) == written[key]["raw_md5"] and int(written[key]["raw_bytes"]) == len(raw)
        assert int(written[key]["records"]) == len(found[key])
    by_object = defaultdict(list)
    for row in rows:
        key = row["object_uri"].removeprefix(f"s3://{bucket}/")
        by_object[key].append(row)
        line, data = found[key][int(row["object_index"])]
        assert int(row["object_line"]) == line, row
        assert payload_digest(data) == row["payload_digest"], row
    assert {k: len(v) for k, v in by_object.items()} == {k: len(v) for k, v in found.items()}
    assert all([int(r["object_index"]) for r in v] == list(range(len(v))) for v in by_object.values())
    return {"manifest": manifest, "rows": rows, "objects": written, "heads": heads, "found": found}


def test_a_mixed_history_is_found_row_by_row_at_its_object_and_position(s3, cli_runner):
    """Every shape at once: ndjson, arrays, objects of one event, gzip and plain, many small objects and a few large
    ones, malformed bytes of every kind and duplicates."""
    client, bucket = s3
    publish(cli_runner, "--count", "1500", "--seed", "11", "--malformed-rate", "0.3", "--duplicate-rate", "0.05",
            "--to", f"s3://{bucket}/exports/2025", "--format", "mixed", "--compression", "mixed",
            "--objects", "60", "--run-id", "mixed-run")  # fmt: skip
    seen = check_run(client, bucket, "mixed-run")
    objects, rows, target = seen["objects"], seen["rows"], seen["manifest"]["target"]
    assert {o["format"] for o in objects.values()} == {"ndjson", "array", "per-event"}
    assert {o["gzip"] for o in objects.values()} == {"1", ""}
    assert target["kind"] == "s3" and target["format"] == "mixed" and target["objects"] == 60
    assert target["objects_written"] == len(objects) and target["bytes_written"] > 0
    assert target["run_prefix"] == f"s3://{bucket}/exports/2025/mixed-run/"
    assert sum(target["formats"].values()) == len(objects)
    sizes = sorted((int(o["records"]) for o in objects.values()), reverse=True)
    assert sizes[0] > 100 and sizes[len(sizes) // 2] < 25  # a few large, many small
    kinds = {r["kind"] for r in rows if r["kind"]}
    assert len(kinds) > 40 and any(r["duplicate"] == "1" for r in rows)
    assert Counter(r["expected"] for r in rows)["dead_letter"] == seen["manifest"]["counts"]["expected:dead_letter"]
    # Bytes that cannot be one line sit alone; bytes that are not JSON are never inside an array.
    for row in rows:
        key = row["object_uri"].removeprefix(f"s3://{bucket}/")
        _, data = seen["found"][key][int(row["object_index"])]
        if layout.has_line_break(data):
            assert objects[key]["format"] == "per-event" and objects[key]["records"] == "1"
        if objects[key]["format"] == "array":
            orjson.loads(data)
    assert any(layout.has_line_break(d) for f in seen["found"].values() for _, d in f)


@pytest.mark.parametrize(
    ("flags", "shape"),
    [
        ((), "ndjson"),
        (("--format", "array"), "array"),
        (("--format", "per-event"), "per-event"),
        (("--gzip",), "gzip"),
        (("--format", "array", "--compression", "gzip"), "gzip"),
        (("--split-by-type", "--objects", "4"), "by-type"),
        (("--objects", "300"), "one-per-object"),
    ],
)
def test_each_input_shape_by_its_flags(s3, flags, shape, cli_runner):
    client, bucket = s3
    publish(cli_runner, "--count", "300", "--seed", "2", "--malformed-rate", "0.2", "--to", f"s3://{bucket}/h", *flags,
            "--run-id", "shape")  # fmt: skip
    seen = check_run(client, bucket, "shape")
    objects, rows = seen["objects"], seen["rows"]
    formats = Counter(o["format"] for o in objects.values())
    if shape == "ndjson":
        assert set(formats) <= {"ndjson", "per-event"} and formats["ndjson"] == 1
        assert all(k.endswith(".jsonl") for k, o in objects.items() if o["format"] == "ndjson")
        assert seen["heads"][next(k for k in objects if k.endswith(".jsonl"))]["ContentType"] == "application/x-ndjson"
    elif shape == "array":
        arrays = [k for k, o in objects.items() if o["format"] == "array"]
        assert len(arrays) == 1 and formats["ndjson"] == 1  # the not-JSON malformed events sit beside the array
        assert all(r["object_uri"].endswith(".json") or r["kind"] for r in rows)  # valid events are all in it
        not_json = [r for r in rows if r["object_uri"].endswith(".jsonl")]
        assert not_json and {r["reason"] for r in not_json} <= {"NOT_JSON", "INVALID_UTF8", "TRUNCATED_JSON",
                                                               "EMPTY_PAYLOAD"}  # fmt: skip
    elif shape == "per-event":
        assert all(o["records"] == "1" for k, o in objects.items() if o["format"] == "per-event")
        assert formats["per-event"] > 250  # the JSON-array payloads (wrapped_in_array, ...) go to one ndjson beside
    elif shape == "gzip":
        assert all(o["gzip"] == "1" and k.endswith(".gz") for k, o in objects.items())
        assert all(h["ContentType"] == "application/gzip" for h in seen["heads"].values())
        assert seen["manifest"]["target"]["gzip"] is True
    elif shape == "by-type":
        for key, o in objects.items():
            folder = key.split("/")[-2]
            assert o["event_type"] == folder in ("order", "inventory", "user_activity")
            assert {r["event_type"] for r in rows if r["object_uri"].endswith(key)} == {folder}
        assert {o["span"] for o in objects.values()} == {"0", "1", "2", "3"}
    elif shape == "one-per-object":
        assert len(objects) == 300 and all(o["records"] == "1" for o in objects.values())


def test_same_seed_same_objects_byte_for_byte(s3, cli_runner):
    client, bucket = s3

    def bodies(run_id: str, seed: str) -> dict[str, bytes]:
        publish(cli_runner, "--count", "400", "--seed", seed, "--malformed-rate", "0.1", "--to", f"s3://{bucket}/d",
                "--format", "mixed", "--compression", "mixed", "--objects", "12", "--run-id", run_id)  # fmt: skip
        prefix = f"d/{run_id}/"
        keys = [o["key"] for o in iter_objects(run_id)]
        return {k.removeprefix(prefix): client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}

    first, second, other = bodies("a", "5"), bodies("b", "5"), bodies("c", "6")
    assert first == second
    assert first != other

    def rows(run_id: str) -> list[dict]:  # a malformed record is named by its place, which holds the run's folder
        place = f"/d/{run_id}/"
        return [
            {k: v.replace(place, "/d/RUN/") for k, v in r.items() if k not in ("object_uri", "outcome_ms")}
            for r in iter_events(run_id)  # outcome_ms: when each was written, the one thing a rerun changes
        ]

    assert rows("a") == rows("b")


def test_a_large_object_goes_up_in_parts(s3, cli_runner):
    client, bucket = s3
    publish(cli_runner, "--count", "12", "--malformed-rate", "1", "--malformed-kinds", "oversize_batch=1",
            "--to", f"s3://{bucket}/big", "--run-id", "big")  # fmt: skip
    seen = check_run(client, bucket, "big")
    ((key, written),) = seen["objects"].items()
    assert int(written["stored_bytes"]) > PART_SIZE
    assert seen["heads"][key]["ETag"].strip('"').endswith("-2")  # S3's mark of a two-part upload


def test_a_refused_object_is_recorded_failed_and_ends_the_run(s3, tmp_path):
    """The bucket disappears mid-run: the object S3 refused is in the manifest as failed, with the fix."""
    client, bucket = s3
    from generator.stream import EventStream, GeneratorConfig

    outcomes = []
    context = SinkContext("gone", tmp_path / "run", count=20, seed=1)
    sink = S3Sink(S3Target(f"s3://{bucket}/x", objects=2), lambda m, o, *_: outcomes.append((m, o)), context)
    stream = iter(EventStream(GeneratorConfig(seed=1), run_id="gone"))
    sizes = layout.span_sizes(20, 2, 1)
    for _ in range(sizes[0]):
        sink.send(next(stream))
    assert {o for _, o in outcomes} == {"published"} and len(outcomes) == sizes[0]
    for item in client.list_objects_v2(Bucket=bucket)["Contents"]:
        client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)
    with pytest.raises(PublishError, match=f"bucket '{bucket}' does not exist") as raised:
        for _ in range(sizes[1]):
            sink.send(next(stream))
    assert "aws s3 mb" in raised.value.fix
    sink.close(1)
    failed = [m for m, o in outcomes if o == "failed"]
    assert len(failed) == sizes[1] and {m.object_uri for m in failed} == {f"s3://{bucket}/x/gone/part-00001.jsonl"}
    objects = list(csv_rows(tmp_path / "run" / "objects-0.csv"))
    assert [o["outcome"] for o in objects] == ["published", "failed"]


def csv_rows(path: Path):
    import csv

    with path.open(newline="") as f:
        yield from csv.DictReader(f)


def _main(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", "publish", "--count", "5", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)  # fmt: skip


def _clean_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return env | {"NO_GCE_CHECK": "true", "WORKBENCH_HOME": str(tmp_path / "home"), "AWS_EC2_METADATA_DISABLED": "true",
                  "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                  **extra}  # fmt: skip


def test_a_missing_bucket_is_one_line_with_the_command_that_creates_it(s3_emulator, tmp_path):
    result = _main("--to", "s3://no-such-bucket-here/x", env=_clean_env(tmp_path, **s3_emulator.exports))
    assert result.returncode == 2, result.stderr
    assert "bucket 'no-such-bucket-here' does not exist in S3 at http" in result.stderr
    assert f"aws s3 mb s3://no-such-bucket-here --endpoint-url {http_endpoint(s3_emulator.endpoint)}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "runs").exists()  # nothing was started


def test_no_credentials_says_how_to_give_them(s3_emulator, tmp_path):
    env = _clean_env(tmp_path, AWS_ENDPOINT_URL=s3_emulator.endpoint, AWS_DEFAULT_REGION="us-east-1")
    result = _main("--to", "s3://any-bucket/x", env=env)
    assert result.returncode == 2, result.stderr
    assert "no usable AWS credentials" in result.stderr and "AWS_ACCESS_KEY_ID" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_endpoint_that_does_not_answer_fails_fast(tmp_path):
    env = _clean_env(tmp_path, AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", AWS_ACCESS_KEY_ID="testing",
                     AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")  # fmt: skip
    started = time.monotonic()
    result = _main("--to", "s3://any-bucket/x", env=env)
    assert time.monotonic() - started < 15
    assert result.returncode == 2, result.stderr
    assert "did not answer" in result.stderr and "workbench up --s3" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_stopped_run_writes_what_it_has_and_records_exactly_that(s3):
    """A stop (Ctrl-C) mid-run ends the current objects where they are: status interrupted, and every row is still
    at its object and position."""
    from generator.stream import GeneratorConfig
    from publisher.run import Publisher, PublishPlan

    client, bucket = s3
    config = GeneratorConfig(seed=3, malformed_rate=0.1, history=(layout_time("2025-01-01"), layout_time("2025-01-02")))
    plan = PublishPlan("stopped", S3Target(f"s3://{bucket}/s", objects=1), rate=400, count=100_000, generator=config)
    publisher = Publisher(plan)
    result = publisher.run(lambda p: p.stop() if p.totals().sent >= 300 else None)  # at about 1 s of sending
    assert result.status == "interrupted"
    rows = list(iter_events("stopped"))
    assert 0 < len(rows) == result.totals.published == result.totals.sent < 100_000  # the open object was written
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert len(listed) == len(list(iter_objects("stopped"))) >= 1
    for row in rows:
        key = row["object_uri"].removeprefix(f"s3://{bucket}/")
        line, data = records(client.get_object(Bucket=bucket, Key=key)["Body"].read(), key)[int(row["object_index"])]
        assert payload_digest(data) == row["payload_digest"] and int(row["object_line"]) == line
    assert load_manifest("stopped")["target"]["objects_written"] == len(listed)


def layout_time(day: str):
    from datetime import UTC, datetime

    return datetime.fromisoformat(day).replace(tzinfo=UTC)
