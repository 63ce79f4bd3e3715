"""Install DuckDB's spatial extension from the duckdb-extension-spatial wheel, offline (the BigQuery emulator's
offline fix; the logic is workbench/localstack/duckdb_extensions.py, which `workbench up` also runs).

Run by scripts/bootstrap.sh; does nothing when the file is already in place or the package is absent.
"""

from __future__ import annotations

import sys

from workbench.localstack.duckdb_extensions import install_spatial


def main() -> int:
    installed = install_spatial()
    if installed:
        print(f"bootstrap: installed DuckDB spatial extension to {installed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
