"""Publish statistics that merge across worker processes in constant memory.

Latencies go into a fixed log-scale histogram (about 2.3% wide buckets from 10 µs to 100 s), so p50/p99
come out of a few hundred integers however many messages were sent, and N workers' snapshots merge by
adding counts.

A run of phases (publisher.run.Phase) also reports, per worker, the phase it is in and, per phase, when it began
and ended it (epoch seconds) and what it sent, got published and saw fail; merge_phases() gives the run's view of
each phase: the first worker's start, the last worker's end, the sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

_MIN_S = 1e-5
_GROWTH = 1.0233  # ln(_GROWTH) ~ 0.023: a reported percentile is within ~2.3% of the true one
_BUCKETS = int(math.log(100.0 / _MIN_S) / math.log(_GROWTH)) + 2
_LOG_GROWTH = math.log(_GROWTH)


def _bucket(seconds: float) -> int:
    if seconds <= _MIN_S:
        return 0
    return min(int(math.log(seconds / _MIN_S) / _LOG_GROWTH) + 1, _BUCKETS - 1)


def _bucket_upper(index: int) -> float:
    return _MIN_S * _GROWTH**index


@dataclass
class LatencyHistogram:
    counts: list[int] = field(default_factory=lambda: [0] * _BUCKETS)
    total: int = 0

    def record(self, seconds: float) -> None:
        self.counts[_bucket(seconds)] += 1
        self.total += 1

    def merge(self, other: LatencyHistogram) -> None:
        for i, c in enumerate(other.counts):
            if c:
                self.counts[i] += c
        self.total += other.total

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100) in seconds, or None with no samples."""
        if not self.total:
            return None
        rank = max(1, math.ceil(self.total * q / 100))
        running = 0
        for i, c in enumerate(self.counts):
            running += c
            if running >= rank:
                return _bucket_upper(i)
        return _bucket_upper(_BUCKETS - 1)  # pragma: no cover - the counts always reach total

    def sparse(self) -> dict[int, int]:
        """Only the non-empty buckets: what a worker ships to the parent process."""
        return {i: c for i, c in enumerate(self.counts) if c}

    @classmethod
    def from_sparse(cls, sparse: dict[int, int]) -> LatencyHistogram:
        histogram = cls()
        for i, c in sparse.items():
            histogram.counts[int(i)] = c
            histogram.total += c
        return histogram


@dataclass
class WorkerSnapshot:
    """Cumulative counters of one worker, sent to the parent a few times a second."""

    worker: int
    sent: int = 0  # handed to the sink
    published: int = 0  # confirmed by the sink (Pub/Sub returned a message id, or the line was written)
    failed: int = 0  # the sink gave up after its retries
    target: float = 0.0  # messages this worker should have sent by now
    target_rate: float = 0.0
    active_s: float = 0.0  # seconds since this worker started pacing (after building its universe)
    latency: dict[int, int] = field(default_factory=dict)
    finished: bool = False
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)  # by destination, type, kind (see manifest.EventLog)
    # A run of phases: the phase this worker is publishing ("" before its first and after its last), and per phase
    # name, when this worker began pacing it and when it left it (its last message handed to the sink, or a stop),
    # in epoch seconds, and its messages sent, published and failed (outcomes are counted by the message's tag).
    phase: str = ""
    phase_started: dict[str, float] = field(default_factory=dict)
    phase_finished: dict[str, float] = field(default_factory=dict)
    phase_sent: dict[str, int] = field(default_factory=dict)
    phase_published: dict[str, int] = field(default_factory=dict)
    phase_failed: dict[str, int] = field(default_factory=dict)

    @property
    def in_flight(self) -> int:
        return self.sent - self.published - self.failed


@dataclass
class PhaseTotals:
    """One phase of a run, over every worker."""

    name: str
    started: float | None = None  # epoch seconds: the first worker's start of the phase
    finished: float | None = None  # epoch seconds: the last worker's end of it, once no worker can still be in it
    sent: int = 0
    published: int = 0
    failed: int = 0


def merge_phases(names: list[str], snapshots: list[WorkerSnapshot], workers: int) -> list[PhaseTotals]:
    """Each phase over the workers' latest snapshots, in the order of `names`.

    A phase has finished when every worker has left it or ended without entering it (a stop in an earlier phase):
    until then, a worker still to reach it, or still in it, may send more of it."""
    merged = []
    for name in names:
        phase = PhaseTotals(name)
        starts = [s.phase_started[name] for s in snapshots if name in s.phase_started]
        ends = [s.phase_finished[name] for s in snapshots if name in s.phase_finished]
        phase.started = min(starts) if starts else None
        settled = len(snapshots) == workers and all(
            name in s.phase_finished or (name not in s.phase_started and s.finished) for s in snapshots
        )
        phase.finished = max(ends) if ends and settled else None
        for s in snapshots:
            phase.sent += s.phase_sent.get(name, 0)
            phase.published += s.phase_published.get(name, 0)
            phase.failed += s.phase_failed.get(name, 0)
        merged.append(phase)
    return merged


@dataclass
class RunTotals:
    """The merge of every worker's latest snapshot: what the live view and the summary show."""

    sent: int = 0
    published: int = 0
    failed: int = 0
    target: float = 0.0
    target_rate: float = 0.0
    active_s: float = 0.0  # the longest-running worker's pacing time: what rates are measured against
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    errors: list[str] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return self.sent - self.published - self.failed

    @classmethod
    def merge(cls, snapshots: list[WorkerSnapshot]) -> RunTotals:
        totals = cls()
        for s in snapshots:
            totals.sent += s.sent
            totals.published += s.published
            totals.failed += s.failed
            totals.target += s.target
            totals.target_rate += s.target_rate
            totals.active_s = max(totals.active_s, s.active_s)
            totals.latency.merge(LatencyHistogram.from_sparse(s.latency))
            if s.error:
                totals.errors.append(f"worker {s.worker}: {s.error}")
        return totals
