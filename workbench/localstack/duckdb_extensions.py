"""The BigQuery emulator's offline fix: DuckDB's spatial extension installed from the duckdb-extension-spatial
wheel (the `local` extra), so that bqemulator never tries to download it at start.

bqemulator loads DuckDB's spatial extension when it starts and downloads it when it is missing, which fails
offline. The wheel carries the extension file; this copies it to where DuckDB looks,
$HOME/.duckdb/extensions/<duckdb version>/<platform>/. The local stack and start_bigquery_emulator() call it
before they start the emulator, so an installed wheel works offline as a checkout does; scripts/bootstrap.sh runs
it too (scripts/install_duckdb_extensions.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path


def install_spatial() -> Path | None:
    """Copy the spatial extension into DuckDB's extension folder; returns the path when it copied it, None when
    it was already there or the packages are absent (then bqemulator downloads it, which needs a network)."""
    try:
        import duckdb
        import duckdb_extension_spatial
    except ImportError:
        return None
    version = f"v{duckdb.__version__}"
    source = Path(duckdb_extension_spatial.__file__).parent / "extensions" / version / "spatial.duckdb_extension"
    if not source.exists():
        return None  # a spatial wheel for another DuckDB version: nothing to copy
    platform = duckdb.execute("PRAGMA platform").fetchone()[0]
    target = Path.home() / ".duckdb" / "extensions" / version / platform / "spatial.duckdb_extension"
    if target.exists() and target.stat().st_size == source.stat().st_size:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    shutil.copyfile(source, temporary)
    temporary.replace(target)  # never a half-copied extension for a concurrent start to load
    return target
