"""endpoints/storage.py against the GCS emulator: google-cloud-storage's client, anonymous, at the emulator's
address however it is written. (use_anonymous_beam_credentials has its canary in
tests/workbench/pipeline_run/test_beam_private_hooks.py.)"""

from __future__ import annotations

import os

import pytest

from endpoints.storage import storage_client

pytestmark = pytest.mark.integration


def test_the_client_reads_and_writes_the_emulators_bucket(gcs_emulator):
    emulator = os.environ["STORAGE_EMULATOR_HOST"]  # set by the gcs_emulator fixture: http://HOST:PORT
    bucket = gcs_emulator.removeprefix("gs://")
    for address in (emulator, emulator.removeprefix("http://")):
        client = storage_client("endpoints-tests", address)
        client.bucket(bucket).blob(f"k-{len(address)}").upload_from_string(b"v")
        assert client.bucket(bucket).blob(f"k-{len(address)}").download_as_bytes() == b"v"
        assert client._connection.API_BASE_URL.rstrip("/") == emulator.rstrip("/")
    assert storage_client("endpoints-tests", emulator).get_bucket(bucket).name == bucket
