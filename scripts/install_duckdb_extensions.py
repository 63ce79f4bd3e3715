"""Install DuckDB's spatial extension from the duckdb-extension-spatial wheel, offline.

The BigQuery emulator (bqemulator) loads DuckDB's spatial extension at start and would download it from
the internet when it is missing; these machines have no internet. The wheel carries the extension file,
so copy it to where DuckDB looks: $HOME/.duckdb/extensions/<duckdb version>/<platform>/.
Run by scripts/bootstrap.sh; does nothing when the file is already in place or the package is absent.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def main() -> int:
    try:
        import duckdb
        import duckdb_extension_spatial
    except ImportError:
        return 0  # the local extra is not installed: nothing to fix
    version = f"v{duckdb.__version__}"
    platform = duckdb.execute("PRAGMA platform").fetchone()[0]
    source = Path(duckdb_extension_spatial.__file__).parent / "extensions" / version / "spatial.duckdb_extension"
    if not source.exists():
        print(f"bootstrap: no spatial extension for DuckDB {version} in {source.parent}", file=sys.stderr)
        return 1
    target = Path.home() / ".duckdb" / "extensions" / version / platform / "spatial.duckdb_extension"
    if target.exists() and target.stat().st_size == source.stat().st_size:
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    print(f"bootstrap: installed DuckDB spatial extension to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
