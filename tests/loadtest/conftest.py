"""The load test's local stack (tests/conftest.py's `make_stack`): a project of its own on a Pub/Sub emulator (the
shared one, or one with the admin service for fault injection) and the BigQuery model, with WORKBENCH_HOME in the
test's folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stack_support import LocalStack

from workbench.localstack.emulators import Emulator, start_pubsub_emulator


@pytest.fixture
def stack(make_stack, request) -> LocalStack:
    return make_stack(request, "loadtest-it")


@pytest.fixture(scope="module")
def admin_emulator() -> Iterator[Emulator]:
    """An emulator whose faults the tests set (the shared one serves no admin service)."""
    with start_pubsub_emulator(project="loadtest-faults", admin=True) as emulator:
        yield emulator


@pytest.fixture
def fault_stack(make_stack, request, admin_emulator) -> Iterator[LocalStack]:
    from emulator.pubsub.admin import AdminClient

    stack = make_stack(request, "loadtest-it", pubsub=admin_emulator)
    yield stack
    with AdminClient(admin_emulator.target) as admin:
        admin.clear_faults()
