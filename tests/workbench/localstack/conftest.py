"""The local-stack tests' own home (tests/conftest.py's `home`: state, logs and data of `workbench up` in a
temporary folder), and whatever a test left running stopped after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.localstack import stack


@pytest.fixture
def home(home: Path) -> Iterator[Path]:
    yield home
    stack.down()  # whatever a test left running
