"""The BigQuery emulator's offline fix ships in the package: the spatial extension is copied from the
duckdb-extension-spatial wheel into DuckDB's folder under $HOME, once, so an installed wheel needs no bootstrap."""

from __future__ import annotations

import pytest

from workbench.localstack.duckdb_extensions import install_spatial

pytest.importorskip("duckdb_extension_spatial")


def test_the_extension_is_copied_once_into_duckdbs_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    installed = install_spatial()
    assert installed is not None and installed.is_relative_to(tmp_path / ".duckdb" / "extensions")
    assert installed.name == "spatial.duckdb_extension" and installed.stat().st_size > 1_000_000
    assert install_spatial() is None  # already in place: nothing to do
    assert not list(installed.parent.glob("*.tmp"))
