"""Pipeline benchmarks: the transform chain alone, and the local stack end to end.

    .venv/bin/python benchmarks/bench_pipeline.py                 # chain + end to end (~8 minutes)
    .venv/bin/python benchmarks/bench_pipeline.py --chain-only    # the transform chain only (~1 minute)
    .venv/bin/python benchmarks/bench_pipeline.py --soak          # adds 10 minutes at 500 events/s

1. Transform chain on the FnApiRunner (batch): ParseAndValidate -> DeduplicateByEventId -> WriteEventFiles (local
   directory, size/drain flushes) + BigQuery row building + dead-letter building, no network. Its events/s are
   printed beside the raw validator's speed over the same messages in the same run (validate() in a loop), and
   as a ratio of the two. Messages are pre-generated into a pickle file that a DoFn loads in setup(), so neither
   the generator nor Beam's Create (which bz2-compresses its values at construction) is timed.
2. End to end on the local stack: this project's Pub/Sub emulator and bqemulator as subprocesses, the pipeline as
   `workbench run-pipeline` (DirectRunner) in its own process, the publisher in this one.
   - at 500 events/s for 60 s: p50/p95 lag from Pub/Sub publish to the BigQuery row, measured two ways: the row's
     own ingest_time - publish_time (built just before the insert), and when a 1 s poll of the tables first saw
     the row (an upper bound: poll period and query time included); peak RSS of the pipeline process;
   - steps of 1,000 / 1,500 / 2,000 events/s for 90 s each (--step-seconds): how long after the publisher stopped
     the last row arrived (drain) and the p95 build lag; a rate is sustainable when the pipeline keeps up (drain
     within 10 s and p95 lag under 5 s). 30 s steps flatter the pipeline: at 1,500/s it held for 30 s and fell
     behind within 90;
   - --soak: 10 minutes at 500 events/s, lag and memory per minute;
   - a 100,000-message backlog published before the pipeline starts: drain time and peak RSS (flow control keeps
     what is read but not yet committed under --max-outstanding, so memory stays flat however deep the backlog).
   Each end-to-end figure is measured in both delivery modes in the same run: at-least-once (the default: acks
   after every sink committed) and the at-most-once baseline (`--ack-on-pull`, as Beam's own DirectRunner reader),
   with their ratio.
Figures go to the terminal; docs/benchmarks-pipeline.md records them with the machine.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from _machine import describe  # benchmarks/ is the script's folder, hence on sys.path
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
console = Console()
PROJECT = "bench-pipeline"


# ------------------------------------------------------------------------------------------ 1. the chain


def _messages(count: int, seed: int) -> list:
    from apache_beam.io.gcp.pubsub import PubsubMessage

    from generator.stream import EventStream, GeneratorConfig

    stream = EventStream(GeneratorConfig(seed=seed, malformed_rate=0.05, duplicate_rate=0.02), run_id="bench")
    now = datetime.now(UTC)
    # oversize_batch bodies (1 MB) would turn this into a memcpy benchmark; the catalogue's other kinds stay.
    return [
        PubsubMessage(m.data, m.attributes, message_id=str(i), publish_time=now)
        for i, m in enumerate(stream.take(count))
        if len(m.data) < 100_000
    ]


def bench_chain(count: int) -> dict[str, float]:
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from eventmodel.validate import validate
    from pipeline.bigquery import BuildEventRowFn
    from pipeline.dead_letters import dead_letter_table_row, to_pubsub_message
    from pipeline.dedup import DeduplicateByEventId
    from pipeline.files import WriteEventFiles
    from pipeline.validate import ParseAndValidate

    messages = _messages(count, seed=7)
    bodies = [m.data for m in messages]
    started = time.perf_counter()
    for body in bodies:
        validate(body)
    validator_rate = len(bodies) / (time.perf_counter() - started)

    folder = Path(tempfile.mkdtemp(prefix="bench-chain-"))
    source = folder / "messages.pickle"
    source.write_bytes(pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL))

    class Emit(beam.DoFn):
        def __init__(self, path: str) -> None:
            self.path = path

        def setup(self) -> None:
            with open(self.path, "rb") as handle:
                self.messages = pickle.load(handle)

        def process(self, _):
            yield from self.messages

    def run_chain(path: str) -> float:
        output = folder / f"out-{time.monotonic_ns()}"
        started = time.perf_counter()
        with beam.Pipeline(runner=FnApiRunner()) as p:
            messages_ = p | beam.Create([None]) | "Emit" >> beam.ParDo(Emit(path))
            valid, dead = messages_ | ParseAndValidate()
            unique = valid | DeduplicateByEventId()
            _ = unique | WriteEventFiles(str(output), flush_seconds=None, forget_after_seconds=None)
            _ = unique | "Rows" >> beam.ParDo(BuildEventRowFn("bench", "events"))
            _ = dead | "DeadLetterMessages" >> beam.Map(to_pubsub_message)
            _ = dead | "DeadLetterRows" >> beam.Map(dead_letter_table_row)
        return time.perf_counter() - started

    empty = folder / "empty.pickle"
    empty.write_bytes(pickle.dumps(messages[:10]))
    baseline = min(run_chain(str(empty)) for _ in range(2))  # pipeline start-up and teardown, no data to speak of
    elapsed = run_chain(str(source))
    chain_rate = len(messages) / (elapsed - baseline)
    return {
        "events": len(messages),
        "validator_rate": validator_rate,
        "chain_rate": chain_rate,
        "chain_elapsed": elapsed,
        "startup": baseline,
        "ratio": chain_rate / validator_rate,
    }


# ---------------------------------------------------------------------------------------- 2. end to end


class Stack:
    """Pub/Sub emulator and bqemulator subprocesses on free ports, with the resources and the model applied."""

    def __init__(self) -> None:
        from ddl.apply import apply_ddl
        from workbench.localstack.emulators import start_bigquery_emulator, start_pubsub_emulator
        from workbench.localstack.stack import create_pubsub_resources

        os.environ["NO_GCE_CHECK"] = "true"
        self.pubsub_emulator = start_pubsub_emulator(project=PROJECT)
        self.pubsub = self.pubsub_emulator.target
        os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub
        # Without per-write time-travel copies, as `workbench up` runs it (workbench/localstack/bigquery_main.py).
        self.bq = start_bigquery_emulator(project=PROJECT, time_travel=False)
        self.datasets = 0
        create_pubsub_resources(self.pubsub, PROJECT)
        self._apply = apply_ddl

    def fresh_dataset(self) -> str:
        self.datasets += 1
        name = f"events_{self.datasets}"
        self._apply(project=PROJECT, dataset=name, emulator=self.bq.host_port)
        return name

    def stop(self) -> None:
        self.bq.stop()
        self.pubsub_emulator.stop()


def _rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, amount, _unit = line.split()
                    values[key] = int(amount) / 1024
    except OSError:
        pass
    return values.get("VmRSS:", 0.0), values.get("VmHWM:", 0.0)


class Poller(threading.Thread):
    """Every second: rows that appeared in the event tables since the last poll, with when they were first seen."""

    def __init__(self, client, dataset: str) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.dataset = dataset
        self.seen: dict[str, float] = {}  # event_id -> seen - publish (s)
        self.stop = threading.Event()

    def run(self) -> None:
        from eventmodel.rows import TABLES

        while not self.stop.wait(1.0):
            for table in TABLES.values():
                sql = (
                    f"SELECT event_id, publish_time FROM `{PROJECT}.{self.dataset}.{table}` "
                    "WHERE publish_time > TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 90 SECOND)"
                )
                try:
                    rows = list(self.client.query(sql).result(timeout=20))
                except Exception:
                    continue
                now = time.time()
                for row in rows:
                    if row["event_id"] not in self.seen:
                        self.seen[row["event_id"]] = now - row["publish_time"].timestamp()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


MODES = {"at-least-once": (), "ack-on-pull": ("--ack-on-pull",)}


def run_step(
    stack: Stack,
    rate: float,
    seconds: float,
    poll: bool,
    sample_every: float = 1.0,
    extra: tuple[str, ...] = (),
    backlog: int = 0,
) -> dict:
    """Publish at `rate` for `seconds` through a fresh pipeline process; measure lag, drain and memory.

    With `backlog`, that many messages are published (as fast as the publisher goes) before the pipeline starts,
    and `rate`/`seconds` are ignored: the figures are then how long the backlog took and the memory it cost."""
    from generator.stream import GeneratorConfig
    from publisher.manifest import new_run_id
    from publisher.run import PublishPlan, publish
    from publisher.sinks import PubSubTarget

    dataset = stack.fresh_dataset()
    output = tempfile.mkdtemp(prefix="bench-e2e-")
    home = tempfile.mkdtemp(prefix="bench-home-")
    os.environ["WORKBENCH_HOME"] = home
    prefilled = None
    if backlog:
        prefilled = publish(
            PublishPlan(
                run_id=new_run_id(),
                target=PubSubTarget(PROJECT, "backend-events-topic", stack.pubsub),
                rate=50_000,
                count=backlog,
                generator=GeneratorConfig(seed=5, malformed_rate=0.02, duplicate_rate=0.01),
            )
        )
    started_at = time.time()
    log = open(Path(home) / "pipeline.log", "w")  # noqa: SIM115 - closed below
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_HOME": home}
    pipeline = subprocess.Popen(
        [
            sys.executable, "-m", "workbench.cli", "run-pipeline", "--project", PROJECT,
            "--emulator", stack.pubsub, "--bigquery-emulator", stack.bq.host_port, "--dataset", dataset,
            "--output-root", output, "--stop-when-idle", "8", "--flush-seconds", "2", *extra,
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    samples: list[tuple[float, float]] = []
    peak = 0.0
    stop_sampling = threading.Event()

    def sample() -> None:
        nonlocal peak
        started = time.monotonic()
        while not stop_sampling.wait(sample_every):
            rss, hwm = _rss_mb(pipeline.pid)
            peak = max(peak, hwm)
            samples.append((time.monotonic() - started, rss))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    client = stack.bq.client()
    poller = Poller(client, dataset) if poll else None
    time.sleep(6)  # the pipeline process starts (imports, preflight, graph) before the clock starts
    if poller:
        poller.start()
    if prefilled is not None:
        result, published_at = prefilled, started_at
    else:
        plan = PublishPlan(
            run_id=new_run_id(),
            target=PubSubTarget(PROJECT, "backend-events-topic", stack.pubsub),
            rate=rate,
            duration=seconds,
            generator=GeneratorConfig(seed=int(rate), malformed_rate=0.02, duplicate_rate=0.01),
        )
        result = publish(plan)
        published_at = time.time()
    try:
        pipeline.wait(timeout=seconds + 180)
    except subprocess.TimeoutExpired:
        pipeline.terminate()
        pipeline.wait(30)
    stop_sampling.set()
    if poller:
        time.sleep(1.5)
        poller.stop.set()
        poller.join(30)
    log.close()
    build_lags, last_ingest = [], published_at
    for table in ("orders", "inventory", "user_activity"):
        rows = client.query(f"SELECT publish_time, ingest_time FROM `{PROJECT}.{dataset}.{table}`").result(timeout=120)
        for row in rows:
            build_lags.append(row["ingest_time"].timestamp() - row["publish_time"].timestamp())
            last_ingest = max(last_ingest, row["ingest_time"].timestamp())
    seen = list(poller.seen.values()) if poller else []
    return {
        "rate": rate,
        "achieved": result.achieved_rate,
        "published": result.totals.published,
        "rows": len(build_lags),
        "build_p50": _percentile(build_lags, 50),
        "build_p95": _percentile(build_lags, 95),
        "build_max": max(build_lags, default=float("nan")),
        "seen_p50": _percentile(seen, 50),
        "seen_p95": _percentile(seen, 95),
        "seen_count": len(seen),
        "drain_s": last_ingest - published_at,
        "peak_rss_mb": peak,
        "rss_samples": samples,
        "exit": pipeline.returncode,
    }


# --------------------------------------------------------------------------------------------------- main


def _print_chain(chain: dict[str, float]) -> None:
    table = Table(title="transform chain on the FnApiRunner (batch)")
    for column in ("events", "validator alone", "chain", "chain / validator", "pipeline start-up"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{chain['events']:,}",
        f"{chain['validator_rate']:,.0f}/s",
        f"{chain['chain_rate']:,.0f}/s",
        f"{chain['ratio']:.3f}",
        f"{chain['startup']:.1f} s",
    )
    console.print(table)


def _print_lag(lag: dict, mode: str) -> None:
    table = Table(title=f"end to end at 500 events/s for 60 s (publish -> BigQuery row), {mode}")
    for column in ("published", "rows", "build lag p50", "p95", "max", "seen lag p50", "p95", "peak RSS"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{lag['published']:,}", f"{lag['rows']:,}", f"{lag['build_p50']:.2f} s", f"{lag['build_p95']:.2f} s",
        f"{lag['build_max']:.2f} s", f"{lag['seen_p50']:.2f} s", f"{lag['seen_p95']:.2f} s",
        f"{lag['peak_rss_mb']:.0f} MB",
    )  # fmt: skip
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain-only", action="store_true")
    parser.add_argument("--chain-events", type=int, default=60_000)
    parser.add_argument("--soak", action="store_true", help="also 10 minutes at 500 events/s")
    parser.add_argument(
        "--soak-dedup-ttl",
        default="120",
        help="--dedup-ttl of the soak: shorter than the soak, so that the dedup state reaches its bound within it",
    )
    parser.add_argument("--rates", default="1000,1500,2000", help="steps of the sustainable-rate search")
    parser.add_argument("--skip-chain", action="store_true", help="leave out the transform chain")
    parser.add_argument("--skip-lag", action="store_true", help="leave out the 500 events/s lag measurement")
    parser.add_argument("--step-seconds", type=float, default=90.0, help="length of each rate step")
    parser.add_argument("--modes", default="at-least-once,ack-on-pull", help="delivery modes to measure")
    parser.add_argument("--backlog", type=int, default=100_000, help="messages of the backlog measurement (0: skip)")
    args = parser.parse_args()
    console.print(f"[bold]machine[/bold]: {describe()}")

    if not args.skip_chain:
        _print_chain(bench_chain(args.chain_events))
    if args.chain_only:
        return

    # A fresh stack per measurement: bqemulator keeps every dataset in memory and copies a table on every write,
    # so a long session slows it down (and once, ~250,000 rows in, it exited without a word).
    def measured(*args_, **kwargs) -> dict:
        stack = Stack()
        try:
            return run_step(stack, *args_, **kwargs)
        finally:
            stack.stop()

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.skip_lag:
        for mode in modes:
            _print_lag(measured(500, 60, poll=True, extra=MODES[mode]), mode)

    for rate in [float(r) for r in args.rates.split(",") if r.strip()]:
        table = Table(title=f"sustainable rate: {rate:,.0f}/s for {args.step_seconds:g} s")
        for column in ("mode", "achieved", "rows", "build lag p95", "max", "drain after publish", "peak RSS", ""):
            table.add_column(column, justify="right")
        for mode in modes:
            step = measured(rate, args.step_seconds, poll=False, extra=MODES[mode])
            keeps_up = step["drain_s"] <= 10 and step["build_p95"] < 5
            table.add_row(
                mode, f"{step['achieved']:,.0f}/s", f"{step['rows']:,}", f"{step['build_p95']:.2f} s",
                f"{step['build_max']:.2f} s", f"{step['drain_s']:.1f} s", f"{step['peak_rss_mb']:.0f} MB",
                "keeps up" if keeps_up else "falls behind",
            )  # fmt: skip
        console.print(table)

    if args.backlog:
        table = Table(title=f"a backlog of {args.backlog:,} messages, published before the pipeline starts")
        for column in ("mode", "rows", "drain (from start)", "events/s", "peak RSS", "vs ack-on-pull"):
            table.add_column(column, justify="right")
        results = {mode: measured(0, 0, poll=False, extra=MODES[mode], backlog=args.backlog) for mode in modes}
        base = results.get("ack-on-pull")
        for mode, step in results.items():
            rate = step["rows"] / step["drain_s"] if step["drain_s"] > 0 else float("nan")
            base_rate = base["rows"] / base["drain_s"] if base and base["drain_s"] > 0 else float("nan")
            table.add_row(
                mode, f"{step['rows']:,}", f"{step['drain_s']:.1f} s", f"{rate:,.0f}/s",
                f"{step['peak_rss_mb']:.0f} MB", f"{rate / base_rate:.2f}x" if base else "-",
            )  # fmt: skip
        console.print(table)

    if args.soak:
        soak = measured(500, 600, poll=False, sample_every=5.0, extra=("--dedup-ttl", args.soak_dedup_ttl))
        table = Table(title=f"soak: 10 minutes at 500 events/s, --dedup-ttl {args.soak_dedup_ttl}")
        for column in ("minute", "mean RSS", "max RSS"):
            table.add_column(column, justify="right")
        for minute in range(11):
            near = [rss for t, rss in soak["rss_samples"] if minute * 60 <= t < minute * 60 + 60]
            if near:
                table.add_row(str(minute), f"{statistics.mean(near):.0f} MB", f"{max(near):.0f} MB")
        console.print(table)
        console.print(
            f"soak: {soak['rows']:,} rows, build lag p95 {soak['build_p95']:.2f} s (max {soak['build_max']:.2f} s),"
            f" drain {soak['drain_s']:.1f} s, peak RSS {soak['peak_rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
