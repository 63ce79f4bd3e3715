"""Generation benchmark: valid encoded events per second from EventStream.take, on one core.

    .venv/bin/python benchmarks/bench_generator.py            # ~20 s
    .venv/bin/python benchmarks/bench_generator.py --quick    # ~5 s, fewer events

Measured in the same run, on the same pinned core:
- the generator: EventStream.take(1000) (the publisher's batch size) of valid events, orjson-encoded, with
  the default options, and again with a realistic mix (5% malformed, 1% duplicates, 5% late);
- a naive baseline: one Faker call per field per event and json.dumps, the obvious first implementation.
Target (issue 2): >= 50,000 valid encoded events/s. Figures go to docs/benchmarks-generator.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from _machine import describe  # benchmarks/ is the script's folder, hence on sys.path
from faker import Faker
from rich.console import Console
from rich.table import Table

from eventmodel.schema import ACTIVITY_TYPES, INVENTORY_REASONS, ORDER_STATUSES, PLATFORMS
from generator.stream import EventStream, GeneratorConfig
from generator.universe import build_universe

TARGET = 50_000
BATCH = 1_000
ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks-generator.md"


def pin_to_one_core() -> str:
    """Run on a single core so the figure is per core, whatever else the machine does."""
    try:
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity)"


def generator_rate(config: GeneratorConfig, events: int, repeats: int) -> float:
    """Best of `repeats`: valid events per second of EventStream.take(BATCH), messages discarded per batch."""
    best = 0.0
    for repeat in range(repeats):
        stream = EventStream(config, run_id=f"bench-{repeat}")
        stream.take(5_000)  # warm the pools, caches and the universe
        valid = 0
        started = time.perf_counter()
        while valid < events:
            valid += sum(1 for m in stream.take(BATCH) if m.reason is None and not m.duplicate)
        best = max(best, valid / (time.perf_counter() - started))
    return best


def naive_event(fake: Faker, kind: int) -> dict:
    """The obvious implementation: Faker for every field of every event."""
    if kind == 0:
        items = [
            {
                "product_id": fake.uuid4(),
                "product_name": fake.catch_phrase(),
                "quantity": fake.random_int(1, 5),
                "price": fake.pyfloat(min_value=1, max_value=200, right_digits=2),
            }
            for _ in range(fake.random_int(1, 3))
        ]
        return {
            "event_type": "order",
            "order_id": fake.uuid4(),
            "customer_id": fake.uuid4(),
            "order_date": fake.iso8601(tzinfo=UTC),
            "status": fake.random_element(ORDER_STATUSES),
            "items": items,
            "shipping_address": {"street": fake.street_address(), "city": fake.city(), "country": fake.country()},
            "total_amount": round(sum(i["quantity"] * i["price"] for i in items), 2),
        }
    if kind == 1:
        return {
            "event_type": "inventory",
            "inventory_id": fake.uuid4(),
            "product_id": fake.uuid4(),
            "warehouse_id": fake.uuid4(),
            "quantity_change": fake.random_int(-100, 100),
            "reason": fake.random_element(INVENTORY_REASONS),
            "timestamp": fake.iso8601(tzinfo=UTC),
        }
    return {
        "event_type": "user_activity",
        "user_id": fake.uuid4(),
        "activity_type": fake.random_element(ACTIVITY_TYPES),
        "ip_address": fake.ipv4(),
        "user_agent": fake.user_agent(),
        "timestamp": fake.iso8601(tzinfo=UTC),
        "metadata": {"session_id": fake.uuid4(), "platform": fake.random_element(PLATFORMS)},
    }


def naive_rate(seconds: float) -> float:
    fake = Faker()
    fake.seed_instance(0)
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        json.dumps(naive_event(fake, count % 3)).encode()
        count += 1
    return count / (time.perf_counter() - started)


def universe_seconds() -> float:
    started = time.perf_counter()
    build_universe.__wrapped__(seed=987)
    return time.perf_counter() - started


def write_doc(machine: str, pinning: str, rows: list[tuple[str, float, str]], build_s: float) -> None:
    lines = [
        "# Generator benchmark",
        "",
        "Written by `.venv/bin/python benchmarks/bench_generator.py` (the figures of the last run).",
        "",
        f"- When: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine}; {pinning}",
        f"- Target: >= {TARGET:,} valid encoded events/s on one core (issue 2)",
        f"- Entity universe build (default sizes, Faker): {build_s:.2f} s, once per seed",
        "",
        "| measurement | events/s | x naive | target |",
        "| --- | ---: | ---: | --- |",
    ]
    lines += [f"| {name} | {rate:,.0f} | {ratio} | {verdict} |" for name, rate, ratio, verdict in rows]
    lines += [
        "",
        "How it is measured: `EventStream.take(1000)` in a loop (the publisher's batch size), counting only valid",
        "events (each one `orjson.dumps`-encoded, with its attributes and OutgoingMessage), best of three runs",
        "after a warm-up, the process pinned to one core. The naive baseline builds every field of every event",
        "with a Faker call and encodes with `json.dumps`, in the same process, on the same core.",
        "",
        "Why the generator is fast: Faker runs only while the entity universe is built; events are assembled",
        "from it with one `random.Random`; UUIDs are `getrandbits(128)` sliced from one hex string; timestamps",
        "are integer milliseconds with the per-second prefix cached. Very large `take(n)` calls (100k+) are",
        "slower per event because the cyclic GC rescans the growing list of live messages: take in batches.",
    ]
    DOC.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events, one repeat")
    args = parser.parse_args()
    events, repeats, naive_s = (100_000, 1, 2.0) if args.quick else (300_000, 3, 5.0)

    pinning = pin_to_one_core()
    machine = describe()
    console = Console()
    console.print(f"[bold]Generator benchmark[/] — {machine}; {pinning}")
    build_s = universe_seconds()
    with console.status("measuring the generator"):
        plain = generator_rate(GeneratorConfig(seed=1), events, repeats)
        mixed = generator_rate(
            GeneratorConfig(seed=1, malformed_rate=0.05, duplicate_rate=0.01, late_rate=0.05), events, repeats
        )
    with console.status("measuring the naive baseline"):
        naive = naive_rate(naive_s)

    def verdict(rate: float) -> str:
        return "PASS" if rate >= TARGET else "FAIL"

    rows = [
        ("EventStream.take, default options", plain, f"{plain / naive:.0f}x", verdict(plain)),
        ("EventStream.take, 5% malformed, 1% dup, 5% late", mixed, f"{mixed / naive:.0f}x", verdict(mixed)),
        ("naive: Faker per field + json.dumps", naive, "1x", "baseline"),
    ]
    table = Table(title=f"valid encoded events/s on one core (target >= {TARGET:,})")
    for column, justify in (("measurement", "left"), ("events/s", "right"), ("x naive", "right"), ("", "left")):
        table.add_column(column, justify=justify)
    for name, rate, ratio, result in rows:
        style = {"PASS": "green", "FAIL": "red"}.get(result, "dim")
        table.add_row(name, f"{rate:,.0f}", ratio, f"[{style}]{result}[/]")
    console.print(table)
    console.print(f"entity universe build (default sizes): {build_s:.2f} s")
    write_doc(machine, pinning, rows, build_s)
    console.print(f"figures written to {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
