#!/usr/bin/env bash
# The main job, end to end on the embedded local stack (no cloud account, no Docker):
#   bootstrap the virtualenv -> start the local stack -> publish a run to a file -> publish a run with malformed
#   events and duplicates to the local Pub/Sub emulator -> list the runs -> stop the stack.
# Usage: scripts/demo.sh [extra `workbench publish` options, e.g. --rate 2000 --count 20000]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
export NO_GCE_CHECK=true
wb=.venv/bin/workbench

$wb up --no-bigquery
trap '$wb down' EXIT
eval "$($wb env)"

mkdir -p output
$wb publish --rate 1000 --count 2000 --malformed-rate 0.05 --seed 1 --to output/demo-events.jsonl
$wb publish --rate 500 --duration 10s --malformed-rate 0.05 --duplicate-rate 0.01 --seed 2 "$@"
$wb runs --limit 5
