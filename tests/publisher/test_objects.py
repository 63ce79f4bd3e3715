"""The S3 layout's pure rules (publisher/objects.py): span sizes, formats, placement of every catalogue kind."""

from __future__ import annotations

import statistics

import orjson
import pytest

from generator.malformed import CATALOGUE
from generator.stream import EventStream, GeneratorConfig
from publisher import objects as layout


@pytest.mark.parametrize("seed", range(30))
def test_span_sizes_sum_to_the_count_each_at_least_one(seed):
    sizes = layout.span_sizes(10_000, 50, seed)
    assert len(sizes) == 50 and sum(sizes) == 10_000 and min(sizes) >= 1
    assert layout.span_sizes(10_000, 50, seed) == sizes  # a function of the seed


def test_span_sizes_are_skewed_many_small_a_few_large():
    """Over many seeds: the largest fifth of the objects holds most events, and the median is far below the mean."""
    top_shares, median_over_mean = [], []
    for seed in range(40):
        sizes = sorted(layout.span_sizes(20_000, 40, seed), reverse=True)
        top_shares.append(sum(sizes[:8]) / 20_000)
        median_over_mean.append(statistics.median(sizes) / statistics.mean(sizes))
    assert statistics.mean(top_shares) > 0.55
    assert statistics.mean(median_over_mean) < 0.6


def test_span_sizes_differ_between_seeds_and_cover_the_edges():
    assert layout.span_sizes(1000, 10, 1) != layout.span_sizes(1000, 10, 2)
    assert layout.span_sizes(7, 7, 3) == [1] * 7  # an object per event
    assert layout.span_sizes(7, 1, 3) == [7]
    with pytest.raises(ValueError, match="--objects must be between 1 and --count"):
        layout.span_sizes(5, 6, 0)


def test_mixed_formats_draw_every_format_and_per_event_only_for_small_spans():
    sizes = layout.span_sizes(5000, 200, 4)
    formats = layout.span_formats(sizes, layout.MIXED, 4)
    assert set(formats) == {layout.NDJSON, layout.ARRAY, layout.PER_EVENT}
    assert all(size <= layout.SMALL_SPAN for size, f in zip(sizes, formats, strict=True) if f == layout.PER_EVENT)
    assert layout.span_formats(sizes, layout.ARRAY, 4) == [layout.ARRAY] * 200


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [("s3://history/exports/2025", "history", "exports/2025/"), ("s3://history", "history", ""),
     ("s3://my.bucket-1/a/", "my.bucket-1", "a/")],
)  # fmt: skip
def test_parse_s3_uri(uri, bucket, prefix):
    assert layout.parse_s3_uri(uri) == layout.S3Location(bucket, prefix)


@pytest.mark.parametrize(
    ("uri", "says"),
    [("gs://history/x", "is not an S3 URI"), ("s3://History/x", "is not a bucket name"), ("s3://ab", "not a bucket"),
     ("s3://-abc/x", "starts and ends with a letter or digit")],
)  # fmt: skip
def test_bad_s3_uris_say_what_to_write(uri, says):
    with pytest.raises(ValueError, match=says):
        layout.parse_s3_uri(uri)


def _records_after_placement(fmt: str, data: bytes) -> list[bytes]:
    """Write one record as the layout says and read it back by the reader rule of the module docstring."""
    body = layout.frame(fmt, 0, data) + layout.closing(fmt, 1)
    if fmt == layout.NDJSON:
        return body[:-1].split(b"\n")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, list):
        return [line.removesuffix(b",") for line in body.split(b"\n")[1:-2]]
    return [body]


@pytest.mark.parametrize("span_format", [layout.NDJSON, layout.ARRAY, layout.PER_EVENT])
def test_every_catalogue_kind_is_placed_where_a_reader_finds_its_exact_bytes(span_format):
    stream = EventStream(GeneratorConfig(seed=5, malformed_rate=1.0), run_id="r")
    seen = set()
    for message in stream.take(4000):
        seen.add(message.kind)
        fmt = layout.placement(span_format, message.data)
        assert _records_after_placement(fmt, message.data) == [message.data], (message.kind, fmt)
        if span_format == layout.ARRAY and fmt == layout.ARRAY:
            orjson.loads(message.data)
    assert seen == set(CATALOGUE)


def test_placement_rules():
    assert layout.placement(layout.NDJSON, b'{"a":1}') == layout.NDJSON
    assert layout.placement(layout.NDJSON, b"") == layout.NDJSON  # a blank line is a record
    assert layout.placement(layout.NDJSON, b" \r\n") == layout.PER_EVENT
    assert layout.placement(layout.ARRAY, b"{'a': True}") == layout.NDJSON
    assert layout.placement(layout.ARRAY, b"[1]") == layout.ARRAY
    assert layout.placement(layout.PER_EVENT, b"[1]") == layout.NDJSON  # would read as an array of records
    with pytest.raises(ValueError, match="fits no object format"):
        layout.placement(layout.NDJSON, b"[1,\n2]")


def test_keys_and_lines():
    assert layout.object_key("p/r/", 3, layout.NDJSON, False) == "p/r/part-00003.jsonl"
    assert layout.object_key("p/r/", 3, layout.ARRAY, True, "order") == "p/r/order/part-00003.json.gz"
    assert layout.object_key("p/r/", 3, layout.PER_EVENT, False, None, 7) == "p/r/part-00003-000007.json"
    body = b"".join(layout.frame(layout.ARRAY, i, b"%d" % i) for i in range(3)) + layout.closing(layout.ARRAY, 3)
    lines = body.split(b"\n")
    assert [lines[layout.line_of(layout.ARRAY, i) - 1] for i in range(3)] == [b"0,", b"1,", b"2"]
    assert orjson.loads(body) == [0, 1, 2]
