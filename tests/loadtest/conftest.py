"""The load test's local stack: a project of its own on a Pub/Sub emulator (the shared one, or one with the admin
service for fault injection) and the BigQuery model, with WORKBENCH_HOME in the test's folder."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from workbench.localstack.emulators import Emulator, start_pubsub_emulator

_projects = itertools.count(1)


def prepare(pubsub_target: str, bigquery_emulator: Emulator, tmp_path, monkeypatch) -> dict:
    from ddl.apply import apply_ddl
    from workbench.localstack.stack import create_pubsub_resources

    project = f"loadtest-it-{next(_projects)}"
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_target)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    create_pubsub_resources(pubsub_target, project)
    apply_ddl(project=project, emulator=bigquery_emulator.host_port)
    return {"project": project, "pubsub": pubsub_target, "bigquery": bigquery_emulator.endpoint,
            "output": tmp_path / "output"}  # fmt: skip


@pytest.fixture
def stack(workbench_emulator, bigquery_emulator, tmp_path, monkeypatch):
    return prepare(workbench_emulator.target, bigquery_emulator, tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def admin_emulator() -> Iterator[Emulator]:
    """An emulator whose faults the tests set (the shared one serves no admin service)."""
    with start_pubsub_emulator(project="loadtest-faults", admin=True) as emulator:
        yield emulator


@pytest.fixture
def fault_stack(admin_emulator, bigquery_emulator, tmp_path, monkeypatch):
    from emulator.pubsub.admin import AdminClient

    stack = prepare(admin_emulator.target, bigquery_emulator, tmp_path, monkeypatch)
    yield stack
    with AdminClient(admin_emulator.target) as admin:
        admin.clear_faults()
