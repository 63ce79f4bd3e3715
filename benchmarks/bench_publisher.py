"""Publisher benchmarks: throughput into a local emulator, rate accuracy, and memory over a million events.

    .venv/bin/python benchmarks/bench_publisher.py            # everything (~3 minutes)
    .venv/bin/python benchmarks/bench_publisher.py --quick    # shorter windows, fewer events

Each figure is printed beside a baseline measured in the same run:
- throughput: the tuned PublisherClient (publisher/sinks.py batching) vs the client's default batching,
  both publishing the same pre-generated events from one process to this project's emulator (a subprocess);
- rate accuracy: the publisher's integral pacing vs a naive sleep(1/rate) loop, at 500/s and 5,000/s;
- memory: peak RSS of `workbench publish --to FILE` at 100,000 and at 1,000,000 events (flat means equal).
Targets (issue 2): >= 20,000 msg/s; within 1% of the target rate over 30 s; flat memory.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _machine import describe  # benchmarks/ is the script's folder, hence on sys.path
from rich.console import Console
from rich.table import Table

from generator.stream import EventStream, GeneratorConfig
from publisher.manifest import new_run_id
from publisher.run import PublishPlan, publish
from publisher.sinks import PubSubTarget

ROOT = Path(__file__).resolve().parents[1]

PROJECT = "bench"
console = Console()


class Emulator:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "emulator.pubsub", "--host", "127.0.0.1", "--port", "0"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.target = line.split()[-1]
        os.environ["PUBSUB_EMULATOR_HOST"] = self.target

    def topic(self, name: str) -> str:
        from google.cloud import pubsub_v1

        client = pubsub_v1.PublisherClient()
        path = client.topic_path(PROJECT, name)
        client.create_topic(name=path)
        return path

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _client_defaults(emulator: Emulator, topic_name: str, messages: list) -> float:
    """Baseline: google-cloud-pubsub's PublisherClient exactly as a user would first write it."""
    from google.cloud import pubsub_v1

    topic = emulator.topic(topic_name)
    client = pubsub_v1.PublisherClient()
    started = time.perf_counter()
    futures = [client.publish(topic, m.data, **m.attributes) for m in messages]
    for f in futures:
        f.result()
    rate = len(messages) / (time.perf_counter() - started)
    client.stop()
    return rate


def _workbench_sink(emulator: Emulator, topic_name: str, messages: list) -> float:
    from publisher.sinks import PubSubSink

    emulator.topic(topic_name)
    done = []
    sink = PubSubSink(PubSubTarget(PROJECT, topic_name, emulator.target), lambda m, o, i, s: done.append(o))
    started = time.perf_counter()
    for m in messages:
        sink.send(m)
    sink.close(timeout=120)
    rate = len(messages) / (time.perf_counter() - started)
    assert len(done) == len(messages) and set(done) == {"published"}, "every message must be confirmed"
    return rate


def throughput(emulator: Emulator, count: int) -> list[list]:
    mixed = EventStream(GeneratorConfig(seed=1), "bench").take(count)
    # ~1 KiB events: order events padded with JSON white space (still the same valid event).
    orders = EventStream(GeneratorConfig(seed=1, type_weights={"order": 1}), "bench").take(count)
    kib = [replace(m, data=m.data + b" " * max(0, 1024 - len(m.data))) for m in orders]
    rows = []
    for label, messages in (("event mix", mixed), ("1 KiB events", kib)):
        size = f"{sum(len(m.data) for m in messages) / len(messages):,.0f} B"
        base = _client_defaults(emulator, f"baseline-{len(rows)}", messages)
        tuned = _workbench_sink(emulator, f"tuned-{len(rows)}", messages)
        rows.append([f"google-cloud-pubsub defaults ({label}, baseline)", size, f"{base:,.0f}", "1.00x", ""])
        rows.append([
            f"workbench PubSubSink ({label})", size, f"{tuned:,.0f}", f"{tuned / base:.2f}x",
            "PASS" if tuned >= 20_000 else "FAIL (target 20,000)",
        ])  # fmt: skip
    emulator.topic("end-to-end")
    plan = PublishPlan(new_run_id(), PubSubTarget(PROJECT, "end-to-end", emulator.target), rate=1e9, count=count)
    result = publish(plan)
    rows.append([
        "workbench publish (generate + publish + manifest)", "event mix", f"{result.achieved_rate:,.0f}", "",
        "PASS" if result.achieved_rate >= 20_000 else "FAIL (target 20,000)",
    ])  # fmt: skip
    return rows


def naive_pacing(emulator: Emulator, rate: float, seconds: float) -> float:
    """Baseline: one publish then sleep(1/rate), the loop most scripts start with."""
    from google.cloud import pubsub_v1

    topic = emulator.topic(f"naive-{int(rate)}")
    client = pubsub_v1.PublisherClient()
    stream = EventStream(GeneratorConfig(seed=2), "bench")
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        m = stream.take(1)[0]
        client.publish(topic, m.data, **m.attributes)
        sent += 1
        time.sleep(1 / rate)
    client.stop()
    return sent / seconds


def accuracy(emulator: Emulator, rates: list[float], seconds: float) -> list[list]:
    rows = []
    for rate in rates:
        emulator.topic(f"paced-{int(rate)}")
        plan = PublishPlan(
            new_run_id(), PubSubTarget(PROJECT, f"paced-{int(rate)}", emulator.target), rate=rate, duration=seconds
        )
        result = publish(plan)
        achieved = result.totals.published / seconds
        error = abs(achieved - rate) / rate
        naive = naive_pacing(emulator, rate, seconds)
        rows.append([
            f"{rate:,.0f}/s for {seconds:g} s", f"{achieved:,.1f}", f"{error:.2%}",
            f"{naive:,.1f} ({abs(naive - rate) / rate:.1%} off)", "PASS" if error <= 0.01 else "FAIL (target 1%)",
        ])  # fmt: skip
    return rows


def memory(counts: list[int]) -> list[list]:
    rows = []
    for count in counts:
        with tempfile.TemporaryDirectory() as home:
            # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child forked from this (large)
            # benchmark process would report the parent's peak instead of its own.
            code = (
                "import sys\nfrom workbench.cli import main\n"
                "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
                "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
                "print(hwm, file=sys.stderr)"
            )
            started = time.perf_counter()
            completed = subprocess.run(
                [sys.executable, "-c", code, "publish", "--rate", "1e9", "--count", str(count),
                 "--to", str(Path(home) / "events.jsonl")],
                cwd=ROOT, env={**os.environ, "WORKBENCH_HOME": home}, capture_output=True, text=True, check=True,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            peak_kib = int(completed.stderr.strip().splitlines()[-1])
            rows.append([f"{count:,} events to a file", f"{peak_kib / 1024:,.0f} MiB", f"{count / seconds:,.0f}/s"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows and fewer events")
    args = parser.parse_args()
    os.environ.setdefault("NO_GCE_CHECK", "true")
    console.print(f"machine: {describe()}")
    emulator = Emulator()
    try:
        table = Table(title="publish throughput, one process, local emulator")
        for column in ("client", "mean payload", "msg/s", "vs baseline", "target"):
            table.add_column(column)
        for row in throughput(emulator, 50_000 if args.quick else 200_000):
            table.add_row(*row)
        console.print(table)

        table = Table(title="rate accuracy (published / window)")
        for column in ("target", "achieved msg/s", "error", "naive sleep loop (baseline)", "target"):
            table.add_column(column)
        for row in accuracy(emulator, [500, 5000], 5 if args.quick else 30):
            table.add_row(*row)
        console.print(table)
    finally:
        emulator.stop()

    table = Table(title="peak memory of `workbench publish --to FILE`")
    for column in ("run", "peak RSS", "rate"):
        table.add_column(column)
    for row in memory([100_000, 200_000] if args.quick else [100_000, 1_000_000]):
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
