"""The rate-controlled publisher behind `workbench publish`.

One plan, N workers. Each worker owns a deterministic substream of the generator (worker i of N), paces
itself on its share of the rate profile's integral, hands messages to its sink and records every outcome
in its own manifest file. Workers run as a thread when N == 1 and as spawned processes otherwise (the
Pub/Sub client is CPU-bound: one process tops out near 20-27k msg/s). The parent merges the workers'
snapshots for the live view and keeps manifest.json current.

Stopping: the first Ctrl-C, SIGTERM or SIGHUP (or stop()) asks every worker to stop generating, flush its sink
and close its events file, so the manifest ends consistent and marked "interrupted". A second signal (or abort())
stops at once: each worker closes its events file without waiting for what is in flight, and the manifest, still
marked "interrupted", takes its totals from the events files (what is in flight is sent minus recorded outcomes).
Worker processes ignore these signals (a terminal's Ctrl-C and `timeout` signal the whole process group): the
parent alone decides, and a worker whose parent is gone drains and ends by itself.

With --duration, the run publishes exactly the profile's integral over the duration, rounded (rate x duration
for a constant rate), split between the workers like --count.

Phases (`workbench check`'s battery of scenarios as ONE run, so one reconcile judges it and splits its verdict by
scenario): a plan with `phases` publishes them one after the other. Each phase has its own rate and profile, paced
from its own start; its own bound (count, duration or both, as a run's), split between the workers like --count; and
its own generator settings (a seed of its own: see PublishPlan.check). Every message carries the phase's name as its
scenario tag (the events CSVs' `scenario` column). The plan's own rate, profile, count, duration and generator do
not apply. Worker processes build every phase's stream first and start the first phase together; after that each
moves on to the next phase on its own, without waiting for the others. A stop works as in any run: the phase in
progress ends where it is, the later phases are never published, and the manifest ends "interrupted".
manifest.json's "phases" lists, per phase in order: name, rate, profile, count, duration_s, planned (the messages it
sends unless stopped), seed, generator (GeneratorConfig.as_dict), started_at (the first worker's start of it) and
finished_at (the last worker's end of it: its last message handed to the sink, or the stop; null while a worker may
still send for it), both ISO-8601 UTC wall clock, and its sent, published and failed. For a run of phases, "plan"
holds only the workers (the other keys are null) and "generator" only the run's id namespace (ids_of); each phase's
settings are in its entry.

    plan = PublishPlan(run_id=new_run_id(), rate=500, count=10_000, target=PubSubTarget(...))
    result = publish(plan)            # blocks; result.totals, result.status

    phases = (Phase("steady", rate=500, duration=60, generator=GeneratorConfig(seed=1)),
              Phase("malformed", rate=200, count=2_000, generator=GeneratorConfig(seed=2, malformed_rate=1.0)))
    result = publish(PublishPlan(run_id=new_run_id(), target=PubSubTarget(...), phases=phases))
"""

from __future__ import annotations

import contextlib
import math
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
from publisher.manifest import (
    COMPLETED,
    FAILED,
    INTERRUPTED,
    MANIFEST_VERSION,
    PUBLISHED,
    RUNNING,
    EventLog,
    iter_objects,
    recount,
    run_dir,
    this_process,
    write_manifest,
)
from publisher.rate import RateProfile, parse_profile, scaled
from publisher.s3 import S3Target, SinkContext, manifest_fields
from publisher.sinks import FileTarget, PubSubTarget, make_sink, target_kind
from publisher.stats import LatencyHistogram, PhaseTotals, RunTotals, WorkerSnapshot, merge_phases

REPORT_EVERY_S = 0.25
MANIFEST_EVERY_S = 1.0
MAX_BATCH = 1000  # messages generated per pacing step: large enough to amortise, small enough to stay smooth
DRAIN_TIMEOUT_S = 60.0  # how long a stopping worker waits for the sink to confirm what it already sent
# After a forced stop: how long the parent waits for the workers' last numbers before it ends without them.
ABORT_WAIT_S = 3.0
# Worker processes of a run of phases start pacing together; a worker that died while building its streams never
# arrives, so the others go after this long.
START_WAIT_S = 120.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _check_bounds(count: int | None, duration: float | None, flag: str = "--") -> None:
    if count is not None and count <= 0:
        raise ValueError(f"{flag}count must be a positive number of messages, got {count}")
    if duration is not None and not duration > 0:
        raise ValueError(f"{flag}duration must be longer than 0 seconds, got {duration:g}")


def _total(profile: str, rate: float, count: int | None, duration: float | None) -> int | None:
    """count, or the profile's integral over duration rounded half up, whichever is smaller; None for neither."""
    bounds = []
    if count is not None:
        bounds.append(count)
    if duration is not None:
        bounds.append(math.floor(parse_profile(profile, rate).due(duration) + 0.5))
    return min(bounds) if bounds else None


def _share(total: int | None, workers: int, worker: int) -> int | None:
    """Worker `worker`'s part of `total` messages: equal shares, the first workers one more for the remainder."""
    if total is None:
        return None
    share, extra = divmod(total, workers)
    return share + (1 if worker < extra else 0)


@dataclass(frozen=True)
class Phase:
    """One phase of a run (a `workbench check` scenario): its own rate (msgs/s, all workers together) and profile,
    paced from the phase's own start; its bound, count and/or duration (seconds) as a run's; its own generator
    settings. Its messages carry its name as their scenario tag."""

    name: str
    rate: float
    count: int | None = None
    duration: float | None = None
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    profile: str = "constant"

    def check(self) -> None:
        """Raise ValueError naming the phase and the fix for its first bad value."""
        if type(self.name) is not str or not self.name.strip():
            raise ValueError(f"every phase needs a name (its events are tagged with it), got {self.name!r}")
        if self.count is None and self.duration is None:
            raise ValueError(f"phase {self.name!r} has no end: give it a count or a duration (or both)")
        try:
            parse_profile(self.profile, self.rate)
            _check_bounds(self.count, self.duration, flag="")
            self.generator.validate()
        except ValueError as exc:
            raise ValueError(f"phase {self.name!r}: {exc}") from None

    def total(self) -> int:
        """How many messages the phase sends unless stopped (as PublishPlan.total for a run)."""
        total = _total(self.profile, self.rate, self.count, self.duration)
        assert total is not None, "check() requires a count or a duration"
        return total


@dataclass(frozen=True)
class PublishPlan:
    run_id: str
    target: FileTarget | PubSubTarget | S3Target
    rate: float = 0.0  # required without phases (check() says so)
    profile: str = "constant"
    count: int | None = None  # stop after this many messages (all workers together)
    duration: float | None = None  # stop after this many seconds
    workers: int = 1
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    phases: tuple[Phase, ...] = ()  # published in order instead of rate/profile/count/duration/generator

    def check(self) -> None:
        """Raise ValueError naming the fix for every bad combination, before anything starts."""
        if self.phases:
            self._check_phases()
        else:
            parse_profile(self.profile, self.rate)
            self.generator.validate()
            _check_bounds(self.count, self.duration)
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.workers > 1 and isinstance(self.target, FileTarget):
            raise ValueError("--workers applies to Pub/Sub; a file is written by one process (drop --workers)")
        if isinstance(self.target, S3Target):
            self.target.check(self.count, self.workers)

    def _check_phases(self) -> None:
        if self.count is not None or self.duration is not None:
            raise ValueError(
                "a run of phases ends after its last phase: drop the run's count and duration and bound each phase "
                "with its own"
            )
        if isinstance(self.target, S3Target):
            raise ValueError("phases publish to Pub/Sub or a file: write history to S3 with a run without phases")
        seen: dict[str, Phase] = {}
        seeds: dict[int, str] = {}
        for phase in self.phases:
            if not isinstance(phase, Phase):
                raise ValueError(f"phases must be publisher.run.Phase values, got {type(phase).__name__}")
            phase.check()
            if phase.name in seen:
                raise ValueError(f"two phases are named {phase.name!r}: give each its own name (it tags its events)")
            seen[phase.name] = phase
            # A worker's event ids are drawn from the seed, the id namespace and the worker (generator.stream): two
            # phases of one seed would send the same ids (and the same entities) as different events.
            seed = phase.generator.seed
            if seed in seeds:
                raise ValueError(
                    f"phases {seeds[seed]!r} and {phase.name!r} both have seed {seed}: give each phase its own seed "
                    "(with one seed they would send the same event ids for different events)"
                )
            seeds[seed] = phase.name
        namespaces = {phase.generator.ids_of for phase in self.phases}
        if len(namespaces) > 1:
            raise ValueError(
                f"the phases draw their event ids from different runs ({', '.join(sorted(map(str, namespaces)))}): a "
                "run has one id namespace, so give every phase the same ids_of"
            )

    def total(self) -> int | None:
        """How many messages the run sends: --count, or the profile's integral over --duration rounded half up
        (rate x duration for a constant rate), whichever is smaller; None when neither bounds the run. With
        phases, the sum of the phases' totals."""
        if self.phases:
            return sum(phase.total() for phase in self.phases)
        return _total(self.profile, self.rate, self.count, self.duration)

    def worker_quota(self, worker: int) -> int | None:
        if self.phases:
            return sum(_share(phase.total(), self.workers, worker) or 0 for phase in self.phases)
        return _share(self.total(), self.workers, worker)

    def legs(self, worker: int) -> list[_Leg]:
        """What worker `worker` publishes, in order: one leg per phase, or the one leg of a run without phases."""
        if not self.phases:
            profile = scaled(parse_profile(self.profile, self.rate), 1 / self.workers)
            return [_Leg("", profile, self.worker_quota(worker), self.duration, self.generator)]
        return [
            _Leg(
                phase.name,
                scaled(parse_profile(phase.profile, phase.rate), 1 / self.workers),
                _share(phase.total(), self.workers, worker),
                phase.duration,
                phase.generator,
            )
            for phase in self.phases
        ]


@dataclass(frozen=True)
class _Leg:
    """One worker's part of one phase (name "" for a run without phases)."""

    name: str
    profile: RateProfile  # this worker's share of the rate
    quota: int | None
    duration: float | None
    generator: GeneratorConfig


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


def run_worker(
    plan: PublishPlan,
    worker: int,
    reports: Any,
    stop: Any,
    clock: Callable[[], float] = time.time,
    abort: Any = None,
    parent_alive: Callable[[], bool] | None = None,
    ready: Any = None,
) -> None:
    """Publish one worker's share of the plan. Never raises: an error ends the worker and is reported.

    stop: drain and end. abort (set together with stop): close the events file first, without waiting for what
    is in flight. parent_alive: a worker process checks it a few times a second and drains when it says False.
    ready: a shared count of the workers ready to pace (a run of phases with worker processes): each waits for the
    others, so that a phase starts at once on every worker and its rate is the sum of theirs from its start."""
    snapshot = WorkerSnapshot(worker=worker)
    latency = LatencyHistogram()
    log = EventLog(run_dir(plan.run_id), worker)
    lock = threading.Lock()

    phased = bool(plan.phases)

    def on_done(message: Any, outcome: str, message_id: str | None, seconds: float | None) -> None:
        if not log.record(message, outcome, message_id):
            return  # after a forced stop: counted as in flight, like the CSV says
        with lock:
            if outcome == PUBLISHED:
                snapshot.published += 1
                if seconds is not None:
                    latency.record(seconds)
            else:
                snapshot.failed += 1
            if phased:  # by the message's own tag: outcomes of a phase keep arriving after the worker left it
                phase_counts = snapshot.phase_published if outcome == PUBLISHED else snapshot.phase_failed
                phase_counts[message.scenario] = phase_counts.get(message.scenario, 0) + 1

    started: float | None = None
    next_report = time.monotonic()

    def report(finished: bool = False) -> None:
        with lock:
            if started is not None:
                snapshot.active_s = time.monotonic() - started
            snapshot.latency = latency.sparse()
            snapshot.finished = finished
            snapshot.counts = log.snapshot_counts()
            reports.put(WorkerSnapshot(**asdict(snapshot)))

    def pace(leg: _Leg, stream: EventStream) -> bool:
        """Send one leg, paced from its own start. False when the parent is gone (nobody will stop this worker)."""
        nonlocal next_report
        profile, quota, base = leg.profile, leg.quota, snapshot.sent
        if leg.name:
            with lock:
                snapshot.phase = leg.name
                snapshot.phase_started[leg.name] = time.time()
                snapshot.phase_sent[leg.name] = 0
        began = time.monotonic()
        try:
            while not stop.is_set():
                elapsed = time.monotonic() - began
                sent = snapshot.sent - base
                if quota is not None and sent >= quota:
                    break
                if leg.duration is not None and elapsed >= leg.duration:
                    # The last due messages go now, so that the leg holds the whole integral (its rounding included).
                    elapsed = leg.duration
                    due = quota - sent
                else:
                    due = int(profile.due(elapsed)) - sent
                if quota is not None:
                    due = min(due, quota - sent)
                target = profile.due(elapsed)
                snapshot.target = base + (min(target, quota) if quota is not None else target)
                snapshot.target_rate = profile.rate(elapsed)
                if due > 0:
                    batch = stream.take(min(due, MAX_BATCH))
                    for message in batch:
                        sink.send(message)
                        snapshot.sent += 1  # only this thread writes `sent`
                    if leg.name:
                        snapshot.phase_sent[leg.name] += len(batch)
                else:
                    # Sleep about one message interval (at most 5 ms) so low rates stay smooth and idle costs little.
                    time.sleep(min(0.005, max(0.0005, 1.0 / max(profile.rate(elapsed), 1.0))))
                if time.monotonic() >= next_report:
                    if parent_alive is not None and not parent_alive():
                        return False
                    report()
                    next_report = time.monotonic() + REPORT_EVERY_S
            return True
        finally:
            if leg.name:
                with lock:
                    snapshot.phase_finished[leg.name] = time.time()
                    snapshot.phase = ""

    sink = None
    ready_counted = False
    try:
        legs = plan.legs(worker)
        # Every leg's stream (and its universe, about a second each) is built before the first starts, so one phase
        # follows another at once: a burst right after the steady phase is a burst.
        streams = []
        for leg in legs:
            if stop.is_set():
                break
            streams.append(EventStream(leg.generator, plan.run_id, worker=worker, workers=plan.workers, clock=clock,
                                       scenario=leg.name))  # fmt: skip
        context = SinkContext(plan.run_id, run_dir(plan.run_id), plan.worker_quota(worker), plan.generator.seed, worker)
        sink = make_sink(plan.target, on_done, context)
        if ready is not None:
            _arrive(ready)
            ready_counted = True
            _wait_for_workers(ready, plan.workers, stop, parent_alive)
        started = time.monotonic()
        next_report = started
        for leg, stream in zip(legs, streams, strict=False):  # fewer streams when stopped while building them
            if stop.is_set() or not pace(leg, stream):
                break  # stopped (the later legs are never sent), or the parent was killed: drain and end now
    except BaseException as exc:  # report and end this worker; the parent marks the run failed
        snapshot.error = f"{type(exc).__name__}: {exc}"
    finally:
        if ready is not None and not ready_counted:
            _arrive(ready)  # a worker that failed while getting ready holds nobody back
        drain_until = time.monotonic() + DRAIN_TIMEOUT_S
        if sink is not None and isinstance(plan.target, PubSubTarget):
            # Wait for the outcomes here rather than inside close(), so that a forced stop can cut the wait short.
            # (The sink's ticker sends what is queued; file and S3 sinks write their outcomes at close.)
            while snapshot.in_flight > 0 and time.monotonic() < drain_until and not _set(abort):
                time.sleep(0.02)
                if time.monotonic() >= next_report:
                    report()
                    next_report = time.monotonic() + REPORT_EVERY_S
        forced = _set(abort)
        if forced:
            log.close()  # what was recorded stays; outcomes arriving from now on are in flight
        if sink is not None:
            try:
                sink.close(0.0 if forced else max(0.0, drain_until - time.monotonic()))
            except Exception as exc:
                if not forced:
                    snapshot.error = snapshot.error or f"closing the sink: {type(exc).__name__}: {exc}"
        log.close()
        report(finished=True)


def _set(event: Any) -> bool:
    return event is not None and event.is_set()


def _arrive(ready: Any) -> None:
    with ready.get_lock():
        ready.value += 1


def _wait_for_workers(ready: Any, workers: int, stop: Any, parent_alive: Callable[[], bool] | None) -> None:
    deadline = time.monotonic() + START_WAIT_S
    while ready.value < workers and not stop.is_set() and time.monotonic() < deadline:
        if parent_alive is not None and not parent_alive():
            return
        time.sleep(0.005)


def _process_worker(plan: PublishPlan, worker: int, reports: Any, stop: Any, abort: Any, ready: Any) -> None:
    # The parent owns the stop signals: it sets `stop` (or `abort`) so that children drain instead of dying
    # mid-batch. A terminal's Ctrl-C or hang-up and `timeout`'s SIGTERM reach the whole process group.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    run_worker(plan, worker, reports, stop, abort=abort, parent_alive=parent.is_alive if parent else None, ready=ready)


class Publisher:
    """Runs a plan's workers and merges their reports. `publish()` below is the one-call form."""

    def __init__(self, plan: PublishPlan) -> None:
        plan.check()
        self.plan = plan
        self._snapshots: dict[int, WorkerSnapshot] = {}
        self._started_at = datetime.now(UTC)
        self._started = time.monotonic()
        self._process = this_process()
        self.stop_signal: int | None = None  # the first signal that stopped the run (the CLI's exit status)
        self._aborted_at: float | None = None
        self._complete = True  # every worker reported its last numbers
        if plan.workers == 1:
            self._reports: Any = queue.Queue()
            self._stop: Any = threading.Event()
            self._abort: Any = threading.Event()
            self._workers: list[Any] = [
                threading.Thread(
                    target=run_worker,
                    args=(plan, 0, self._reports, self._stop),
                    kwargs={"abort": self._abort},
                    name="publish-worker-0",
                    daemon=True,
                )
            ]
        else:
            context = multiprocessing.get_context("spawn")  # no fork after gRPC has started threads
            self._reports = context.Queue()
            self._stop = context.Event()
            self._abort = context.Event()
            # Held here: the children take it over only when they start (a local would be gone by then).
            self._ready = context.Value("i", 0) if plan.phases else None
            self._workers = [
                context.Process(
                    target=_process_worker,
                    args=(plan, i, self._reports, self._stop, self._abort, self._ready),
                    name=f"publish-worker-{i}",
                    daemon=True,
                )
                for i in range(plan.workers)
            ]

    def stop(self, signum: int | None = None) -> None:
        """Drain and end: what was sent gets its outcome, the manifest ends consistent."""
        if self.stop_signal is None:
            self.stop_signal = signum
        self._stop.set()

    def abort(self, signum: int | None = None) -> None:
        """End at once: outcomes not yet recorded stay in flight (the manifest says how many)."""
        self.stop(signum)
        if self._aborted_at is None:
            self._aborted_at = time.monotonic()
        self._abort.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def aborting(self) -> bool:
        return self._abort.is_set()

    def totals(self) -> RunTotals:
        return RunTotals.merge(list(self._snapshots.values()))

    def snapshots(self) -> list[WorkerSnapshot]:
        """Each worker's latest report, by worker number."""
        return [self._snapshots[w] for w in sorted(self._snapshots)]

    def phases(self) -> list[PhaseTotals]:
        """Each phase of the plan over every worker (empty for a run without phases)."""
        names = [phase.name for phase in self.plan.phases]
        return merge_phases(names, list(self._snapshots.values()), self.plan.workers) if names else []

    def current_phase(self) -> str | None:
        """The latest phase a worker is publishing (None between phases, after the last, or without phases)."""
        names = [phase.name for phase in self.plan.phases]
        inside = {s.phase for s in self._snapshots.values() if s.phase in names}
        return max(inside, key=names.index) if inside else None

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

    def _stop_record(self) -> dict[str, Any] | None:
        if not self._stop.is_set():
            return None
        name = signal.Signals(self.stop_signal).name if self.stop_signal else None
        return {"signal": name, "forced": self._abort.is_set(), "complete": self._complete}

    def _write_manifest(
        self,
        status: str,
        totals_now: dict[str, int] | None = None,
        counts: dict[str, int] | None = None,
        phase_outcomes: dict[str, Counter[str]] | None = None,
    ) -> None:
        totals = self.totals()
        plan = self.plan
        target = asdict(plan.target) | {"kind": target_kind(plan.target)}
        if isinstance(plan.target, S3Target):
            written = None if status == "running" else list(iter_objects(plan.run_id))
            target |= manifest_fields(plan.target, plan.run_id, written)
        manifest: dict[str, Any] = {
            "run_id": plan.run_id,
            "manifest_version": MANIFEST_VERSION,
            "status": status,
            "publisher": self._process,
            "stop": None if status == RUNNING else self._stop_record(),
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
            "totals": totals_now
            or {
                "sent": totals.sent,
                "published": totals.published,
                "failed": totals.failed,
                "in_flight": totals.in_flight,
            },
            "counts": self._counts() if counts is None else counts,
            "errors": totals.errors,
        }
        if plan.phases:
            manifest["plan"] = {"rate": None, "profile": None, "count": None, "duration_s": None,
                                "workers": plan.workers}  # fmt: skip
            manifest["generator"] = {"ids_of": plan.phases[0].generator.ids_of}  # one namespace: check() says so
            merged = self.phases()
            if phase_outcomes is not None:  # after a forced stop, the outcomes are what the CSVs hold
                for phase in merged:
                    outcomes = phase_outcomes.get(phase.name, Counter())
                    phase.published, phase.failed = outcomes[PUBLISHED], outcomes[FAILED]
            manifest["phases"] = [_phase_entry(p, t) for p, t in zip(plan.phases, merged, strict=True)]
        write_manifest(plan.run_id, manifest)

    def _progress(self, on_progress: Callable[[Publisher], None] | None) -> Callable[[Publisher], None] | None:
        """Call the view; a view that fails (a hung-up terminal after SIGHUP) is dropped, never the run."""
        if on_progress is not None:
            try:
                on_progress(self)
            except Exception:
                return None
        return on_progress

    def run(self, on_progress: Callable[[Publisher], None] | None = None) -> PublishResult:
        self._write_manifest(RUNNING)
        for w in self._workers:
            w.start()
        next_manifest = time.monotonic() + MANIFEST_EVERY_S
        while not self._finished():
            self._drain(REPORT_EVERY_S)
            if self._aborted_at is not None and time.monotonic() - self._aborted_at >= ABORT_WAIT_S:
                break
            if not any(w.is_alive() for w in self._workers):
                self._drain(0.5)  # collect the last reports of workers that just ended
                break
            on_progress = self._progress(on_progress)
            if time.monotonic() >= next_manifest and not self.aborting:
                self._write_manifest(RUNNING)
                next_manifest = time.monotonic() + MANIFEST_EVERY_S
        if self.aborting:
            return self._end_forced(on_progress)
        for w in self._workers:
            w.join(timeout=5)
        totals = self.totals()
        if totals.errors or not self._finished():
            status = "failed"
        elif self._stop.is_set():
            status = INTERRUPTED
        else:
            status = COMPLETED
        self._write_manifest(status)
        self._progress(on_progress)
        return PublishResult(self.plan.run_id, status, self.elapsed(), totals, self._counts())

    def _end_forced(self, on_progress: Callable[[Publisher], None] | None) -> PublishResult:
        """After abort(): end the workers that did not stop in time, and write the manifest from the CSVs."""
        self._complete = self._finished()
        for w in self._workers:
            if isinstance(w, multiprocessing.process.BaseProcess) and w.is_alive():
                w.kill()  # it ignores the stop signals; its unflushed outcomes count as in flight
            w.join(timeout=1)
        totals = self.totals()
        phase_outcomes: dict[str, Counter[str]] = {}
        recounted, counts = recount(self.plan.run_id, totals.sent, phase_outcomes)
        self._write_manifest(INTERRUPTED, recounted, counts, phase_outcomes)
        totals.sent, totals.published, totals.failed = recounted["sent"], recounted["published"], recounted["failed"]
        self._progress(on_progress)
        return PublishResult(self.plan.run_id, INTERRUPTED, self.elapsed(), totals, counts)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _phase_entry(phase: Phase, totals: PhaseTotals) -> dict[str, Any]:
    """A phase as manifest.json's "phases" lists it: what was asked, when it ran, what it sent."""
    return {
        "name": phase.name,
        "rate": phase.rate,
        "profile": phase.profile,
        "count": phase.count,
        "duration_s": phase.duration,
        "planned": phase.total(),
        "seed": phase.generator.seed,
        "generator": phase.generator.as_dict(),
        "started_at": _iso(totals.started),
        "finished_at": _iso(totals.finished),
        "sent": totals.sent,
        "published": totals.published,
        "failed": totals.failed,
    }


def publish(
    plan: PublishPlan,
    on_progress: Callable[[Publisher], None] | None = None,
) -> PublishResult:
    """Run a plan to its end; see run_with_signals for Ctrl-C, SIGTERM and SIGHUP."""
    return run_with_signals(Publisher(plan), on_progress)


def run_with_signals(publisher: Publisher, on_progress: Callable[[Publisher], None] | None = None) -> PublishResult:
    """Run a publisher under SIGINT, SIGTERM and SIGHUP: the first drains and stops cleanly, the second stops at
    once (the manifest still ends "interrupted", recounted from the CSVs), a third raises KeyboardInterrupt (the
    manifest may then stay "running": run_state() calls it dead once the process is gone)."""

    def on_signal(signum: int, frame: Any) -> None:
        if publisher.aborting:
            raise KeyboardInterrupt
        if publisher.stopping:
            publisher.abort(signum)
        else:
            publisher.stop(signum)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, on_signal)
    try:
        return publisher.run(on_progress)
    finally:
        for signum, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler)


run_with_sigint = run_with_signals  # the earlier name
