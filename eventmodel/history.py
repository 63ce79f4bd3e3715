"""History in object storage: how a backfill reads records out of an object, and how it names each record.

Pure functions, no network, no Beam: the backfill's read stage (pipeline/history_read.py) and the history
publisher's manifest (publisher/s3.py) both call them, so what the manifest says of a record is what the
backfill will make of it.

The reading rule (docs/generator.md, "How to read them back"):

    *.json[.gz]     a JSON array: each element is one record; any other body (an object, a scalar, not JSON
                    at all, empty) is one record, the whole body byte for byte
    anything else   (.jsonl, .ndjson, .txt, no extension, each [.gz]) every line is one record, blank lines
                    included; a final "\\n" ends the last record, so an empty object holds no record

An object is gunzipped when its body starts with gzip's magic bytes (1f 8b), whatever its name says: exports
name compressed objects inconsistently, and S3 clients must not be trusted to unzip (Content-Encoding) for us.

Array elements keep their exact bytes when the array is laid out one element per line or more (the first line
is "[" alone, as the history publisher, `jq .` and every pretty printer write it): an element is the text
between its separators, without the surrounding whitespace and the "," after it. A compact array (all on the
first line, `jq -c .`) is parsed whole and its elements are re-encoded compactly (orjson): exact for compact
producers, which is what such arrays come from. A laid-out array that breaks off (a cut-off upload) yields
the elements before the break and then one record with the rest, which validation dead-letters.

Identity. A historical record carries no Pub/Sub metadata, so it is named by what it is:
- an accepted event by its natural key (docs/data-model.md: order (order_id, status, order_date), inventory
  (inventory_id), user activity (user_id, metadata.session_id, activity_type, timestamp)): history_event_id,
  the SHA-256 of the key, so the same event in two objects, or in the stream and in S3, is one event;
- a record that is not an event (a dead letter) by where it sits: record_id, s3://BUCKET/KEY#INDEX.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from eventmodel.rows import rfc3339
from eventmodel.schema import INVENTORY, ORDER, USER_ACTIVITY
from eventmodel.validate import Accepted, validate

GZIP_MAGIC = b"\x1f\x8b"
ARRAY_SUFFIXES = (".json", ".json.gz")
JSON_WHITESPACE = b" \t\r\n"
# The natural key of each event type, as dotted paths into the event (docs/data-model.md, history_merge.sql).
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    ORDER: ("order_id", "status", "order_date"),
    INVENTORY: ("inventory_id",),
    USER_ACTIVITY: ("user_id", "metadata.session_id", "activity_type", "timestamp"),
}
# A workbench run id (publisher.manifest.new_run_id): YYYYMMDD-HHMMSS-xxxx, the folder a history run sits in.
RUN_ID_SEGMENT = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4,}$")


class Record(NamedTuple):
    """One record of an object: where it starts (1-based line of the uncompressed body, 0-based index among
    the object's records) and its bytes."""

    line: int
    index: int
    data: bytes


# ------------------------------------------------------------------------------------------------ reading


def gunzipped(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The body's bytes, decompressed when it starts with gzip's magic (concatenated gzip members included)."""
    stream = iter(chunks)
    head = b""
    for chunk in stream:
        head += chunk
        if len(head) >= 2:
            break
    if not head.startswith(GZIP_MAGIC):
        if head:
            yield head
        yield from stream
        return
    decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
    pending = head
    for chunk in _chain(pending, stream):
        data = chunk
        while data:
            out = decompressor.decompress(data)
            if out:
                yield out
            if decompressor.eof:  # a member ended: whatever follows is the next member (or padding)
                data = decompressor.unused_data
                if data.strip(b"\x00"):
                    decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
                else:
                    data = b""
            else:
                data = b""
    if not decompressor.eof:
        raise EOFError("the gzip stream ends before its end marker (a cut-off object)")


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def is_array_object(key: str) -> bool:
    """Whether the reading rule takes this object as JSON (array or one record) rather than JSON lines."""
    return key.lower().endswith(ARRAY_SUFFIXES)


def records(key: str, chunks: Iterable[bytes]) -> Iterator[Record]:
    """The records of an object named `key` whose stored body comes in `chunks` (the rule above)."""
    body = gunzipped(chunks)
    if is_array_object(key):
        yield from _json_records(body)
    else:
        yield from _line_records(body)


def _lines(body: Iterable[bytes]) -> Iterator[bytes]:
    """Every line of the body without its "\\n"; a body ending in "\\n" has no empty last line."""
    rest = b""
    for chunk in body:
        rest += chunk
        if b"\n" not in chunk:
            continue
        *complete, rest = rest.split(b"\n")
        yield from complete
    if rest:
        yield rest


def _line_records(body: Iterable[bytes]) -> Iterator[Record]:
    for index, line in enumerate(_lines(body)):
        yield Record(index + 1, index, line)


def _json_records(body: Iterable[bytes]) -> Iterator[Record]:
    stream = iter(body)
    head = b""
    for chunk in stream:  # enough to see the first line
        head += chunk
        if b"\n" in head:
            break
    first, newline, _ = head.partition(b"\n")
    if newline and first.strip(JSON_WHITESPACE) == b"[":
        lines = _lines(_chain(head, stream))
        next(lines)  # the "[" line
        yield from _laid_out_array(lines)
        return
    whole = head + b"".join(stream)  # the exact body: a record of its own keeps every byte, line breaks too
    try:
        parsed = orjson.loads(whole)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list):
        for index, element in enumerate(parsed):
            yield Record(1, index, orjson.dumps(element))
        return
    yield Record(1, 0, whole)  # an empty .json object too: an object per event, of an empty event


def _laid_out_array(lines: Iterator[bytes]) -> Iterator[Record]:
    """Elements of an array whose "[" stood alone on line 1: each is the fewest lines that parse as JSON."""
    index = 0
    start = 0  # line number where the pending element starts
    pending: list[bytes] = []
    for number, line in enumerate(lines, start=2):
        if not pending:
            stripped = line.strip(JSON_WHITESPACE)
            if not stripped:
                continue
            if stripped == b"]":
                return
            start = number
        pending.append(line)
        text = b"\n".join(pending).strip(JSON_WHITESPACE)
        for candidate, closes in ((text.removesuffix(b","), False), (text.removesuffix(b"]"), True)):
            candidate = candidate.strip(JSON_WHITESPACE)
            if candidate and is_json_value(candidate):
                yield Record(start, index, candidate)
                index += 1
                pending = []
                if closes:
                    return
                break
    if pending:  # the array broke off: what is left is one record (not JSON, so a dead letter)
        yield Record(start, index, b"\n".join(pending))


def is_json_value(data: bytes) -> bool:
    """Whether the bytes are one JSON value (what an array element, or a record of an array, must be)."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


# ----------------------------------------------------------------------------------------------- identity


def _value_at(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _key_text(value: Any) -> Any:
    """A key value in one form whatever it came from (the event's JSON, a BigQuery row): times as UTC RFC 3339
    with microseconds, everything else as it is."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, str) and len(value) >= 20 and value[4:5] == "-" and value[10:11] in ("T", " "):
        try:
            return rfc3339(value)
        except ValueError:
            return value
    return value


def natural_key(event_type: str, event: dict[str, Any]) -> tuple[Any, ...]:
    """The values of the event's natural key, normalised (an accepted event, or a row of its table)."""
    return tuple(_key_text(_value_at(event, path)) for path in NATURAL_KEYS[event_type])


def history_event_id(event_type: str, event: dict[str, Any]) -> str:
    """The event_id of a historical event: SHA-256 (hex) of its type and natural key; the same for the event's
    JSON and for its row in BigQuery, so a backfill recognises what is already loaded."""
    key = orjson.dumps([event_type, *natural_key(event_type, event)])
    return hashlib.sha256(key).hexdigest()


def record_id(object_uri: str, index: int) -> str:
    """The id of a record by its place: s3://BUCKET/KEY#INDEX (what a dead letter of history is named by)."""
    return f"{object_uri}#{index}"


def identity(data: bytes, object_uri: str, index: int) -> str:
    """The event_id a backfill gives the record `data` at object_uri#index: its natural-key id when it is an
    event the validator accepts, else its place. The history publisher records this id in the manifest."""
    verdict = validate(data)
    if isinstance(verdict, Accepted):
        return history_event_id(verdict.event_type, verdict.event)
    return record_id(object_uri, index)


def run_id_of_key(key: str) -> str | None:
    """The workbench run a history object belongs to: the folder of its key that is a run id, if any."""
    for segment in reversed(key.split("/")[:-1]):
        if RUN_ID_SEGMENT.fullmatch(segment):
            return segment
    return None
