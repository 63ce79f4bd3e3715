"""Fixtures for the pipeline's integration tests: the session's Pub/Sub and BigQuery emulators (tests/conftest.py),
with every test in its own project id (so its own topic, subscription and dead-letter topic) and its own dataset,
so that tests never see each other's messages or rows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

_projects = itertools.count(1)


@dataclass
class LocalStack:
    project: str
    pubsub: str  # host:port
    bigquery: str  # http://host:port
    bigquery_host_port: str
    dataset: str


@pytest.fixture
def stack(workbench_emulator, bigquery_emulator, monkeypatch, tmp_path) -> LocalStack:
    """Resources for one test: topic, subscription, dead-letter pair, dataset."""
    from ddl.apply import apply_ddl
    from workbench.localstack.stack import create_pubsub_resources

    n = next(_projects)
    project = f"pipeline-it-{n}"
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", workbench_emulator.target)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    create_pubsub_resources(workbench_emulator.target, project)
    dataset = f"events_{n}"
    # The emulator serves any project id; tables live under the project the client names.
    result = apply_ddl(project=project, dataset=dataset, emulator=bigquery_emulator.host_port)
    assert not [s for s, _ in result.skipped if "TABLE" in s.sql.upper() and "SNAPSHOT" not in s.sql.upper()]
    bigquery = bigquery_emulator
    return LocalStack(project, workbench_emulator.target, bigquery.endpoint, bigquery.host_port, dataset)
