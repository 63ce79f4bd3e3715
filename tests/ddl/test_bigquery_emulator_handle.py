"""The BigQuery emulator (workbench.localstack.emulators) starts on loopback, answers, stops, says what failed."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from workbench.errors import WorkbenchError
from workbench.localstack.emulators import start_bigquery_emulator

pytestmark = pytest.mark.integration


def test_start_answer_stop(tmp_path):
    emulator = start_bigquery_emulator(project="handle-test")
    try:
        assert emulator.endpoint.startswith("http://127.0.0.1:")
        assert list(emulator.client().list_datasets()) == []
    finally:
        emulator.stop()
    assert emulator.process.poll() is not None  # gone, and reaped
    with pytest.raises(ProcessLookupError):
        os.kill(emulator.process.pid, 0)
    emulator.stop()  # idempotent


def test_a_taken_port_is_reported_before_starting():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(WorkbenchError, match=f"port 127.0.0.1:{port} is already in use"):
            start_bigquery_emulator(port=port)


def test_loopback_only():
    with pytest.raises(WorkbenchError, match="loopback"):
        start_bigquery_emulator(host="0.0.0.0")


def test_missing_offline_fix_names_the_fix(tmp_path, monkeypatch):
    # DuckDB looks for its spatial extension under $HOME; an empty home without duckdb-extension-spatial (which
    # start_bigquery_emulator would copy from) is a machine without the offline fix, where the emulator tries to
    # download it and exits.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "duckdb_extension_spatial", None)
    with pytest.raises(WorkbenchError) as error:
        start_bigquery_emulator(timeout=30)
    assert "exited" in error.value.message and "bootstrap.sh" in error.value.fix
