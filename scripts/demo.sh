#!/usr/bin/env bash
# The main job, end to end on the embedded local stack (no cloud account, no Docker):
#   bootstrap the virtualenv -> start the local stack (Pub/Sub + BigQuery emulators, topics, DDL)
#   -> publish a run to a file -> publish a run with malformed events and duplicates to the local Pub/Sub
#   -> run the Beam pipeline until it is idle (GCS folder tree in ./output, BigQuery rows, dead letters)
#   -> list the runs -> stop the stack.
# Usage: scripts/demo.sh [extra `workbench publish` options for the Pub/Sub run, e.g. --rate 1000 --duration 30s]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
export NO_GCE_CHECK=true
wb=.venv/bin/workbench

$wb up
trap '$wb down' EXIT
eval "$($wb env)"

mkdir -p output
$wb publish --rate 1000 --count 2000 --malformed-rate 0.05 --seed 1 --to output/demo-events.jsonl
$wb publish --rate 500 --duration 10s --malformed-rate 0.05 --duplicate-rate 0.01 --seed 2 "$@"
$wb run-pipeline --stop-when-idle 5 --output-root output
$wb runs --limit 5
echo "files written under output/:"
find output -name '*.json' | sort | head -20
