#!/usr/bin/env bash
# The main job, end to end on the embedded local stack (no cloud account, no Docker):
#   bootstrap the virtualenv -> `workbench demo`: start the local stack if it is not up (Pub/Sub + BigQuery
#   emulators, topics, DDL) -> the Beam pipeline in the background -> publish 5,000 events at 500/s with malformed
#   events and duplicates -> the pipeline drains into ./output (the GCS tree), BigQuery and the dead letters
#   -> `workbench reconcile` proves every event arrived where it belongs -> stop what the demo started.
# The exit status is reconcile's: 0 everything matched, 1 a mismatch, 2 it could not reconcile.
# Usage: scripts/demo.sh [workbench demo options, e.g. --chaos, --rate 1000 --count 20000]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
export NO_GCE_CHECK=true
exec .venv/bin/workbench demo "$@"
