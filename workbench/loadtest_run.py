"""`workbench loadtest` as a library call: Locust headless over loadtest/locustfile.py, on this machine.

One local Locust process, or with workers=N one master and N worker processes on loopback, all with the same
run id, reports (Locust's CSV and HTML) written into the run folder, and the run's manifest completed once every
process has ended (the counts tallied from every process's events CSV), so that `workbench reconcile RUN_ID`
checks a load test exactly as it checks a publish run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from eventmodel import resources as names
from loadtest.run_manifest import publish_errors
from publisher.manifest import load_manifest, new_run_id, run_dir, tally, write_manifest
from publisher.rate import parse_duration
from workbench import extras
from workbench.errors import WorkbenchError
from workbench.localstack.ports import free_port

LOCUSTFILE = Path(__file__).resolve().parent.parent / "loadtest" / "locustfile.py"
GRACE_S = 60.0  # beyond the run time: spawning, stopping, and the workers' last reports


@dataclass
class LoadtestOptions:
    users: int = 10
    spawn_rate: float = 10.0
    run_time: str = "30s"
    shape: str = "steady"
    workers: int = 0  # 0: one local process; N: a master and N workers
    batch_size: int = 20
    user_rate: float = 0.0  # batches per second per user; 0 = flat out
    malformed_rate: float = 0.05
    duplicate_rate: float = 0.01
    seed: int = 0
    run_id: str | None = None
    topic: str = names.TOPIC
    project: str = names.DEFAULT_PROJECT
    emulator: str | None = None  # HOST:PORT; None for real Pub/Sub (ADC)
    extra: list[str] = field(default_factory=list)  # further Locust flags


def _seconds(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise WorkbenchError(f"--run-time: {exc}", "e.g. --run-time 30s, 5m or 1h30m") from None


def locust_argv(options: LoadtestOptions, run_id: str, role: str, master_port: int | None = None) -> list[str]:
    """The command line of one Locust process (role: local, master or worker)."""
    common = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
        "--run-id", run_id, "--topic", options.topic, "--project", options.project,
        "--emulator-host", options.emulator or "", "--malformed-rate", str(options.malformed_rate),
        "--duplicate-rate", str(options.duplicate_rate), "--seed", str(options.seed),
        "--batch-size", str(options.batch_size), "--user-rate", str(options.user_rate), "--shape", options.shape,
    ]  # fmt: skip
    if role == "worker":  # everything else, the run id included, comes from the master's spawn message
        return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", names.LOCAL_HOST,
                "--master-port", str(master_port)]  # fmt: skip
    folder = run_dir(run_id)
    run = ["--headless", "-u", str(options.users), "-r", str(options.spawn_rate), "-t", options.run_time,
           "--csv", str(folder / "locust"), "--html", str(folder / "locust.html"), "--only-summary"]  # fmt: skip
    if role == "master":
        run += ["--master", "--master-bind-host", names.LOCAL_HOST, "--master-bind-port", str(master_port),
                "--expect-workers", str(options.workers)]  # fmt: skip
    return [*common, *run, *options.extra]


def run_loadtest(options: LoadtestOptions) -> tuple[str, int]:
    """Run the load test to its end; returns (run id, Locust's exit status: 0 clean, 1 failures seen)."""
    extras.require("loadtest", "`workbench loadtest`")
    if options.users < 1:
        raise WorkbenchError(f"--users must be at least 1, got {options.users}", "e.g. --users 10")
    if options.workers < 0:
        raise WorkbenchError(f"--workers must be 0 or more, got {options.workers}", "0 runs one local process")
    run_time = _seconds(options.run_time)
    run_id = options.run_id or new_run_id()
    if run_dir(run_id).exists():
        raise WorkbenchError(f"run {run_id!r} already exists", "choose another --run-id, or leave it out")
    run_dir(run_id).mkdir(parents=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes: list[subprocess.Popen] = []
    try:
        if options.workers:
            port = free_port(names.LOCAL_HOST)
            processes.append(subprocess.Popen(locust_argv(options, run_id, "master", port), env=env))
            time.sleep(0.5)  # the master binds before the workers connect (they retry, this only saves a retry)
            log = run_dir(run_id) / "workers.log"
            with log.open("ab") as sink:
                argv = locust_argv(options, run_id, "worker", port)
                for _ in range(options.workers):
                    processes.append(subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT))
        else:
            processes.append(subprocess.Popen(locust_argv(options, run_id, "local"), env=env))
        deadline = time.monotonic() + run_time + GRACE_S
        code = processes[0].wait(max(1.0, deadline - time.monotonic()))
        for worker in processes[1:]:
            worker.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise WorkbenchError(
            f"Locust did not finish within {run_time + GRACE_S:g} s",
            f"look at the output above and {run_dir(run_id)}; a worker that cannot reach its master waits forever",
        ) from None
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(15)
    complete_manifest(run_id)
    return run_id, code


def loadtest_as_asked(*, then_reconcile: bool, output_root: str, run_time: float, project: str | None,
                      emulator: str | None, locust_args: tuple[str, ...], **settings) -> int:  # fmt: skip
    """`workbench loadtest`: the load test with the command's options (run_time in seconds; the rest of
    `settings` are LoadtestOptions fields), its reports named, then reconciled if asked; the exit status (Locust's,
    or the reconcile's)."""
    from eventmodel.resources import resolve_project
    from workbench import terminal
    from workbench.localstack.stack import local_endpoints

    extras.require("loadtest", "`workbench loadtest`")  # before anything is printed or started
    endpoint = local_endpoints(pubsub=emulator).pubsub
    # Locust reads whole seconds written 20, 20s or 1h20m: every duration this CLI accepts, in a form it reads.
    whole_seconds = f"{max(1, round(run_time))}s"
    options = LoadtestOptions(**settings, run_time=whole_seconds, emulator=endpoint, extra=list(locust_args),
                              project=resolve_project(project, names.DEFAULT_PROJECT))  # fmt: skip
    where = f"emulator {endpoint}" if endpoint else "real Pub/Sub (Application Default Credentials)"
    terminal.info(f"Locust: {options.users} users, {options.shape}, {whole_seconds}, "
                  f"{options.workers or 'no'} workers, to {options.topic} on {where}")  # fmt: skip
    run_id, code = run_loadtest(options)
    folder = run_dir(run_id)
    terminal.info(f"reports: {folder / 'locust.html'} and {folder}/locust_stats.csv; manifest: {folder}")
    if code != 0:
        terminal.warning("Locust saw failures (see the statistics above); reconcile tells what reached the sinks")
    if not then_reconcile:
        terminal.info(
            f"check it end to end once the pipeline has drained: workbench reconcile {run_id} --wait 60"
            + ("" if output_root == "./output" else f" --output-root {output_root}")
        )
        return code
    from workbench.reconcile_run import run_reconcile

    report = run_reconcile(run_id, output_root=output_root, project=options.project, wait_s=60)
    return report.exit_code


def complete_manifest(run_id: str) -> None:
    """Recount the run from every process's events CSV now that all of them are closed."""
    manifest = load_manifest(run_id)
    if manifest is None:
        raise WorkbenchError(
            f"Locust ended without writing {run_dir(run_id) / 'manifest.json'}",
            "look at Locust's output above (a bad option, the emulator not reachable, a locustfile error)",
        )
    counts = tally(run_id)
    manifest["counts"] = dict(counts)
    manifest["totals"] = {
        "sent": counts.get("published", 0) + counts.get("failed", 0),
        "published": counts.get("published", 0),
        "failed": counts.get("failed", 0),
        "in_flight": 0,
    }
    # The master wrote its own before the workers had closed their files: recounted here, like the totals.
    manifest["publish_errors"] = publish_errors(run_id)
    if manifest.get("status") == "running":
        manifest["status"] = "interrupted"  # Locust never reached its quitting hook
    write_manifest(run_id, manifest)
