"""Running a load test on the test stack (conftest.prepare) and reading what it recorded."""

from __future__ import annotations

import csv

from endpoints import Endpoints
from eventmodel import resources as names
from publisher.manifest import run_dir
from reconcile.run import ReconcileTarget, reconcile
from workbench.loadtest_run import LoadtestOptions


def options(stack, **overrides) -> LoadtestOptions:
    base = LoadtestOptions(users=4, spawn_rate=4, run_time="3s", batch_size=5, user_rate=20, project=stack.project,
                           emulator=stack.pubsub, malformed_rate=0.08, duplicate_rate=0.02, seed=5)  # fmt: skip
    return LoadtestOptions(**{**base.__dict__, **overrides})


def locust_rows(run_id: str) -> list[dict[str, str]]:
    with (run_dir(run_id) / "locust_stats.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def aggregated(run_id: str) -> dict[str, str]:
    return next(r for r in locust_rows(run_id) if r["Name"] == "Aggregated")


def failures(run_id: str) -> list[dict[str, str]]:
    with (run_dir(run_id) / "locust_failures.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def drain_and_reconcile(stack, run_id: str):
    from workbench.pipeline_run.stream_launcher import LocalSettings, run

    args = ["--project", stack.project, "--output_root", str(stack.output), "--dataset", names.DATASET,
            "--bigquery_emulator_host", stack.bigquery, "--file_flush_seconds", "1"]  # fmt: skip
    assert run(args, LocalSettings(stop_when_idle=3)).state == "DONE"
    return reconcile(run_id, target(stack))


def target(stack) -> ReconcileTarget:
    return ReconcileTarget(output_root=str(stack.output), project=stack.project,
                           endpoints=Endpoints(bigquery=stack.bigquery, pubsub=stack.pubsub))  # fmt: skip
