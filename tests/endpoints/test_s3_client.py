"""endpoints/s3.py against moto's S3 server: the local server's keys and region, settings that override them,
the bounded timeouts and retries every client gets, and create_buckets."""

from __future__ import annotations

import uuid

import pytest

from endpoints import s3 as factory
from endpoints.s3 import create_buckets, s3_client

pytestmark = pytest.mark.integration


def _bucket() -> str:
    return f"endpoints-{uuid.uuid4().hex[:10]}"


def test_an_endpoint_gets_the_local_servers_keys_region_and_path_addressing(s3_emulator):
    for address in (s3_emulator.host_port, s3_emulator.endpoint):
        client = s3_client(address)
        assert client.meta.endpoint_url == s3_emulator.endpoint
        assert client.meta.region_name == factory.LOCAL_S3_REGION
        credentials = client._request_signer._credentials
        assert (credentials.access_key, credentials.secret_key) == ("testing", "testing")
        assert client.meta.config.s3 == {"addressing_style": "path"}
    bucket = _bucket()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3_emulator.s3_client().get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_every_client_has_bounded_timeouts_and_attempts(s3_emulator, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    for client in (s3_client(s3_emulator.endpoint), s3_client(None, region="eu-west-1")):
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (factory.CONNECT_TIMEOUT_S, factory.READ_TIMEOUT_S)
        assert config.retries == {"mode": "standard", "total_max_attempts": factory.MAX_ATTEMPTS}
    aws = s3_client(None, region="eu-west-1")
    assert aws.meta.region_name == "eu-west-1" and aws.meta.config.s3 is None  # AWS's own addressing
    reader = s3_client(s3_emulator.endpoint, read_timeout_s=120.0, attempts=5)
    assert (reader.meta.config.read_timeout, reader.meta.config.retries["total_max_attempts"]) == (120.0, 5)


def test_settings_override_the_endpoints_defaults_as_beams_flags_do(s3_emulator, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_emulator.endpoint)  # what `workbench env` exports
    from_environment = s3_client()
    assert from_environment.meta.endpoint_url == s3_emulator.endpoint
    assert from_environment.meta.config.s3 == {"addressing_style": "path"}
    given = s3_client(endpoint_url=s3_emulator.endpoint, region_name="eu-west-1", aws_access_key_id="other",
                      aws_secret_access_key="secret")  # fmt: skip
    assert given.meta.region_name == "eu-west-1"
    assert given._request_signer._credentials.access_key == "other"


def test_create_buckets_is_idempotent_and_names_a_region_but_us_east_1(s3_emulator):
    plain, regional = _bucket(), _bucket()
    create_buckets(s3_client(s3_emulator.endpoint), [plain])
    create_buckets(s3_client(s3_emulator.endpoint), [plain])  # there already: nothing to do, no error
    create_buckets(s3_client(s3_emulator.endpoint, region="eu-west-1"), (regional,))
    client = s3_emulator.s3_client()
    assert client.get_bucket_location(Bucket=plain)["LocationConstraint"] is None  # us-east-1's answer
    assert client.get_bucket_location(Bucket=regional)["LocationConstraint"] == "eu-west-1"
