"""The file sink's format and its errors."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import orjson
import pytest

from publisher.errors import PublishError
from publisher.sinks import FileSink, FileTarget


@dataclass
class Message:
    data: bytes
    attributes: dict[str, str] = field(default_factory=lambda: {"event_id": "e"})


def test_file_sink_keeps_any_bytes_exactly(tmp_path):
    outcomes = []
    path = tmp_path / "out.jsonl"
    sink = FileSink(FileTarget(str(path)), lambda *a: outcomes.append(a[1:]))
    payloads = [b"\xff\xfe not utf-8", b'{"a":\n1}', b""]
    for p in payloads:
        sink.send(Message(p))
    sink.close(timeout=1)
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [base64.b64decode(line["data"]) for line in lines] == payloads
    assert all(line["attributes"] == {"event_id": "e"} for line in lines)
    assert outcomes == [("published", None, None)] * 3


def test_file_sink_appends_to_an_existing_file(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"data": "", "attributes": {}}\n')
    sink = FileSink(FileTarget(str(path)), lambda *a: None)
    sink.send(Message(b"{}"))
    sink.close(timeout=1)
    assert len(path.read_bytes().splitlines()) == 2


def test_file_sink_refuses_a_directory(tmp_path):
    with pytest.raises(PublishError, match="is a directory"):
        FileSink(FileTarget(str(tmp_path)), lambda *a: None)
