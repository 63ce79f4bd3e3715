"""The rate-controlled publisher behind `workbench publish`.

One plan, N workers. Each worker owns a deterministic substream of the generator (worker i of N), paces
itself on its share of the rate profile's integral, hands messages to its sink and records every outcome
in its own manifest file. Workers run as a thread when N == 1 and as spawned processes otherwise (the
Pub/Sub client is CPU-bound: one process tops out near 20-27k msg/s). The parent merges the workers'
snapshots for the live view and keeps manifest.json current.

Stopping: the first Ctrl-C (or stop()) asks every worker to stop generating, flush its sink and close its
manifest file, so the manifest ends consistent and marked "interrupted"; a second Ctrl-C exits at once.

    plan = PublishPlan(run_id=new_run_id(), rate=500, count=10_000, target=PubSubTarget(...))
    result = publish(plan)            # blocks; result.totals, result.status
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from generator.stream import EventStream, GeneratorConfig
from publisher.manifest import MANIFEST_VERSION, EventLog, iter_objects, run_dir, write_manifest
from publisher.rate import parse_profile, scaled
from publisher.s3 import S3Target, SinkContext, manifest_fields
from publisher.sinks import FileTarget, PubSubTarget, make_sink, target_kind
from publisher.stats import LatencyHistogram, RunTotals, WorkerSnapshot

REPORT_EVERY_S = 0.25
MANIFEST_EVERY_S = 1.0
MAX_BATCH = 1000  # messages generated per pacing step: large enough to amortise, small enough to stay smooth
DRAIN_TIMEOUT_S = 60.0  # how long a stopping worker waits for the sink to confirm what it already sent


@dataclass(frozen=True)
class PublishPlan:
    run_id: str
    target: FileTarget | PubSubTarget | S3Target
    rate: float
    profile: str = "constant"
    count: int | None = None  # stop after this many messages (all workers together)
    duration: float | None = None  # stop after this many seconds
    workers: int = 1
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)

    def check(self) -> None:
        """Raise ValueError naming the fix for every bad combination, before anything starts."""
        parse_profile(self.profile, self.rate)
        self.generator.validate()
        if self.count is not None and self.count <= 0:
            raise ValueError(f"--count must be a positive number of messages, got {self.count}")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"--duration must be longer than 0 seconds, got {self.duration:g}")
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.workers > 1 and isinstance(self.target, FileTarget):
            raise ValueError("--workers applies to Pub/Sub; a file is written by one process (drop --workers)")
        if isinstance(self.target, S3Target):
            self.target.check(self.count, self.workers)

    def worker_quota(self, worker: int) -> int | None:
        if self.count is None:
            return None
        share, extra = divmod(self.count, self.workers)
        return share + (1 if worker < extra else 0)


@dataclass
class PublishResult:
    run_id: str
    status: str  # completed | interrupted | failed
    elapsed: float
    totals: RunTotals
    counts: dict[str, int]

    @property
    def achieved_rate(self) -> float:
        """Messages per second over the time the workers were pacing (start-up excluded)."""
        active = self.totals.active_s or self.elapsed
        return self.totals.sent / active if active > 0 else 0.0


def run_worker(plan: PublishPlan, worker: int, reports: Any, stop: Any, clock: Callable[[], float] = time.time) -> None:
    """Publish one worker's share of the plan. Never raises: an error ends the worker and is reported."""
    snapshot = WorkerSnapshot(worker=worker)
    latency = LatencyHistogram()
    log = EventLog(run_dir(plan.run_id), worker)
    lock = threading.Lock()

    def on_done(message: Any, outcome: str, message_id: str | None, seconds: float | None) -> None:
        log.record(message, outcome, message_id)
        with lock:
            if outcome == "published":
                snapshot.published += 1
                if seconds is not None:
                    latency.record(seconds)
            else:
                snapshot.failed += 1

    started: float | None = None

    def report(finished: bool = False) -> None:
        with lock:
            if started is not None:
                snapshot.active_s = time.monotonic() - started
            snapshot.latency = latency.sparse()
            snapshot.finished = finished
            snapshot.counts = log.snapshot_counts()
            reports.put(WorkerSnapshot(**asdict(snapshot)))

    sink = None
    try:
        profile = scaled(parse_profile(plan.profile, plan.rate), 1 / plan.workers)
        quota = plan.worker_quota(worker)
        stream = EventStream(plan.generator, plan.run_id, worker=worker, workers=plan.workers, clock=clock)
        context = SinkContext(plan.run_id, run_dir(plan.run_id), quota, plan.generator.seed, worker)
        sink = make_sink(plan.target, on_done, context)
        started = time.monotonic()
        next_report = started
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if plan.duration is not None and elapsed >= plan.duration:
                break
            if quota is not None and snapshot.sent >= quota:
                break
            due = int(profile.due(elapsed)) - snapshot.sent
            if quota is not None:
                due = min(due, quota - snapshot.sent)
            snapshot.target = min(profile.due(elapsed), quota) if quota is not None else profile.due(elapsed)
            snapshot.target_rate = profile.rate(elapsed)
            if due > 0:
                for message in stream.take(min(due, MAX_BATCH)):
                    sink.send(message)
                    snapshot.sent += 1  # only this thread writes `sent`
            else:
                # Sleep about one message interval (at most 5 ms) so low rates stay smooth and idle costs little.
                time.sleep(min(0.005, max(0.0005, 1.0 / max(profile.rate(elapsed), 1.0))))
            if time.monotonic() >= next_report:
                report()
                next_report = time.monotonic() + REPORT_EVERY_S
    except BaseException as exc:  # report and end this worker; the parent marks the run failed
        snapshot.error = f"{type(exc).__name__}: {exc}"
    finally:
        if sink is not None:
            try:
                sink.close(DRAIN_TIMEOUT_S)
            except Exception as exc:
                snapshot.error = snapshot.error or f"closing the sink: {type(exc).__name__}: {exc}"
        log.close()
        report(finished=True)


def _process_worker(plan: PublishPlan, worker: int, reports: Any, stop: Any) -> None:
    # The parent owns Ctrl-C: it sets `stop` so that children drain instead of dying mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_worker(plan, worker, reports, stop)


class Publisher:
    """Runs a plan's workers and merges their reports. `publish()` below is the one-call form."""

    def __init__(self, plan: PublishPlan) -> None:
        plan.check()
        self.plan = plan
        self._snapshots: dict[int, WorkerSnapshot] = {}
        self._started_at = datetime.now(UTC)
        self._started = time.monotonic()
        if plan.workers == 1:
            self._reports: Any = queue.Queue()
            self._stop: Any = threading.Event()
            self._workers: list[Any] = [
                threading.Thread(
                    target=run_worker, args=(plan, 0, self._reports, self._stop), name="publish-worker-0", daemon=True
                )
            ]
        else:
            context = multiprocessing.get_context("spawn")  # no fork after gRPC has started threads
            self._reports = context.Queue()
            self._stop = context.Event()
            self._workers = [
                context.Process(
                    target=_process_worker,
                    args=(plan, i, self._reports, self._stop),
                    name=f"publish-worker-{i}",
                    daemon=True,
                )
                for i in range(plan.workers)
            ]

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def totals(self) -> RunTotals:
        return RunTotals.merge(list(self._snapshots.values()))

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _drain(self, timeout: float) -> None:
        try:
            snapshot = self._reports.get(timeout=timeout)
            while True:
                self._snapshots[snapshot.worker] = snapshot
                snapshot = self._reports.get_nowait()
        except queue.Empty:
            pass

    def _finished(self) -> bool:
        return len(self._snapshots) == len(self._workers) and all(s.finished for s in self._snapshots.values())

    def _counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for s in self._snapshots.values():
            counts.update(s.counts)
        return dict(sorted(counts.items()))

    def _write_manifest(self, status: str) -> None:
        totals = self.totals()
        plan = self.plan
        target = asdict(plan.target) | {"kind": target_kind(plan.target)}
        if isinstance(plan.target, S3Target):
            written = None if status == "running" else list(iter_objects(plan.run_id))
            target |= manifest_fields(plan.target, plan.run_id, written)
        write_manifest(
            plan.run_id,
            {
                "run_id": plan.run_id,
                "manifest_version": MANIFEST_VERSION,
                "status": status,
                "started_at": self._started_at.isoformat().replace("+00:00", "Z"),
                "finished_at": None if status == "running" else datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "elapsed_s": round(self.elapsed(), 3),
                "active_s": round(totals.active_s, 3),
                "target": target,
                "plan": {
                    "rate": plan.rate,
                    "profile": plan.profile,
                    "count": plan.count,
                    "duration_s": plan.duration,
                    "workers": plan.workers,
                },
                "generator": plan.generator.as_dict(),
                "totals": {
                    "sent": totals.sent,
                    "published": totals.published,
                    "failed": totals.failed,
                    "in_flight": totals.in_flight,
                },
                "counts": self._counts(),
                "errors": totals.errors,
            },
        )

    def run(self, on_progress: Callable[[Publisher], None] | None = None) -> PublishResult:
        self._write_manifest("running")
        for w in self._workers:
            w.start()
        next_manifest = time.monotonic() + MANIFEST_EVERY_S
        while not self._finished():
            self._drain(REPORT_EVERY_S)
            if not any(w.is_alive() for w in self._workers):
                self._drain(0.5)  # collect the last reports of workers that just ended
                break
            if on_progress:
                on_progress(self)
            if time.monotonic() >= next_manifest:
                self._write_manifest("running")
                next_manifest = time.monotonic() + MANIFEST_EVERY_S
        for w in self._workers:
            w.join(timeout=5)
        totals = self.totals()
        if totals.errors or not self._finished():
            status = "failed"
        elif self._stop.is_set():
            status = "interrupted"
        else:
            status = "completed"
        self._write_manifest(status)
        if on_progress:
            on_progress(self)
        return PublishResult(self.plan.run_id, status, self.elapsed(), totals, self._counts())


def publish(
    plan: PublishPlan,
    on_progress: Callable[[Publisher], None] | None = None,
) -> PublishResult:
    """Run a plan to its end; see run_with_sigint for Ctrl-C."""
    return run_with_sigint(Publisher(plan), on_progress)


def run_with_sigint(publisher: Publisher, on_progress: Callable[[Publisher], None] | None = None) -> PublishResult:
    """Run a publisher; the first SIGINT drains and stops cleanly, a second one raises KeyboardInterrupt."""
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        if publisher.stopping:
            raise KeyboardInterrupt
        publisher.stop()

    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        return publisher.run(on_progress)
    finally:
        if in_main_thread:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, previous)
