"""Load test benchmark: the messages/s Locust reaches on this machine, beside `workbench publish` in the same run.

    .venv/bin/python benchmarks/bench_loadtest.py            # 3 measurements of ~20 s each (~1.5 minutes)
    .venv/bin/python benchmarks/bench_loadtest.py --quick    # ~5 s each
    .venv/bin/python benchmarks/bench_loadtest.py --batch-size 20     # `workbench loadtest`'s default batch

One emulator (this project's, a subprocess on a free loopback port) serves every measurement, each on a fresh
topic without subscriptions: the emulator keeps nothing it ingests, so no measurement is slowed by what an
earlier one left behind, and all of them hit the same server in the same run:
- baseline: `workbench publish` (publisher.run.publish, one worker, rate 1e9 for --seconds, i.e. flat out);
- Locust with one local process (`workbench loadtest`, workers=0);
- Locust with a master and two worker processes (workers=2), the same total of users.
Locust: 20 users (all spawned within a second), flat out (user rate 0), 100 messages per Publish call (the best
of the batch sizes tried with --quick: 20, 50, 100, 200, 500, 1000; docs/benchmarks.md has them).
Both sides publish the same event mix (5% malformed, 1% duplicates, Locust's defaults).

msg/s is measured the same way for every row: the emulator's count of messages ingested on the measurement's
topic, sampled every 0.2 s, over the steady part of the run (from --warmup seconds after the first message to
0.5 s before the last; spawning, process start-up and draining are left out). Locust's own view, from the
Aggregated rows of locust_stats_history.csv at full user count (1 s resolution, whole seconds; with workers the
master's counts move only when a worker reports, every 3 s), is printed beside it as a check.
p50/p99: Locust's Aggregated row in locust_stats.csv (the whole run), the milliseconds of the Publish call that
carried the message (one call per batch); for `workbench publish` its own histogram, from sink.send() to the
server's confirmation, client-side batching and flow control included.
Target (issue): >= 5,000 msg/s from one Locust process, with 0 failures.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from _machine import describe  # benchmarks/ is the script's folder, hence on sys.path
from rich.console import Console
from rich.table import Table

from emulator.pubsub.admin import AdminClient
from generator.stream import GeneratorConfig
from publisher.manifest import new_run_id, run_dir
from publisher.run import PublishPlan, publish
from publisher.sinks import PubSubTarget
from workbench.loadtest_run import LoadtestOptions, run_loadtest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "bench"
TARGET_MSG_S = 5_000
MALFORMED_RATE, DUPLICATE_RATE = 0.05, 0.01  # LoadtestOptions' defaults, for both sides
SAMPLE_EVERY_S = 0.2
TAIL_S = 0.5
console = Console(width=None if sys.stdout.isatty() else 150)  # rows stay whole in a log or a pipe


@dataclass
class Measurement:
    label: str
    rate: float  # msg/s over the steady window, from the emulator's counter
    window_s: float
    messages: int  # the client's own count of published messages (Locust: locust_stats.csv)
    recorded: int  # published messages in the run's manifest (from its events CSVs)
    ingested: int  # the emulator's count on the topic
    p50_ms: float | None
    p99_ms: float | None
    failures: int
    own_rate: float | None = None  # the client's own steady figure (Locust's history file)
    own_source: str = ""


class Ingest:
    """Samples the emulator's published count of one topic in a thread: (monotonic seconds, count)."""

    def __init__(self, admin: AdminClient, topic_path: str) -> None:
        self.admin, self.topic_path = admin, topic_path
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-sampler", daemon=True)

    def count(self) -> int:
        return int(self.admin.stats()["topics"][self.topic_path]["published"])

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.count()))
            self._stop.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> Ingest:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), self.count()))

    def steady(self, warmup: float) -> tuple[float, float]:
        """(msg/s, seconds) from `warmup` s after the first message to TAIL_S before the count stopped rising."""
        first = next(t for t, c in self.samples if c > 0)
        last = max(i for i in range(1, len(self.samples)) if self.samples[i][1] > self.samples[i - 1][1])
        # The sample at `last` saw the run still going when the previous one was taken, and maybe no longer after.
        end_t = self.samples[last - 1][0] - TAIL_S
        window = [(t, c) for t, c in self.samples if first + warmup <= t <= end_t]
        if len(window) < 2:
            raise SystemExit(f"no steady window: run longer than --warmup {warmup:g} s plus start-up (--seconds)")
        (t0, c0), (t1, c1) = window[0], window[-1]
        return (c1 - c0) / (t1 - t0), t1 - t0


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (so Locust's, which inherits them) to a file, at the descriptor level."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def start_emulator():
    """This project's Pub/Sub emulator on a free loopback port (its read-only stats service is always on)."""
    from workbench.localstack.emulators import start_pubsub_emulator

    return start_pubsub_emulator()


def new_topic(emulator_target: str, name: str) -> str:
    """A topic with no subscription: the emulator counts what it ingests and keeps none of it."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    channel = grpc.insecure_channel(emulator_target)
    try:
        client = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))
        path = client.topic_path(PROJECT, name)
        client.create_topic(request={"name": path}, timeout=10)
        return path
    finally:
        channel.close()


def _aggregated(run_id: str) -> dict[str, str]:
    with (run_dir(run_id) / "locust_stats.csv").open(newline="") as f:
        return next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")


def _history_rate(run_id: str, users: int) -> float | None:
    """Locust's own steady msg/s: Total Request Count over the Aggregated history rows at full user count,
    each count taken where it first appears (with workers the master's count moves in steps)."""
    with (run_dir(run_id) / "locust_stats_history.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Name"] == "Aggregated" and int(r["User Count"]) == users]
    points: list[tuple[int, int]] = []
    for r in rows:
        count = int(r["Total Request Count"])
        if not points or count != points[-1][1]:
            points.append((int(r["Timestamp"]), count))
    points = points[1:-1]  # the first and last steps straddle the spawn and the stop
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def locust(emulator_target: str, admin: AdminClient, workers: int, args: argparse.Namespace, logs: Path) -> Measurement:
    label = "Locust, 1 local process" if workers == 0 else f"Locust, master + {workers} workers"
    name = f"locust-{workers}w-{args.users}u-{args.batch_size}b"
    topic = new_topic(emulator_target, name)
    options = LoadtestOptions(
        users=args.users, spawn_rate=args.users, run_time=f"{args.seconds:g}s", workers=workers,
        batch_size=args.batch_size, user_rate=0.0, malformed_rate=MALFORMED_RATE, duplicate_rate=DUPLICATE_RATE,
        topic=name, project=PROJECT, emulator=emulator_target, extra=["--loglevel", "WARNING"],
    )  # fmt: skip
    log = logs / f"{name}.log"
    with Ingest(admin, topic) as ingest, output_to(log):
        run_id, code = run_loadtest(options)
    row = _aggregated(run_id)
    failures = int(row["Failure Count"])
    where = f"see {log} and {run_dir(run_id)}"
    assert code == 0 and failures == 0, f"{label}: Locust exit {code}, {failures} failures ({where})"
    totals = orjson.loads((run_dir(run_id) / "manifest.json").read_bytes())["totals"]
    assert totals["failed"] == 0, f"{label}: the manifest counts {totals['failed']} failed messages"
    rate, window = ingest.steady(args.warmup)
    return Measurement(
        label, rate, window, int(row["Request Count"]), totals["published"], ingest.samples[-1][1],
        float(row["50%"]), float(row["99%"]), failures, _history_rate(run_id, args.users), "locust_stats_history.csv",
    )  # fmt: skip


def workbench_publish(emulator_target: str, admin: AdminClient, args: argparse.Namespace) -> Measurement:
    name = "workbench-publish"
    topic = new_topic(emulator_target, name)
    plan = PublishPlan(
        new_run_id(), PubSubTarget(PROJECT, name, emulator_target), rate=1e9, duration=args.seconds,
        generator=GeneratorConfig(malformed_rate=MALFORMED_RATE, duplicate_rate=DUPLICATE_RATE),
    )  # fmt: skip
    with Ingest(admin, topic) as ingest:
        result = publish(plan)
    totals = result.totals
    recorded = orjson.loads((run_dir(result.run_id) / "manifest.json").read_bytes())["totals"]["published"]
    assert result.status == "completed" and totals.failed == 0, f"publish: {result.status}, {totals.failed} failed"
    rate, window = ingest.steady(args.warmup)
    p50, p99 = totals.latency.percentile(50), totals.latency.percentile(99)
    return Measurement(
        "`workbench publish` (baseline)", rate, window, totals.published, recorded, ingest.samples[-1][1],
        None if p50 is None else p50 * 1000, None if p99 is None else p99 * 1000, totals.failed,
        result.achieved_rate, "PublishResult.achieved_rate",
    )  # fmt: skip


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~5 s per measurement instead of ~20 s")
    parser.add_argument("--seconds", type=float, help="length of each measurement (default 20, 5 with --quick)")
    parser.add_argument("--warmup", type=float, help="seconds after the first message left out (default 2, 1 quick)")
    parser.add_argument("--users", type=int, default=20, help="Locust users in total (default 20)")
    parser.add_argument("--batch-size", type=int, default=100, help="messages per Publish call (default 100)")
    parser.add_argument("--keep", action="store_true", help="keep the runs (manifests, Locust CSVs, logs) afterwards")
    args = parser.parse_args()
    args.seconds = args.seconds or (5.0 if args.quick else 20.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    os.environ.setdefault("NO_GCE_CHECK", "true")
    from importlib.metadata import version

    console.print(f"machine: {describe()}; locust {version('locust')}, grpcio {version('grpcio')}")
    console.print(
        f"{args.seconds:g} s per measurement ({args.warmup:g} s warm-up left out), {args.users} Locust users, "
        f"batch size {args.batch_size}, user rate 0 (flat out); one emulator, a fresh topic with no subscription each"
    )
    home = Path(tempfile.mkdtemp(prefix="bench-loadtest-"))
    os.environ["WORKBENCH_HOME"] = str(home)  # runs (manifests, Locust CSVs) go here; the children inherit it
    emulator = start_emulator()
    admin = AdminClient(emulator.target)
    try:
        baseline = workbench_publish(emulator.target, admin, args)
        rows = [baseline, locust(emulator.target, admin, 0, args, home), locust(emulator.target, admin, 2, args, home)]
    except BaseException:
        console.print(f"runs, Locust CSVs and logs kept in {home}")
        raise
    finally:
        admin.close()
        emulator.stop()

    table = Table(title=f"publish throughput into the local emulator, {args.seconds:g} s each")
    for column in ("measurement", "msg/s", "p50 ms", "p99 ms", "failures", "vs publish", "client's own msg/s",
                   "messages: client / manifest / emulator", "target"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("measurement", "target") else "right")
    for m in rows:
        target = ""
        if m.label.startswith("Locust, 1"):
            ok = m.rate >= TARGET_MSG_S and m.failures == 0
            target = "PASS" if ok else f"FAIL (target {TARGET_MSG_S:,}, 0 failures)"
        table.add_row(
            m.label, f"{m.rate:,.0f}", _ms(m.p50_ms), _ms(m.p99_ms), str(m.failures),
            f"{m.rate / baseline.rate:.2f}x", "n/a" if m.own_rate is None else f"{m.own_rate:,.0f}",
            f"{m.messages:,} / {m.recorded:,} / {m.ingested:,}", target,
        )  # fmt: skip
    console.print(table)
    windows = ", ".join(f"{m.window_s:.1f}" for m in rows)
    console.print(
        f"msg/s: the emulator's ingest count over the steady window ({windows} s); "
        "client's own: Locust's history file (whole seconds) or PublishResult.achieved_rate (start-up excluded, "
        "drain included). Latency: Locust per Publish call of a batch (whole ms); publish from send() to confirmation."
    )
    if any(m.messages < m.ingested for m in rows):
        console.print(
            "Locust writes locust_stats.csv once a second and not again at shutdown, so its Request Count can miss "
            "the last second; the manifest (every process's events CSV) counts every confirmed message."
        )
    console.print(
        f"{os.cpu_count()} cores: Locust's master, its workers, the emulator and this process share them, so the "
        "two-worker figure need not scale with the workers."
    )
    if args.keep:
        console.print(f"runs, Locust CSVs and logs: {home}")
    else:
        shutil.rmtree(home)  # a full run leaves ~150 MB of events CSVs


if __name__ == "__main__":
    main()
