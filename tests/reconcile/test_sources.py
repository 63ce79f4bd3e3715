"""reconcile.sources, called directly: where each file of a GCS tree sits (pure), the local and gs:// listings and
reads (a folder here, the GCS emulator through an explicit client), the dead-letter files and the dead-letter topic
(the session's Pub/Sub emulator)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from endpoints.pubsub import publisher_client
from endpoints.storage import storage_client
from eventmodel import resources as names
from reconcile import sources
from reconcile.contract import DeadLetterFiles, default_contract
from reconcile.errors import NotYetReadable, ReconcileError

GCS = default_contract().gcs
MINUTE = "202502081309"
PLACED = f"order/2025/02/08/13/09/order_{MINUTE}0001.json"  # where the built-in template puts an order of 13:09


def write(path: Path, body: bytes, mtime: datetime | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    if mtime is not None:
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return path


# ------------------------------------------------------------------------------------------ pure: places


def test_a_file_is_placed_by_the_template_of_its_type_folder():
    assert sources.place_of("out", f"out/{PLACED}") == ("order", MINUTE, True)
    assert sources.place_of("out/", f"out/{PLACED}") == ("order", MINUTE, True)  # a root given with its slash
    # in the order folder, named for another minute: that type's file, its place inconsistent
    assert sources.place_of("out", f"out/order/2025/02/08/13/09/order_{'202502081310'}0001.json")[2] is False
    # in the order folder with the suffix, but not at a minute's depth: order's, misplaced, no time
    assert sources.place_of("out", "out/order/stray.json") == ("order", None, False)
    assert sources.place_of("out", "out/notes/readme.txt") is None  # a stranger: skipped
    assert sources.place_of("out", f"elsewhere/{PLACED}") is None  # not under the root


def test_a_processing_time_place_is_judged_against_the_files_update_time():
    placed = datetime(2025, 2, 8, 13, 9, tzinfo=UTC)
    # A minute folder holds the whole minute: its file may be written up to a minute (plus the tolerance) after.
    assert sources._within(MINUTE, "%Y%m%d%H%M", placed + timedelta(seconds=59), 0)
    assert sources._within(MINUTE, "%Y%m%d%H%M", placed + timedelta(seconds=90), 30)
    assert not sources._within(MINUTE, "%Y%m%d%H%M", placed + timedelta(seconds=91), 30)
    assert sources._within(MINUTE, "%Y%m%d%H%M", None, 0)  # no update time: nothing to judge by
    assert not sources._within("not-a-time", "%Y%m%d%H%M", placed, 0)
    assert sources._grain_s("%Y%m%d%H") == 3600 and sources._grain_s("%Y%m%d%H%M%S") == 1


# ------------------------------------------------------------------------------------------ local trees


def test_a_local_tree_is_listed_at_every_depth_with_sizes_and_update_times(tmp_path):
    when = datetime(2025, 2, 8, 13, 9, 30, tzinfo=UTC)
    write(tmp_path / "out" / PLACED, b'{"a": 1}\n', when)
    write(tmp_path / "out" / "order" / "stray.json", b"{}\n")
    write(tmp_path / "out" / "notes" / "readme.txt", b"hello")
    root = str(tmp_path / "out")
    listed = {f.path: f for f in sources.list_tree(root)}
    assert set(listed) == {f"{root}/{PLACED}", f"{root}/order/stray.json", f"{root}/notes/readme.txt"}
    assert listed[f"{root}/{PLACED}"].size == 9 and listed[f"{root}/{PLACED}"].updated == when
    assert sources.list_tree(str(tmp_path / "missing")) == []  # nothing written yet
    assert len(sources.list_tree(root, limit=2)) == 2  # a sample stops listing early

    found = {f.uri: f for f in sources.list_event_files(root + "/", GCS)}  # the stranger is left out
    assert set(found) == {f"{root}/{PLACED}", f"{root}/order/stray.json"}
    placed = found[f"{root}/{PLACED}"]
    assert (placed.container_type, placed.container_minute, placed.name_ok, placed.size) == ("order", MINUTE, True, 9)
    assert found[f"{root}/order/stray.json"].name_ok is False


def test_a_processing_time_contract_calls_a_file_written_long_after_its_minute_misplaced(tmp_path):
    by_processing = replace(GCS, placed_by="processing_time", tolerance_s=30)
    minute = datetime(2025, 2, 8, 13, 9, tzinfo=UTC)
    root = tmp_path / "out"
    write(root / PLACED, b"{}\n", minute + timedelta(seconds=80))
    late = PLACED.replace("0001.json", "0002.json")
    write(root / late, b"{}\n", minute + timedelta(minutes=5))
    found = {Path(f.uri).name: f.name_ok for f in sources.list_event_files(str(root), by_processing)}
    assert found == {Path(PLACED).name: True, Path(late).name: False}
    unchecked = replace(GCS, placed_by="unchecked")
    assert all(f.name_ok for f in sources.list_event_files(str(root), unchecked))


def test_other_schemes_and_a_gs_root_without_a_client_are_refused():
    with pytest.raises(ReconcileError, match="local folder or gs:// only"):
        sources.list_tree("s3://bucket/out")
    with pytest.raises(ReconcileError, match="no Cloud Storage client"):
        sources.list_tree("gs://bucket/out")


def test_local_files_are_read_where_they_lie(tmp_path):
    path = write(tmp_path / "out" / PLACED, b"{}\n")
    files = sources.list_event_files(str(tmp_path / "out"), GCS)
    with sources.local_copies(files) as local:
        assert local == {str(path): str(path)}


def _letters_spec(prefix: str, **options) -> DeadLetterFiles:
    return DeadLetterFiles(prefix=prefix, **options)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_dead_letter_files_become_rows_with_the_payloads_md5(tmp_path):
    since = datetime.now(UTC) - timedelta(minutes=1)
    lines = [{"payload": "not json {", "why": "NOT_JSON"}, {"payload": {"order_id": 1}, "why": "BAD_ENUM"}]
    write(tmp_path / "dlq" / "a" / "part-0.jsonl", b"\n".join(orjson.dumps(line) for line in lines) + b"\n\n")
    write(tmp_path / "dlq" / "b.jsonl.gz", gzip.compress(orjson.dumps({"payload": "zipped", "why": "X"}) + b"\n"))
    write(tmp_path / "dlq" / "old.jsonl", orjson.dumps({"payload": "old", "why": "X"}) + b"\n", since - timedelta(1))
    spec = _letters_spec(str(tmp_path / "dlq"), reason="why")
    rows = sources.read_dead_letter_files(spec, since)
    got = sorted((r["reason"], r["payload_digest"]) for r in rows)
    assert got == sorted([("NOT_JSON", _md5(b"not json {")), ("BAD_ENUM", _md5(orjson.dumps({"order_id": 1}))),
                          ("X", _md5(b"zipped"))])  # fmt: skip  # the old file is not read
    assert {r["entry"] for r in rows} == {f"dead_letters:gcs:{spec.prefix}"}
    assert all(r["sink"] == "dead_letter_files" and r["event_id"] is None for r in rows)
    assert sources.read_dead_letter_files(_letters_spec(str(tmp_path / "none")), since) == []


def test_dead_letter_files_in_base64_and_raw(tmp_path):
    since = datetime.now(UTC) - timedelta(minutes=1)
    body = b'{"broken": '
    write(tmp_path / "b64" / "x.json", orjson.dumps({"payload": base64.b64encode(body).decode()}))
    write(tmp_path / "raw" / "x.bin", body)
    encoded = sources.read_dead_letter_files(_letters_spec(str(tmp_path / "b64"), payload_encoding="base64"), since)
    raw = sources.read_dead_letter_files(_letters_spec(str(tmp_path / "raw"), format="raw"), since)
    assert [r["payload_digest"] for r in encoded] == [r["payload_digest"] for r in raw] == [_md5(body)]


# ------------------------------------------------------------------------------------------ the dead-letter topic


def test_a_dead_letter_message_becomes_a_row():
    from google.pubsub_v1.types import PubsubMessage

    landed = datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC)
    message = PubsubMessage(data=b"bad", message_id="dl-1", publish_time=landed, attributes={
        names.ATTR_DLQ_SOURCE_MESSAGE_ID: "src-1", names.ATTR_RUN_ID: "r1", names.ATTR_DLQ_REASON: "NOT_JSON",
        names.ATTR_DLQ_STAGE: "validate"})  # fmt: skip
    row = sources._dead_letter_row(message)
    assert row == {
        "sink": "dead_letter_topic", "location": f"{names.DEAD_LETTER_TOPIC}/dl-1", "event_id": "src-1",
        "source_message_id": "src-1", "run_id": "r1", "reason": "NOT_JSON", "stage": "validate",
        "payload_digest": _md5(b"bad"), "payload_cut": False, "publish_time": None, "landed_time": landed,
    }  # fmt: skip  # no event id attribute: the source message id stands for it
    message.attributes[names.ATTR_EVENT_ID] = " e-1 "
    assert sources._dead_letter_row(message)["event_id"] == "e-1"


@pytest.fixture
def project():
    name = f"sources-{uuid.uuid4().hex[:8]}"
    yield name
    for lock in sources.lock_path(None, name).parent.glob(f"*-{name}-*.lock"):
        lock.unlink(missing_ok=True)


@pytest.mark.integration
def test_the_dead_letter_topic_is_read_back_as_rows(workbench_emulator, project):
    emulator = workbench_emulator.target
    with pytest.raises(NotYetReadable, match=f"the dead-letter topic {names.DEAD_LETTER_TOPIC} does not exist"):
        sources.read_dead_letter_topic(project, emulator, datetime.now(UTC) - timedelta(minutes=1))
    publisher = publisher_client(emulator)
    topic = publisher.topic_path(project, names.DEAD_LETTER_TOPIC)
    publisher.create_topic(request={"name": topic})
    since = datetime.now(UTC) - timedelta(seconds=30)
    assert sources.read_dead_letter_topic(project, emulator, since) == []  # makes the subscription: from now on
    sent = {f"m{i}": publisher.publish(topic, f"bad {i}".encode(), **{names.ATTR_EVENT_ID: f"e{i}",
                                      names.ATTR_RUN_ID: "r1", names.ATTR_DLQ_REASON: "NOT_JSON"}).result(timeout=10)
            for i in range(3)}  # fmt: skip
    publisher.stop()
    steps: list[str] = []
    rows = sources.read_dead_letter_topic(project, emulator, since, steps.append)
    assert sorted((r["event_id"], r["payload_digest"]) for r in rows) == [
        (f"e{i}", _md5(f"bad {i}".encode())) for i in range(3)
    ]
    assert {r["location"] for r in rows} == {f"{names.DEAD_LETTER_TOPIC}/{m}" for m in sent.values()}
    assert steps and steps[-1] == "dead-letter topic: 3 messages read"
    again = sources.read_dead_letter_topic(project, emulator, since)  # seeked back: a second reconcile sees them too
    assert sorted(r["event_id"] for r in again) == ["e0", "e1", "e2"]


# ------------------------------------------------------------------------------------------ gs:// on the emulator


@pytest.fixture
def bucket(gcs_emulator, monkeypatch):
    """(gs://bucket, a client for it) with STORAGE_EMULATOR_HOST unset: only the explicit client knows where GCS is."""
    endpoint = os.environ["STORAGE_EMULATOR_HOST"]
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    client = storage_client("p", endpoint)
    yield gcs_emulator, client
    client.close()


def upload(client, uri: str, body: bytes) -> None:
    name, _, path = uri[len("gs://") :].partition("/")
    client.bucket(name).blob(path).upload_from_string(body)


@pytest.mark.integration
def test_a_gs_tree_is_listed_and_copied_through_the_client_given(bucket, tmp_path):
    root, client = bucket
    zipped = gzip.compress(b'{"a": 1}\n')
    upload(client, f"{root}/out/{PLACED}", zipped)
    upload(client, f"{root}/out/notes/readme.txt", b"hello")
    upload(client, f"{root}/outside/{PLACED}", b"{}\n")  # a sibling prefix that starts alike: not listed
    listed = sources.list_tree(f"{root}/out/", client)
    assert {f.path for f in listed} == {f"{root}/out/{PLACED}", f"{root}/out/notes/readme.txt"}
    assert all(f.updated and abs(f.updated - datetime.now(UTC)) < timedelta(minutes=5) for f in listed)
    assert len(sources.list_tree(f"{root}/out", client, limit=1)) == 1

    files = sources.list_event_files(f"{root}/out", GCS, client)
    assert [(f.uri, f.container_minute, f.name_ok, f.size) for f in files] == [
        (f"{root}/out/{PLACED}", MINUTE, True, len(zipped))
    ]
    with sources.local_copies(files, client) as local:
        copy = Path(local[files[0].uri])
        assert copy.read_bytes() == zipped  # the stored bytes, gzip and all
    assert not copy.exists() and not copy.parent.exists()  # the temporary folder is gone

    assert sources.list_tree("gs://no-such-bucket-here/out", client) == []  # nothing written there


@pytest.mark.integration
def test_dead_letter_files_are_read_from_gs(bucket):
    root, client = bucket
    upload(client, f"{root}/dlq/part-0.jsonl", orjson.dumps({"payload": "bad", "why": "NOT_JSON"}) + b"\n")
    rows = sources.read_dead_letter_files(_letters_spec(f"{root}/dlq", reason="why"),
                                          datetime.now(UTC) - timedelta(minutes=5), client)  # fmt: skip
    assert [(r["location"], r["reason"], r["payload_digest"]) for r in rows] == [
        (f"{root}/dlq/part-0.jsonl", "NOT_JSON", _md5(b"bad"))
    ]
