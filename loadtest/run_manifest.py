"""The run manifest of a Locust run, in the format `workbench publish` writes, so that `workbench reconcile`
works after a load test exactly as after a publish.

Every Locust process that publishes (the local runner, or each worker) writes its own events-<N>.csv into the
run folder ($WORKBENCH_HOME/runs/<run id>/): N is 0 for a local run and worker index + 1 for a worker. The local
runner or the master writes manifest.json: "running" when the test starts, "completed" when Locust quits, with
counts tallied from the events CSVs. Workers take the master's run id from its spawn message. On several
machines the workers' CSVs are copied into the master's run folder before reconciling (docs/loadtest.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from generator.stream import GeneratorConfig
from publisher.manifest import MANIFEST_VERSION, EventLog, new_run_id, run_dir, tally, this_process, write_manifest


@dataclass
class ProcessState:
    run_id: str
    index: int
    log: Any = None  # EventLog of this process (None on the master, which publishes nothing)
    started_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_state: ProcessState | None = None


def _runner_kind(environment: Any) -> str:
    from locust.runners import MasterRunner, WorkerRunner

    runner = environment.runner
    if isinstance(runner, MasterRunner):
        return "master"
    if isinstance(runner, WorkerRunner):
        return "worker"
    return "local"


def name_run(environment: Any) -> None:
    """At start, on the local runner or the master: fix the run id (Locust copies the master's custom options,
    --run-id among them, to every worker in its spawn message, so workers need no --run-id of their own)."""
    if _runner_kind(environment) != "worker":
        process_state(environment)


def process_state(environment: Any) -> ProcessState:
    """This process's run id, index and events log (created on first use; on a worker, by its first user)."""
    global _state
    if _state is None:
        options = environment.parsed_options
        kind = _runner_kind(environment)
        if kind == "worker" and not options.run_id:
            raise SystemExit(
                "a Locust worker got no run id from its master: is the master running this locustfile? "
                "(else pass the same --run-id, or WORKBENCH_RUN_ID, to the master and every worker)"
            )
        run_id = options.run_id or new_run_id()
        options.run_id = run_id
        index = environment.runner.worker_index + 1 if kind == "worker" else 0
        _state = ProcessState(run_id, index)
        if kind != "master":
            _state.log = EventLog(run_dir(run_id), worker=index)
    return _state


def _generator(options: Any) -> dict[str, Any]:
    return GeneratorConfig(
        seed=options.seed, malformed_rate=options.malformed_rate, duplicate_rate=options.duplicate_rate
    ).as_dict() | {"type_weights": "per Locust user class (OrderUser 3, InventoryUser 3, SessionUser 4)"}


def write(environment: Any, status: str) -> None:
    """manifest.json of the run (local runner or master only)."""
    if _runner_kind(environment) == "worker":
        return
    state = process_state(environment)
    options = environment.parsed_options
    if state.started_at is None:
        state.started_at = datetime.now(UTC)
    counts = tally(state.run_id) if status != "running" else {}
    finished = None if status == "running" else datetime.now(UTC)
    write_manifest(
        state.run_id,
        {
            "run_id": state.run_id,
            "manifest_version": MANIFEST_VERSION,
            "status": status,
            "source": "locust",
            "publisher": this_process(),  # the local runner or master: run_state() tells a killed run from a live one
            "started_at": _iso(state.started_at),
            "finished_at": _iso(finished),
            "elapsed_s": round((finished - state.started_at).total_seconds(), 3) if finished else None,
            "target": {
                "kind": "pubsub",
                "project": options.project,
                "topic": options.topic,
                "emulator_host": options.emulator_host or None,
            },
            "plan": {
                "users": options.num_users,
                "spawn_rate": options.spawn_rate,
                "run_time": options.run_time,
                "shape": options.shape,
                "batch_size": options.batch_size,
                "workers": getattr(options, "expect_workers", None) if _runner_kind(environment) == "master" else 1,
            },
            "generator": _generator(options),
            "totals": {
                "sent": counts.get("published", 0) + counts.get("failed", 0),
                "published": counts.get("published", 0),
                "failed": counts.get("failed", 0),
                "in_flight": 0,
            },
            "counts": dict(counts),
            "errors": [],
        },
    )


def close_log(environment: Any) -> None:
    if _state is not None and _state.log is not None:
        _state.log.close()
        _state.log = None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
