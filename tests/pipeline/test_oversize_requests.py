"""Streaming inserts of near-limit rows stay within BigQuery's request size: a batch of ~1 MB rows goes as several
insertAll requests of at most pipeline.bigquery.MAX_REQUEST_BYTES, never as one request of hundreds of MB.

BigQuery's limit is 10 MB per insertAll HTTP request (https://cloud.google.com/bigquery/quotas#streaming_inserts);
bqemulator has none, so the last test puts a loopback proxy in front of it that refuses a larger insertAll body the
way real BigQuery does and records the size of every one it sees.
"""

from __future__ import annotations

import ast
import itertools
import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from bigquery_fault_proxy import FaultProxy
from loopback_http import bigquery_error
from pipeline_support import as_pubsub, collect, generated, streaming_options

from endpoints.bigquery import bigquery_client
from eventmodel import rows
from eventmodel.schema import MAX_PAYLOAD_BYTES
from eventmodel.validate import validate
from pipeline.bigquery import (
    BATCH_SIZE,
    MAX_REQUEST_BYTES,
    RowEntry,
    WriteEventRows,
    request_batches,
    request_bytes,
)
from pipeline.runners import local_runner
from pipeline.validate import ParseAndValidate

BIGQUERY_REQUEST_LIMIT = 10 * 1024 * 1024  # "10 MB" as BigQuery counts it (the larger reading: the check is <=)
# What BigQuery answers to a larger insertAll (the text of its 400; the reason is assumed, see docs/generator.md
# "Confirm on a real project").
TOO_LARGE = f"Request payload size exceeds the limit: {BIGQUERY_REQUEST_LIMIT} bytes."
NOW = datetime(2025, 2, 8, 13, 9, 1, tzinfo=UTC)
_projects = itertools.count(1)


def _entry(message, i: int) -> RowEntry:
    """The entry BuildEventRowFn makes of a valid generated message (no source: nothing here fails)."""
    row = rows.event_row(validate(message.data), message_id=f"m{i}", publish_time=NOW, attributes=message.attributes)
    return RowEntry(row, message.event_id, None)


def _client_body(entries: list[RowEntry]) -> bytes:
    """The insertAll body google-cloud-bigquery sends for these entries (Client.insert_rows_json, then
    google.cloud._http's json.dumps), with the ingest_time stamp RowInserter adds."""
    stamp = {rows.INGEST_TIME: "2025-02-08T13:09:02.123456Z"}
    stamped = [{"insertId": e.insert_id, "json": {**e.row, **stamp}} for e in entries]
    return json.dumps({"rows": stamped}).encode()


@pytest.fixture(scope="module")
def near_limit_orders():
    sizes = (MAX_PAYLOAD_BYTES - 1, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES * 9 // 10)
    return generated(12, seed=31, type_weights={"order": 1.0}, large_rate=1.0, large_sizes=sizes)


def test_request_bytes_is_never_below_what_the_client_sends():
    base = generated(1, seed=32, type_weights={"order": 1.0})[0]
    entry = _entry(base, 0)
    odd = {**entry.row, "payload_like": 'é中😀\x00\n\t"\\/ , : ,:', "nested": [{"a": "ü" * 50, "b": [1, 2.5, None]}]}
    for candidate in (entry, RowEntry(odd, "id-2", None)):
        exact = len(_client_body([candidate])) - len(_client_body([]))
        assert request_bytes(candidate) >= exact


def test_a_batch_of_near_limit_rows_is_cut_into_requests_within_the_limit(near_limit_orders):
    entries = [_entry(m, i) for i, m in enumerate(near_limit_orders)]
    batches = request_batches(entries)
    assert [e for batch in batches for e in batch] == entries  # all of them, in order
    assert len(batches) >= 2
    for batch in batches:
        assert len(_client_body(batch)) <= MAX_REQUEST_BYTES < BIGQUERY_REQUEST_LIMIT
    # Small rows: one request of the whole batch, as before.
    small = [_entry(m, i) for i, m in enumerate(generated(BATCH_SIZE, seed=33, type_weights={"order": 1.0}))]
    assert request_batches(small) == [small]
    # A row larger than the limit on its own goes alone, its neighbours together.
    huge = RowEntry({"blob": "x" * (MAX_REQUEST_BYTES + 1)}, "huge", None)
    assert request_batches([small[0], huge, small[1], small[2]]) == [[small[0]], [huge], [small[1], small[2]]]


class SizeLimitProxy(FaultProxy):
    """Forwards to the emulator, but refuses an insertAll body over `limit` bytes with BigQuery's 400; records the
    body size of every insertAll in `sizes`."""

    def __init__(self, upstream: str, limit: int = BIGQUERY_REQUEST_LIMIT) -> None:
        self.limit = limit
        self.sizes: list[int] = []
        super().__init__(upstream)

    def _handler(self):
        base = super()._handler()
        proxy = self

        class Handler(base):
            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.command == "POST" and urlsplit(self.path).path.endswith("/insertAll"):
                    proxy.sizes.append(length)
                    if length > proxy.limit:
                        self.rfile.read(length)
                        body = orjson.dumps(bigquery_error(400, "badRequest", TOO_LARGE))
                        return self._send(400, {"Content-Type": "application/json"}, body)
                return base._relay(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

        return Handler


@pytest.mark.slow
def test_near_limit_rows_reach_bigquery_in_requests_it_accepts(bigquery_emulator, near_limit_orders, monkeypatch,
                                                               tmp_path):  # fmt: skip
    from ddl.apply import apply_ddl

    monkeypatch.setenv("NO_GCE_CHECK", "true")
    project, dataset = f"oversize-{next(_projects)}", "events"
    apply_ddl(project=project, dataset=dataset, emulator=bigquery_emulator.host_port)
    dead_path = tmp_path / "dead.txt"
    dead_path.touch()
    with (
        SizeLimitProxy(bigquery_emulator.endpoint) as proxy,
        BeamTestPipeline(runner=local_runner(), options=streaming_options(), blocking=True) as p,
    ):
        valid, _ = p | beam.Create(as_pubsub(near_limit_orders)) | ParseAndValidate()
        dead = valid | WriteEventRows(project, dataset, endpoint=proxy.endpoint, retry_seconds=30)
        collect(dead | beam.Map(lambda d: (d.event_id, d.reason, d.detail[:200])), str(dead_path), "Dead")
    assert [ast.literal_eval(line) for line in dead_path.read_text().splitlines()] == []
    assert proxy.sizes and max(proxy.sizes) <= BIGQUERY_REQUEST_LIMIT, proxy.sizes
    assert len(proxy.sizes) >= 2  # 12 rows of ~1 MB cannot go as one request
    client = bigquery_client(project, bigquery_emulator.endpoint)
    try:
        landed = {row["event_id"]: len(row["items"]) for row in client.list_rows(f"{project}.{dataset}.orders")}
    finally:
        client.close()
    assert landed == {m.event_id: len(orjson.loads(m.data)["items"]) for m in near_limit_orders}
