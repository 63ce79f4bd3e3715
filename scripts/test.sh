#!/usr/bin/env bash
# Run the whole test suite (lint, unit, integration, slow end-to-end) after bootstrapping the virtualenv.
# Integration tests start and stop their own local services (emulator processes) through pytest fixtures.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow" or scripts/test.sh tests/unit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
# Local mode never talks to Google: no metadata-server probe, no credential lookup.
export NO_GCE_CHECK=true
.venv/bin/ruff check .
# One worker per core, at most 4 (each worker starts its own session emulators). `-n 0` runs it serially (a later
# -n wins). Not more workers than cores: with one more, timing-bound end-to-end tests (a sink outage that must be
# seen, Locust's request count) failed under the load. The 20 slowest tests are listed at the end.
exec .venv/bin/python -m pytest -n auto --maxprocesses 4 --durations 20 "$@"
