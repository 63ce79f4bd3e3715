"""Fixtures for the BigQuery data-model tests: the parsed DDL, and the session's bqemulator (tests/conftest.py).

Each test that writes gets its own freshly applied dataset, so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from ddl_helpers import PROJECT

from ddl.apply import apply_ddl, load_statements

# Google clients in these tests must never probe the GCE metadata server.
os.environ.setdefault("NO_GCE_CHECK", "true")


@pytest.fixture(scope="session")
def statements():
    return load_statements(project=PROJECT, dataset="events")


@pytest.fixture(scope="session")
def bq_emulator(bigquery_emulator):
    return bigquery_emulator


@pytest.fixture(scope="session")
def bq_client(bigquery_emulator):
    from endpoints.bigquery import bigquery_client

    return bigquery_client(PROJECT, bigquery_emulator.host_port, "US")


_datasets = itertools.count(1)


@pytest.fixture
def dataset(bq_emulator) -> Iterator[str]:
    """A dataset with the whole model applied, unique to the test."""
    name = f"events_{next(_datasets)}"
    result = apply_ddl(project=PROJECT, dataset=name, emulator=bq_emulator.host_port)
    assert not result.skipped, result.skipped
    yield name
