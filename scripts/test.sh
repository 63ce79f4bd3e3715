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
# One worker more than there are cores, at most 4 (each worker starts its own session emulators): the end-to-end
# tests mostly wait on emulators, pipelines and drains (with one worker per core the CPUs were busy ~45% of the
# run). The 20 slowest tests are listed at the end. `-n 0` runs it serially (a later -n wins).
workers=$(( $(nproc) + 1 ))
(( workers > 4 )) && workers=4
exec .venv/bin/python -m pytest -n "$workers" --durations 20 "$@"
