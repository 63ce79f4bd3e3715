"""The run manifest of a Locust run, in the format `workbench publish` writes, so that `workbench reconcile`
works after a load test exactly as after a publish.

Every Locust process that publishes (the local runner, or each worker) writes its own events-<N>.csv into the
run folder ($WORKBENCH_HOME/runs/<run id>/): N is 0 for a local run and worker index + 1 for a worker. The local
runner or the master writes manifest.json: "running" when the test starts, "completed" when Locust quits, with
counts tallied from the events CSVs. Workers take the master's run id from its spawn message. On several
machines the workers' CSVs are copied into the master's run folder before reconciling (docs/loadtest.md).

Beside it, each process that saw a Publish fail writes publish-errors-<N>.csv (AttemptLog): one line per message
per failed attempt, "retried" when another attempt followed, "failed" for the last one of a message that was never
confirmed. manifest.json's "publish_errors" sums them per gRPC code (publish_errors()).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from generator.stream import GeneratorConfig, parse_malformed_weights
from publisher.manifest import MANIFEST_VERSION, EventLog, new_run_id, run_dir, tally, this_process, write_manifest


@dataclass
class ProcessState:
    run_id: str
    index: int
    log: Any = None  # EventLog of this process (None on the master, which publishes nothing)
    attempts: Any = None  # AttemptLog of this process (None on the master)
    started_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_state: ProcessState | None = None


def runner_kind(environment: Any) -> str:
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
    if runner_kind(environment) != "worker":
        process_state(environment)


def process_state(environment: Any) -> ProcessState:
    """This process's run id, index and events log (created on first use; on a worker, by its first user)."""
    global _state
    if _state is None:
        options = environment.parsed_options
        kind = runner_kind(environment)
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
            _state.attempts = AttemptLog(run_dir(run_id), index)
    return _state


def _generator(options: Any) -> dict[str, Any]:
    return GeneratorConfig(
        seed=options.seed,
        malformed_rate=options.malformed_rate,
        malformed_weights=parse_malformed_weights(options.malformed_kinds),
        duplicate_rate=options.duplicate_rate,
    ).as_dict() | {"type_weights": "per Locust user class (OrderUser 3, InventoryUser 3, SessionUser 4)"}


def write(environment: Any, status: str) -> None:
    """manifest.json of the run (local runner or master only)."""
    if runner_kind(environment) == "worker":
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
                "workers": getattr(options, "expect_workers", None) if runner_kind(environment) == "master" else 1,
            },
            "generator": _generator(options),
            "totals": {
                "sent": counts.get("published", 0) + counts.get("failed", 0),
                "published": counts.get("published", 0),
                "failed": counts.get("failed", 0),
                "in_flight": 0,
            },
            "counts": dict(counts),
            "publish_errors": publish_errors(state.run_id),
            "errors": [],
        },
    )


def close_log(environment: Any) -> None:
    if _state is not None and _state.log is not None:
        _state.log.close()
        _state.log = None
    if _state is not None and _state.attempts is not None:
        _state.attempts.close()
        _state.attempts = None


ATTEMPT_COLUMNS = ("event_id", "attempt", "code", "detail", "outcome", "attempt_ms", "wait_ms")
RETRIED = "retried"


class AttemptLog:
    """publish-errors-<N>.csv: every failed Publish attempt of one process, per message; created at the first one,
    so a run without errors has none. wait_ms is the backoff drawn before the next attempt (0 after the last)."""

    def __init__(self, directory: Path, index: int) -> None:
        self.path = directory / f"publish-errors-{index}.csv"
        self._file: Any = None
        self._writer: Any = None

    def record(self, message: Any, attempt: int, error: Any, outcome: str, attempt_ms: float, wait_ms: float) -> None:
        if self._file is None:
            self._file = self.path.open("w", newline="", buffering=1 << 16)
            self._writer = csv.writer(self._file)
            self._writer.writerow(ATTEMPT_COLUMNS)
        elif self._file.closed:  # after the process closed its logs: the events CSV is closed too
            return
        self._writer.writerow((message.event_id, attempt, error.code.name, error.details, outcome,
                               round(attempt_ms, 1), round(wait_ms, 1)))  # fmt: skip

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def iter_attempts(run_id: str) -> Iterator[dict[str, str]]:
    for path in sorted(run_dir(run_id).glob("publish-errors-*.csv")):
        with path.open(newline="") as f:
            yield from csv.DictReader(f)


def publish_errors(run_id: str) -> dict[str, Any]:
    """manifest.json's "publish_errors": failed attempts that were retried and messages that finally failed, per
    gRPC code, and how many messages were confirmed after a retried attempt (each may exist twice in Pub/Sub)."""
    retried: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    retried_ids: set[str] = set()
    failed_ids: set[str] = set()
    for row in iter_attempts(run_id):
        if row["outcome"] == RETRIED:
            retried[row["code"]] += 1
            retried_ids.add(row["event_id"])
        else:
            failed[row["code"]] += 1
            failed_ids.add(row["event_id"])
    return {
        "retried": dict(sorted(retried.items())),
        "failed": dict(sorted(failed.items())),
        "confirmed_after_retry": len(retried_ids - failed_ids),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
