"""The local services every test directory shares, one session fixture per emulator, all started through the
workbench's own toolkit (workbench.localstack.emulators: free loopback ports, readiness, stop by process group).

- `workbench_emulator`: this project's Pub/Sub emulator; `official_emulator`: Google's, where gcloud and java are
  installed (skipped with the reason otherwise); `backend` is parametrized over both so that a suite runs the
  same assertions against each.
- `bigquery_emulator`: bqemulator; any project id works on it, so each test names its own project or dataset.
- `gcs_emulator`: a fresh in-memory GCS emulator per test (it slows as objects pile up).
- `s3_emulator`: moto's S3 server (in memory); each test makes its own bucket.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workbench.localstack.emulators import (
    Emulator,
    official_pubsub_missing,
    start_bigquery_emulator,
    start_gcs_emulator,
    start_official_pubsub_emulator,
    start_pubsub_emulator,
    start_s3_emulator,
)

PROJECT = "p"  # the Pub/Sub tests' project on the shared emulators


@pytest.fixture(scope="session")
def workbench_emulator() -> Iterator[Emulator]:
    with start_pubsub_emulator(project=PROJECT) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def official_emulator() -> Iterator[Emulator]:
    reason = official_pubsub_missing()
    if reason:
        pytest.skip(f"official emulator unavailable: {reason}")
    with start_official_pubsub_emulator(project=PROJECT) as emulator:
        yield emulator


@pytest.fixture(params=["workbench", "official"])
def backend(request: pytest.FixtureRequest) -> Emulator:
    """The Pub/Sub emulator a conformance test runs against."""
    return request.getfixturevalue(f"{request.param}_emulator")


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[Emulator]:
    with start_bigquery_emulator(project="workbench-tests") as emulator:
        yield emulator


@pytest.fixture
def gcs_emulator(monkeypatch) -> Iterator[str]:
    """Yields the bucket URL gs://workbench-test and points STORAGE_EMULATOR_HOST (and Beam's gs:// filesystem,
    anonymously) at a fresh emulator."""
    from workbench.localstack.clients import use_anonymous_beam_credentials

    with start_gcs_emulator(bucket="workbench-test") as emulator:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
        use_anonymous_beam_credentials()
        yield "gs://workbench-test"


@pytest.fixture(scope="session")
def s3_emulator() -> Iterator[Emulator]:
    """moto's S3 server for the session: `.s3_client()` is boto3's, `.endpoint` is Beam's --s3_endpoint_url and
    `.exports` the AWS variables for a child process. Each test creates and names its own bucket."""
    with start_s3_emulator() as emulator:
        yield emulator
