"""Fixtures for the pipeline's integration tests: the real local stack, started here on free loopback ports.

The Pub/Sub emulator (this project's, `python -m emulator.pubsub`) and the BigQuery emulator (bqemulator) run for
the session; every test gets its own project id (so its own topic, subscription and dead-letter topic) and its
own dataset, so tests never see each other's messages or rows. Every process is stopped by its own pid.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pipeline_support import free_port

ROOT = Path(__file__).resolve().parents[2]
_projects = itertools.count(1)


@dataclass
class PubSubEmulator:
    host: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    from emulator.pubsub.server import wait_healthy

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator.pubsub", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    emulator = PubSubEmulator(f"127.0.0.1:{port}", process)
    try:
        wait_healthy(emulator.host, timeout=30)
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def bq_emulator():
    from workbench.localstack.bigquery import start_bigquery_emulator

    emulator = start_bigquery_emulator(project="pipeline-it")
    try:
        yield emulator
    finally:
        emulator.stop()


@dataclass
class LocalStack:
    project: str
    pubsub: str  # host:port
    bigquery: str  # http://host:port
    bigquery_host_port: str
    dataset: str


@pytest.fixture
def stack(pubsub_emulator, bq_emulator, monkeypatch, tmp_path) -> LocalStack:
    """Resources for one test: topic, subscription, dead-letter pair, dataset."""
    from workbench.bq_apply import apply_ddl
    from workbench.localstack.stack import create_pubsub_resources

    n = next(_projects)
    project = f"pipeline-it-{n}"
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    create_pubsub_resources(pubsub_emulator.host, project)
    dataset = f"events_{n}"
    # The emulator serves any project id; tables live under the project the client names.
    result = apply_ddl(project=project, dataset=dataset, emulator=bq_emulator.host_port)
    assert not [s for s, _ in result.skipped if "TABLE" in s.sql.upper() and "SNAPSHOT" not in s.sql.upper()]
    return LocalStack(project, pubsub_emulator.host, bq_emulator.endpoint, bq_emulator.host_port, dataset)
