"""The streaming BigQuery sink against quota errors, refused rows and a missing table, over real HTTP.

WriteEventRows runs in a Beam pipeline with google-cloud-bigquery's own client, pointed at a loopback proxy
(bigquery_fault_proxy) in front of the session's BigQuery emulator: the proxy answers what only real BigQuery
answers (403 rateLimitExceeded, a row `invalid` beside `stopped` ones) and forwards everything else. The rows
are then read back from the emulator itself.
"""

from __future__ import annotations

import ast
import itertools
from datetime import datetime

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from bigquery_fault_proxy import FaultProxy
from pipeline_support import as_pubsub, collect, generated, streaming_options

from endpoints.bigquery import bigquery_client
from eventmodel import reasons as R
from eventmodel import rows
from eventmodel.resources import ATTR_EVENT_ID
from generator.stream import DEAD_LETTER
from pipeline import bigquery_errors as E
from pipeline.bigquery import WriteEventRows
from pipeline.runners import local_runner
from pipeline.validate import ParseAndValidate

_projects = itertools.count(1)


@pytest.fixture
def events(bigquery_emulator, monkeypatch):
    """A project and dataset of their own with the event tables, and valid events for them."""
    from ddl.apply import apply_ddl

    monkeypatch.setenv("NO_GCE_CHECK", "true")
    project, dataset = f"throttle-{next(_projects)}", "events"
    apply_ddl(project=project, dataset=dataset, emulator=bigquery_emulator.host_port)
    messages = [m for m in generated(45, seed=21) if m.expected != DEAD_LETTER]
    return project, dataset, messages


def _write(project: str, dataset: str, endpoint: str, messages, retry_seconds: float, tmp_path) -> list[tuple]:
    """Run the sink over the messages; returns the dead letters as (event id, reason, detail)."""
    path = tmp_path / "dead.txt"
    path.touch()
    with BeamTestPipeline(runner=local_runner(), options=streaming_options(), blocking=True) as p:
        valid, _ = p | beam.Create(as_pubsub(messages)) | ParseAndValidate()
        dead = valid | WriteEventRows(project, dataset, endpoint=endpoint, retry_seconds=retry_seconds)
        collect(dead | beam.Map(lambda d: (d.event_id, d.reason, d.detail)), str(path), "Dead")
    return [ast.literal_eval(line) for line in path.read_text().splitlines()]


def _landed(project: str, dataset: str, endpoint: str) -> dict[str, datetime]:
    """event_id -> ingest_time of every row in the event tables, read from the emulator (not the proxy)."""
    client = bigquery_client(project, endpoint)
    try:
        found = {}
        for table in rows.TABLES.values():  # tabledata.list: a read of the rows, not a query
            for row in client.list_rows(f"{project}.{dataset}.{table}"):
                found[row["event_id"]] = row["ingest_time"]
        return found
    finally:
        client.close()


def _resent_whole(proxy: FaultProxy) -> list[tuple[float, float, list[str]]]:
    """For each refused (403) insertAll: when, when the same rows went again, and which. Fails if they never went
    again as one request (a quota error must not split a batch)."""
    pairs = []
    for when, status, ids in proxy.calls:
        if status == 403:
            again = [c for c in proxy.calls if c[0] > when and set(c[2]) == set(ids)]
            assert again, f"the rows of a throttled request were never sent again whole: {ids}"
            pairs.append((when, again[0][0], ids))
    return pairs


def _ids(messages) -> set[str]:
    return {m.attributes[ATTR_EVENT_ID] for m in messages}


def test_a_rate_limited_insert_backs_off_and_lands_every_row_with_the_time_of_the_insert(events, bigquery_emulator,
                                                                                          tmp_path):  # fmt: skip
    project, dataset, messages = events
    with FaultProxy(bigquery_emulator.endpoint, throttle=3) as proxy:
        dead = _write(project, dataset, proxy.endpoint, messages, retry_seconds=120, tmp_path=tmp_path)
    assert dead == [], "a quota error is not the rows' fault: nothing is dead-lettered"
    statuses = proxy.statuses()
    assert statuses[:3] == [403, 403, 403] and set(statuses[3:]) == {200}, statuses
    landed = _landed(project, dataset, bigquery_emulator.endpoint)
    assert set(landed) == _ids(messages)
    for when, again, ids in _resent_whole(proxy):
        # A throttled batch waits at least 0.75 s (1 s less jitter), more than an outage's first 0.5 s.
        assert again - when >= E.THROTTLED_INITIAL_S * 0.75, (again - when, ids)
        for event_id in ids:  # stamped at the insert that landed it, after the refusal: not at build time
            assert landed[event_id].timestamp() > when, event_id


def test_a_quota_error_past_the_budget_dead_letters_the_rows_unsplit_with_a_detail_that_says_quota(
    events, bigquery_emulator, tmp_path
):
    project, dataset, messages = events
    with FaultProxy(bigquery_emulator.endpoint, throttle=10_000) as proxy:
        dead = _write(project, dataset, proxy.endpoint, messages, retry_seconds=2.5, tmp_path=tmp_path)
    assert {event_id for event_id, _, _ in dead} == _ids(messages)
    assert {reason for _, reason, _ in dead} == {R.BIGQUERY_INSERT_FAILED}
    assert all("quota" in detail and "rateLimitExceeded" in detail for _, _, detail in dead), dead[0]
    batches = {frozenset(ids) for _, _, ids in proxy.calls}
    assert len(batches) == 3, "one batch per table, each sent whole every time (never split)"
    assert len(proxy.calls) <= 3 * 4, "backed off: 1 s, 2 s ... within 2.5 s, not a tight loop"
    assert _landed(project, dataset, bigquery_emulator.endpoint) == {}


@pytest.mark.parametrize("as_request", [False, True], ids=["row-invalid-others-stopped", "request-400-invalid"])
def test_a_row_refused_for_its_content_is_dead_lettered_alone_while_a_throttle_only_delays_the_rest(
    events, bigquery_emulator, tmp_path, as_request
):
    project, dataset, messages = events
    poison = messages[7].attributes[ATTR_EVENT_ID]
    faults = FaultProxy(bigquery_emulator.endpoint, throttle=2, invalid_ids={poison}, invalid_as_request=as_request)
    with faults as proxy:
        dead = _write(project, dataset, proxy.endpoint, messages, retry_seconds=120, tmp_path=tmp_path)
    assert [(event_id, reason) for event_id, reason, _ in dead] == [(poison, R.BIGQUERY_INSERT_FAILED)]
    assert len(_resent_whole(proxy)) == 2
    assert "invalid" in dead[0][2] and "quota" not in dead[0][2], dead[0][2]
    assert set(_landed(project, dataset, bigquery_emulator.endpoint)) == _ids(messages) - {poison}


def test_a_missing_table_dead_letters_at_once_without_splitting_or_waiting_out_the_budget(
    bigquery_emulator, tmp_path, monkeypatch
):
    from ddl.apply import apply_ddl

    monkeypatch.setenv("NO_GCE_CHECK", "true")
    project = f"throttle-{next(_projects)}"
    apply_ddl(project=project, dataset="events", emulator=bigquery_emulator.host_port)
    messages = [m for m in generated(20, seed=22) if m.expected != DEAD_LETTER]
    with FaultProxy(bigquery_emulator.endpoint) as proxy:
        dead = _write(project, "no_such_dataset", proxy.endpoint, messages, retry_seconds=60, tmp_path=tmp_path)
    assert {event_id for event_id, _, _ in dead} == _ids(messages)
    assert all("NotFound" in detail and "missing table" in detail for _, _, detail in dead), dead[0]
    assert set(proxy.statuses()) == {404}
    assert len(proxy.calls) == len({frozenset(ids) for _, _, ids in proxy.calls}), "each batch sent once, unsplit"


def test_a_rate_limited_dead_letters_table_backs_off_like_the_event_tables(bigquery_emulator, tmp_path, monkeypatch):
    """The dead_letters table is written by its own sink (pipeline.dead_letters): a quota error there is waited out
    with the throttled back-off too, and every dead letter lands once the limit lifts."""
    from ddl.apply import apply_ddl
    from pipeline.dead_letters import WriteDeadLetters

    monkeypatch.setenv("NO_GCE_CHECK", "true")
    project = f"throttle-{next(_projects)}"
    apply_ddl(project=project, dataset="events", emulator=bigquery_emulator.host_port)
    malformed = [m for m in generated(200, seed=23, malformed_rate=0.5) if m.expected == DEAD_LETTER][:12]
    proxy = FaultProxy(bigquery_emulator.endpoint, throttle=2)
    with proxy, BeamTestPipeline(runner=local_runner(), options=streaming_options(), blocking=True) as p:
        _, dead = p | beam.Create(as_pubsub(malformed)) | ParseAndValidate()
        _ = dead | WriteDeadLetters(None, project, "events", endpoint=proxy.endpoint, retry_seconds=120)
    statuses = proxy.statuses()
    assert statuses[:2] == [403, 403] and set(statuses[2:]) == {200}, statuses
    for when, again, ids in _resent_whole(proxy):
        assert again - when >= E.THROTTLED_INITIAL_S * 0.75, (again - when, ids)
    client = bigquery_client(project, bigquery_emulator.endpoint)
    try:
        landed = list(client.list_rows(f"{project}.events.{rows.DEAD_LETTER_TABLE}"))
    finally:
        client.close()
    assert len(landed) == len(malformed)
    refused_at = min(when for when, status, _ in proxy.calls if status == 403)
    for row in landed:  # stamped at the insert that landed it, after the refusals: not when the letter was built
        assert row["ingest_time"].timestamp() > refused_at, row["ingest_time"]
