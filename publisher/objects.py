"""How a history run is laid out in object storage: which object each message goes to, and in which framing.

Pure functions, no network: the S3 sink (publisher/s3.py) asks them where to put each message and writes
exactly what they say, so the layout is tested without a server and is the same for a given seed.

    >>> spans = span_sizes(count=1000, objects=8, seed=7)    # skewed: a few large, many small; sums to 1000
    >>> run_prefix("s3://history/exports", "run-1")
    'exports/run-1/'

The run's events are cut, in the order the generator makes them, into `objects` consecutive spans whose sizes
follow a Pareto (80/20) draw from the seed. Each span becomes one object (or, with split_by_type, one object
per event type it holds) in the span's format:

    ndjson      PREFIX/RUN/part-00003.jsonl     one record per line, "\\n" after each; blank lines are records
    array       PREFIX/RUN/part-00003.json      "[\\n" + one element per line, joined by ",\\n" + "\\n]\\n"
    per-event   PREFIX/RUN/part-00003-000000.json   the object's body is the record's bytes, nothing else
    mixed       each span draws ndjson or array from the seed, and spans of at most SMALL_SPAN records may
                draw per-event
Gzip adds ".gz" to the key (the body is a gzip stream). split_by_type adds a folder per event type:
PREFIX/RUN/order/part-00003.jsonl.

The reader rule these objects are written for (what a backfill must do to see each record's bytes):
    *.jsonl[.gz]   every line is one record, blank ones included; the final "\\n" ends the last record
    *.json[.gz]    a JSON array: each element is one record (its bytes are the element's line without the
                   ",") ; anything else (an object, a scalar, not JSON at all) is one record: the whole body

Malformed bytes stay exactly as the generator made them, so a message goes where its bytes can sit unchanged:
    - a payload with a line break (CR or LF) cannot be one line, nor one line of an array: it is written
      as an object of its own (per-event), whatever the span's format;
    - a payload that is not one JSON value cannot be an array element: in an array span it goes to the
      span's ndjson companion object (part-00003.jsonl beside part-00003.json);
    - a payload that is a JSON array is never written as a per-event object, where a reader would take it
      for an array of records: in a per-event span it goes to the span's ndjson companion object (no payload
      of the catalogue has both a line break and a top-level array).
The manifest records, per event, the object and position it was actually written to.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

from eventmodel.history import is_json_value

NDJSON = "ndjson"
ARRAY = "array"
PER_EVENT = "per-event"
MIXED = "mixed"
FORMATS = (NDJSON, ARRAY, PER_EVENT, MIXED)
NONE = "none"
GZIP = "gzip"
COMPRESSIONS = (NONE, GZIP, MIXED)
SMALL_SPAN = 20  # mixed: spans of at most this many records may be written one object per record
PARETO_ALPHA = 1.16  # the 80/20 rule: about a fifth of the objects hold about four fifths of the events

EXTENSIONS = {NDJSON: ".jsonl", ARRAY: ".json", PER_EVENT: ".json"}
CONTENT_TYPES = {NDJSON: "application/x-ndjson", ARRAY: "application/json", PER_EVENT: "application/json"}
GZIP_CONTENT_TYPE = "application/gzip"
ARRAY_OPEN, ARRAY_SEPARATOR, ARRAY_CLOSE = b"[\n", b",\n", b"\n]\n"


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or a key prefix without a leading slash, ending in "/"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_s3_uri(uri: str) -> S3Location:
    """s3://BUCKET[/PREFIX] -> bucket and key prefix. ValueError says what to write instead."""
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an S3 URI: write s3://BUCKET/PREFIX")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    # S3's bucket naming rules, the part of them a typo breaks: 3-63 lower-case letters, digits, dots, hyphens.
    if not 3 <= len(bucket) <= 63 or not all(c.islower() or c.isdigit() or c in ".-" for c in bucket):
        raise ValueError(f"{uri!r}: {bucket!r} is not a bucket name (3-63 lower-case letters, digits, '.', '-')")
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        raise ValueError(f"{uri!r}: a bucket name starts and ends with a letter or digit")
    prefix = prefix.strip("/")
    return S3Location(bucket, f"{prefix}/" if prefix else "")


def run_prefix(uri: str, run_id: str) -> str:
    """The key prefix every object of a run sits under: PREFIX/RUN/ (two runs never share an object)."""
    return f"{parse_s3_uri(uri).prefix}{run_id}/"


def span_sizes(count: int, objects: int, seed: int) -> list[int]:
    """`objects` sizes, each at least 1, summing to count: Pareto weights from the seed, largest remainders."""
    if objects < 1 or count < objects:
        raise ValueError(f"--objects must be between 1 and --count ({count}), got {objects}")
    rng = random.Random(f"object-sizes:{seed}")
    weights = [rng.paretovariate(PARETO_ALPHA) for _ in range(objects)]
    total = sum(weights)
    spare = count - objects
    shares = [w / total * spare for w in weights]
    sizes = [1 + int(s) for s in shares]
    by_remainder = sorted(range(objects), key=lambda i: shares[i] - int(shares[i]), reverse=True)
    for i in by_remainder[: count - sum(sizes)]:
        sizes[i] += 1
    return sizes


def span_formats(sizes: list[int], fmt: str, seed: int) -> list[str]:
    """The format of each span: fmt itself, or for mixed a draw per span from the seed."""
    if fmt != MIXED:
        return [fmt] * len(sizes)
    rng = random.Random(f"object-formats:{seed}")
    return [rng.choice((NDJSON, ARRAY, PER_EVENT) if size <= SMALL_SPAN else (NDJSON, ARRAY)) for size in sizes]


class CompressionChooser:
    """gzip or not, per object in the order objects are opened: fixed, or for mixed a coin from the seed."""

    def __init__(self, compression: str, seed: int) -> None:
        self._compression = compression
        self._rng = random.Random(f"object-compression:{seed}")

    def next(self) -> bool:
        if self._compression == MIXED:
            return self._rng.random() < 0.5
        return self._compression == GZIP


def has_line_break(data: bytes) -> bool:
    return b"\n" in data or b"\r" in data


def is_json_array(data: bytes) -> bool:
    try:
        return isinstance(orjson.loads(data), list)
    except orjson.JSONDecodeError:
        return False


def placement(span_format: str, data: bytes) -> str:
    """The format of the object a message goes to, given its span's format and its bytes (rules above)."""
    broken = has_line_break(data)
    if span_format == PER_EVENT or broken:
        if not is_json_array(data):
            return PER_EVENT
        if broken:
            raise ValueError("a payload that is a JSON array with a line break fits no object format")
        return NDJSON
    if span_format == ARRAY and not is_json_value(data):
        return NDJSON
    return span_format


def object_key(prefix: str, span: int, fmt: str, gzip: bool, event_type: str | None = None,
               record: int | None = None) -> str:  # fmt: skip
    """PREFIX/RUN/[TYPE/]part-SSSSS[-RRRRRR].jsonl|.json[.gz]; record numbers the per-event objects of a span."""
    folder = f"{prefix}{event_type}/" if event_type else prefix
    name = f"part-{span:05d}" if record is None else f"part-{span:05d}-{record:06d}"
    return f"{folder}{name}{EXTENSIONS[fmt]}{'.gz' if gzip else ''}"


def content_type(fmt: str, gzip: bool) -> str:
    return GZIP_CONTENT_TYPE if gzip else CONTENT_TYPES[fmt]


def frame(fmt: str, index: int, data: bytes) -> bytes:
    """The bytes that put record `index` (0-based) of an object in place: ndjson line, array element, body."""
    if fmt == NDJSON:
        return data + b"\n"
    if fmt == ARRAY:
        return (ARRAY_OPEN if index == 0 else ARRAY_SEPARATOR) + data
    return data


def closing(fmt: str, records: int) -> bytes:
    """What ends an object of `records` records (only an array has a tail)."""
    return ARRAY_CLOSE if fmt == ARRAY and records else b""


def line_of(fmt: str, index: int) -> int:
    """The 1-based line (of the uncompressed object) on which record `index` starts."""
    if fmt == NDJSON:
        return index + 1
    if fmt == ARRAY:
        return index + 2  # after the "[" line
    return 1
