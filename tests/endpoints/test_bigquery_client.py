"""endpoints/bigquery.py against a real bqemulator: where the client goes, the location it carries, strict mode
with its rules injected, and the fix when real BigQuery has no credentials."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from google.api_core.exceptions import BadRequest

from endpoints import bigquery_strict as strict
from endpoints.bigquery import CREDENTIALS_FIX, bigquery_client
from endpoints.errors import EndpointError

PROJECT = "endpoints-tests"
UNFILTERED = "SELECT COUNT(*) AS n FROM `{project}.{dataset}.user_activity`"


@pytest.mark.integration
@pytest.mark.parametrize("written", ["host_port", "endpoint"])
def test_the_client_talks_to_the_emulator_however_its_address_is_written(bigquery_emulator, written, monkeypatch):
    monkeypatch.delenv("NO_GCE_CHECK", raising=False)
    client = bigquery_client(PROJECT, getattr(bigquery_emulator, written), "US")
    try:
        assert os.environ["NO_GCE_CHECK"] == "true", "an emulator needs no metadata-server probe"
        assert strict.endpoint_of(client) == bigquery_emulator.endpoint
        assert [tuple(row.values()) for row in client.query("SELECT 1 + 1 AS two").result(timeout=60)] == [(2,)]
    finally:
        client.close()


@pytest.mark.integration
def test_the_location_is_the_callers_and_none_by_default(bigquery_emulator):
    """The pipeline's DoFns give none (insertAll needs none; each job call names its own); the CLI gives its
    dataset's. Strict mode (on in this suite) then refuses a job call that names no location at all."""
    plain = bigquery_client(PROJECT, bigquery_emulator.host_port)
    regional = bigquery_client(PROJECT, bigquery_emulator.host_port, location="europe-west3")
    try:
        assert plain.location is None and regional.location == "europe-west3"
        assert isinstance(plain, strict.StrictClient), "tests/conftest.py runs the suite in strict mode"
        with pytest.raises(strict.StrictModeError, match="names no location"):
            plain.query("SELECT 1")
        assert [row.one for row in plain.query("SELECT 1 AS one", location="US").result(timeout=60)] == [1]
    finally:
        plain.close()
        regional.close()


@pytest.mark.integration
def test_strict_rules_come_from_the_environment_or_the_caller(bigquery_emulator, monkeypatch):
    """The bottom layer cannot read the DDL: the suite hands it the rules (WORKBENCH_BIGQUERY_STRICT_RULES), and
    wrap(rules=...) overrides them; the emulator itself answers the unfiltered read."""
    dataset = f"endpoints_{uuid.uuid4().hex[:8]}"
    client = bigquery_client(PROJECT, bigquery_emulator.host_port, "US")
    try:
        client.create_dataset(f"{PROJECT}.{dataset}", timeout=30)
        client.query(f"CREATE TABLE `{PROJECT}.{dataset}.user_activity` (timestamp TIMESTAMP)").result(timeout=60)
        sql = UNFILTERED.format(project=PROJECT, dataset=dataset)
        with pytest.raises(BadRequest, match="without a filter over column"):
            client.query(sql).result(timeout=60)
        assert strict.wrap(client.unwrapped, rules={}).query(sql).result(timeout=60).total_rows == 1
        monkeypatch.setenv(strict.RULES_ENV, json.dumps({"other_table": "day"}))
        assert client.query(sql).result(timeout=60).total_rows == 1  # the environment's rules, read per call
    finally:
        client.delete_dataset(f"{PROJECT}.{dataset}", delete_contents=True, not_found_ok=True)
        client.close()


def test_rules_in_the_environment_are_a_json_object_of_columns():
    assert strict.rules_from_environment({}) == {}
    assert strict.rules_from_environment({strict.RULES_ENV: '{"user_activity": "timestamp"}'}) == {
        "user_activity": "timestamp"
    }
    for bad in ("[1]", "{not json", '{"t": 1}'):
        with pytest.raises(strict.StrictModeError, match=strict.RULES_ENV):
            strict.rules_from_environment({strict.RULES_ENV: bad})


def test_real_bigquery_without_credentials_says_how_to_log_in(tmp_path, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")  # no metadata server probe: fail at once
    with pytest.raises(EndpointError) as refused:
        bigquery_client("my-proj")
    assert refused.value.message.startswith("cannot reach BigQuery for project my-proj")
    assert refused.value.fix == CREDENTIALS_FIX and "gcloud auth application-default login" in CREDENTIALS_FIX
