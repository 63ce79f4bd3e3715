#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv) and apply the offline fixes the local stack needs.
# Idempotent and quick when nothing changed: the install is redone only when pyproject.toml changes.
# Usage: scripts/bootstrap.sh        (sourced or run; prints nothing on a no-op)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${WORKBENCH_PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

if [ ! -x "$venv/bin/python" ]; then
    echo "bootstrap: creating $venv"
    "$python" -m venv "$venv"
fi
stamp="$venv/.installed-$(cat "$root/pyproject.toml" "$root"/scripts/constraints*.txt 2>/dev/null | sha1sum | cut -c1-12 || true)"
if [ ! -f "$stamp" ]; then
    echo "bootstrap: installing packages (first run takes about a minute)"
    log="$venv/bootstrap.log"
    constraints=()
    [ -f "$root/scripts/constraints.txt" ] && constraints=(-c "$root/scripts/constraints.txt")
    if ! { "$venv/bin/python" -m pip install -q --upgrade pip \
           && "$venv/bin/python" -m pip install -q "${constraints[@]}" -e "$root[local,dev,loadtest]"; } >"$log" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -30 >&2
        echo "bootstrap: package install failed (full log: $log)" >&2
        exit 1
    fi
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi
# Offline fix for the BigQuery emulator: DuckDB would download its spatial extension at start; install the
# copy that ships inside the duckdb-extension-spatial wheel into DuckDB's extension directory instead.
"$venv/bin/python" "$root/scripts/install_duckdb_extensions.py"
