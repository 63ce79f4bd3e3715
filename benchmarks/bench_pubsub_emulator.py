"""Benchmark the project's Pub/Sub emulator, and the official one in the same run when gcloud is installed.

    .venv/bin/python benchmarks/bench_pubsub_emulator.py [--messages 100000] [--seconds 20] [--skip-official]

Measures, each emulator in its own process on a loopback port:
- publish ingest with prebuilt 1,000-message PublishRequests (raw gRPC, two concurrent senders);
- publish through google-cloud-pubsub's batching PublisherClient (1000 messages / 5 MB / 50 ms batches);
- delivery through SubscriberClient.subscribe() of a preloaded backlog, every message acked;
- resident memory of the emulator per million retained 1 KB messages (RSS growth while holding a backlog);
- with --durable, the same for this emulator with --data-dir (journal with fsync'd group commits).
Every loop is bounded by a message count and a time limit. Figures go to docs/benchmarks-pubsub-emulator.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from workbench.localstack.emulators import (
    Emulator,
    official_pubsub_missing,
    start_official_pubsub_emulator,
    start_pubsub_emulator,
)

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "bench"
PAYLOAD = b"x" * 1024


def server_pid(emulator: Emulator) -> int:
    """The process holding the state: python for ours; for the official one, the java that gcloud started in its
    session (its group id is gcloud's pid)."""
    if emulator.name != "official-pubsub":
        return emulator.process.pid
    out = subprocess.run(["pgrep", "-g", str(emulator.process.pid), "java"], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.stdout.split() else emulator.process.pid


def start_ours(data_dir: str | None = None) -> Emulator:
    return start_pubsub_emulator(project=PROJECT, data_dir=Path(data_dir) if data_dir else None)


def start_official() -> Emulator:
    return start_official_pubsub_emulator(project=PROJECT)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def prebuilt_request(topic: str, count: int = 1000) -> bytes:
    from google.pubsub_v1.types import PublishRequest

    request = PublishRequest.pb()(topic=topic)
    for i in range(count):
        message = request.messages.add()
        message.data = PAYLOAD
        message.attributes["event_type"] = "bench"
        message.attributes["seq"] = str(i)
    return request.SerializeToString()


def raw_publish(target: str, request: bytes, max_messages: int, seconds: float, senders: int = 2) -> float:
    """msg/s of raw PublishRequests sent by `senders` threads until max_messages or the time limit."""
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", -1)])
    call = channel.unary_unary(
        "/google.pubsub.v1.Publisher/Publish", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    per_request = 1000
    sent = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def sender() -> None:
        nonlocal sent
        while time.monotonic() < deadline:
            with lock:
                if sent >= max_messages:
                    return
                sent += per_request
            call(request, timeout=60)

    started = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        for future in [pool.submit(sender) for _ in range(senders)]:
            future.result()
    elapsed = time.perf_counter() - started
    channel.close()
    return sent / elapsed


def client_publish(topic: str, max_messages: int, seconds: float) -> float:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=5 * 1024 * 1024, max_latency=0.05)
    )
    futures = []
    started = time.perf_counter()
    deadline = time.monotonic() + seconds
    for i in range(max_messages):
        futures.append(publisher.publish(topic, PAYLOAD, event_type="bench", seq=str(i)))
        if i % 1000 == 0 and time.monotonic() > deadline:
            break
    for future in futures:
        future.result(timeout=120)
    elapsed = time.perf_counter() - started
    publisher.stop()
    return len(futures) / elapsed


def _client_publish_worker(
    target: str, topic: str, max_messages: int, seconds: float, start_at: float
) -> tuple[int, float, float]:
    os.environ["PUBSUB_EMULATOR_HOST"] = target
    import google.cloud.pubsub_v1  # noqa: F401 - imported before the common start time, not during the run

    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    rate = client_publish(topic, max_messages, seconds)
    ended = time.time()
    return round(rate * (ended - started)), started, ended


def client_publish_processes(target: str, topic: str, max_messages: int, seconds: float, processes: int) -> float:
    """Aggregate msg/s of several publisher processes (one client is CPU-bound well below the emulator),
    from the first worker's start to the last one's end, so process start-up is not counted."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    start_at = time.time() + 8  # every worker has started and imported by then
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            pool.submit(_client_publish_worker, target, topic, max_messages // processes, seconds, start_at)
            for _ in range(processes)
        ]
        results = [f.result() for f in futures]
    sent = sum(r[0] for r in results)
    return sent / (max(r[2] for r in results) - min(r[1] for r in results))


def subscribe_delivery(subscription: str, expected: int, seconds: float) -> float:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    received = 0
    done = threading.Event()
    lock = threading.Lock()

    def callback(message) -> None:
        nonlocal received
        message.ack()
        with lock:
            received += 1
            if received >= expected:
                done.set()

    flow = pubsub_v1.types.FlowControl(max_messages=5000, max_bytes=100 * 1024 * 1024)
    started = time.perf_counter()
    future = subscriber.subscribe(subscription, callback, flow_control=flow)
    done.wait(seconds)
    elapsed = time.perf_counter() - started
    future.cancel()
    with contextlib.suppress(Exception):  # a cancelled stream may end with an error, which is fine here
        future.result(timeout=10)
    subscriber.close()
    return received / elapsed


def admin_clients(target: str):
    from google.cloud import pubsub_v1

    os.environ["PUBSUB_EMULATOR_HOST"] = target
    return pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()


def run(emulator: Emulator, messages: int, seconds: float, memory_messages: int) -> dict[str, float]:
    publisher, subscriber = admin_clients(emulator.target)
    results: dict[str, float] = {}
    topic = f"projects/{PROJECT}/topics/ingest"
    publisher.create_topic(name=topic)
    # A subscription makes both emulators keep (and fan out) what they ingest, as in real use.
    subscriber.create_subscription(name=f"projects/{PROJECT}/subscriptions/ingest", topic=topic)
    request = prebuilt_request(topic)
    results["publish_prebuilt"] = raw_publish(emulator.target, request, messages, seconds)
    results["publish_client"] = client_publish(topic, messages, seconds)
    results["publish_client_2proc"] = client_publish_processes(emulator.target, topic, messages, seconds, 2)

    # Delivery: preload a backlog, then drain it through subscribe().
    delivery_topic = f"projects/{PROJECT}/topics/delivery"
    delivery_sub = f"projects/{PROJECT}/subscriptions/delivery"
    publisher.create_topic(name=delivery_topic)
    subscriber.create_subscription(name=delivery_sub, topic=delivery_topic, ack_deadline_seconds=60)
    raw_publish(emulator.target, prebuilt_request(delivery_topic), messages, seconds * 3)
    results["delivery_subscribe"] = subscribe_delivery(delivery_sub, messages, seconds * 2)

    # Memory: RSS growth while a subscription retains memory_messages 1 KB messages.
    memory_topic = f"projects/{PROJECT}/topics/memory"
    publisher.create_topic(name=memory_topic)
    subscriber.create_subscription(name=f"projects/{PROJECT}/subscriptions/memory", topic=memory_topic)
    pid = server_pid(emulator)
    before = rss_bytes(pid)
    raw_publish(emulator.target, prebuilt_request(memory_topic), memory_messages, seconds * 5)
    time.sleep(1)
    after = rss_bytes(pid)
    results["memory_per_million_mb"] = (after - before) / memory_messages * 1_000_000 / (1024 * 1024)
    publisher.stop()
    subscriber.close()
    return results


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages per throughput measurement")
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit per measurement")
    parser.add_argument("--memory-messages", type=int, default=200_000, help="retained messages for RSS")
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--durable", action="store_true", help="also measure this emulator with --data-dir")
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_GCE_CHECK", "true")

    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=130)  # keep the table readable when the output goes to a file
    console.print(f"machine: {machine()}")
    results: dict[str, dict[str, float]] = {}
    starters: list[tuple[str, Callable[[], Emulator]]] = [("workbench", start_ours)]
    scratch = tempfile.TemporaryDirectory(prefix="pubsub-bench-") if args.durable else None
    if scratch is not None:
        starters.append(("workbench --data-dir", lambda: start_ours(scratch.name)))
    if not args.skip_official and official_pubsub_missing() is None:
        starters.append(("official", start_official))
    elif not args.skip_official:
        console.print("official emulator not measured: gcloud or java is not installed")
    for name, starter in starters:
        console.print(f"measuring {name} emulator ...")
        emulator = starter()
        try:
            results[name] = run(emulator, args.messages, args.seconds, args.memory_messages)
        finally:
            emulator.stop()
    if scratch is not None:
        scratch.cleanup()

    rows = [
        ("publish ingest, prebuilt 1,000-message requests (msg/s)", "publish_prebuilt"),
        ("publish through client batching, 1 process (msg/s)", "publish_client"),
        ("publish through client batching, 2 processes (msg/s)", "publish_client_2proc"),
        ("delivery via SubscriberClient.subscribe() (msg/s)", "delivery_subscribe"),
        ("memory per million retained 1 KB messages (MB)", "memory_per_million_mb"),
    ]
    table = Table(title=f"Pub/Sub emulator benchmark ({args.messages:,} messages per measurement)")
    table.add_column("measurement")
    for name in results:
        table.add_column(name, justify="right")
    if "official" in results:
        table.add_column("workbench / official", justify="right")
    for label, key in rows:
        cells = [f"{results[name][key]:,.0f}" for name in results]
        if "official" in results:
            ours, theirs = results["workbench"][key], results["official"][key]
            cells.append(f"{ours / theirs:.2f}x" if theirs else "-")
        table.add_row(label, *cells)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
