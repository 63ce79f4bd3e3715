"""Emulator processes shared by every test directory: this project's Pub/Sub emulator, the official one where
gcloud and java are installed, each on a free loopback port and stopped by its own pid (or its own process
group, for gcloud, which starts java as a child).

`backend` is parametrized over both Pub/Sub emulators so that a suite runs the same assertions against each;
without gcloud the official half is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from emulator_processes import (
    EmulatorProcess,
    official_emulator_missing,
    start_gcs_emulator,
    start_official_emulator,
    start_workbench_emulator,
    stop_process,
)


@pytest.fixture(scope="session")
def workbench_emulator() -> Iterator[EmulatorProcess]:
    emulator = start_workbench_emulator()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def official_emulator() -> Iterator[EmulatorProcess]:
    reason = official_emulator_missing()
    if reason:
        pytest.skip(f"official emulator unavailable: {reason}")
    emulator = start_official_emulator()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def bigquery_emulator():
    """bqemulator on free loopback ports for the session (stopped by its pid); any project id works on it."""
    from workbench.localstack.bigquery import start_bigquery_emulator

    emulator = start_bigquery_emulator(project="workbench-tests")
    yield emulator
    emulator.stop()


@pytest.fixture(params=["workbench", "official"])
def backend(request: pytest.FixtureRequest) -> EmulatorProcess:
    """The emulator a conformance test runs against."""
    return request.getfixturevalue(f"{request.param}_emulator")


@pytest.fixture
def gcs_emulator(monkeypatch) -> Iterator[str]:
    """A fresh in-memory GCS emulator (it slows as objects pile up) with bucket `workbench-test`; yields the
    bucket URL and points STORAGE_EMULATOR_HOST (and Beam's gs:// filesystem) at it."""
    from pipeline.local import use_anonymous_credentials

    process, port = start_gcs_emulator()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        use_anonymous_credentials()
        yield "gs://workbench-test"
    finally:
        stop_process(process)
