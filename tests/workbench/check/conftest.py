"""A local stack for `workbench check`, started with the CLI in a WORKBENCH_HOME of its own (the check finds it, and
runs the pipeline under test through `workbench exec`, by that home's state file)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stack_support import Stack

from workbench.localstack.ports import free_port, free_port_pair


@pytest.fixture(scope="module")
def check_stack(tmp_path_factory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("check-home")
    stack = Stack(home, free_port_pair(), free_port_pair(), free_port())
    up = stack.workbench("up", "--pubsub-port", str(stack.pubsub_port), "--bigquery-port", str(stack.bigquery_port))
    assert up.returncode == 0, up.text[-3000:]
    try:
        yield stack
    finally:
        stack.workbench("down", timeout=120)
