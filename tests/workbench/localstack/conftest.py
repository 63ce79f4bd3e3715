"""The local-stack tests' own home: state, logs and data of `workbench up` in a temporary folder, and whatever a
test left running stopped after it."""

from __future__ import annotations

import pytest

from workbench.localstack import stack


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    yield tmp_path
    stack.down()  # whatever a test left running
