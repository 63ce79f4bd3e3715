"""Backfill benchmark: history in S3 through `workbench backfill`, beside the streaming pipeline in the same run.

    .venv/bin/python benchmarks/bench_backfill.py                    # 1,000,000 historical events (~15 minutes)
    .venv/bin/python benchmarks/bench_backfill.py --count 100000     # a quicker look
    .venv/bin/python benchmarks/bench_backfill.py --stream-backlog 0 # the backfill alone

On the embedded local stack, every service its own process on loopback: moto's S3 server (in memory), bqemulator
(without per-write time-travel copies, as `workbench up` runs it) and this project's Pub/Sub emulator.

1. Seed: `workbench publish --history` of --count events (3% malformed, 2% duplicates) into S3 as --objects objects
   of mixed formats and compression (the publisher in this process); its events/s.
2. Backfill: `workbench backfill s3://...` as its own process (Beam's DirectRunner, which runs the batch job on the
   FnApiRunner, one worker), timed from start to exit; events/s over the records read, and the process's peak
   RSS (the kernel's maxrss of the child, so nothing is missed between samples); then `workbench reconcile`, whose
   verdict must be 0, and a second backfill (the rerun reads everything again and writes nothing).
3. Baseline, the streaming pipeline in the same run: `workbench run-pipeline` draining a backlog of
   --stream-backlog messages published before it starts (bench_pipeline.run_step), events/s from its start to its
   last row, and its peak RSS.
Figures go to the terminal; docs/benchmarks.md records them with the machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _machine import describe  # benchmarks/ is the script's folder, hence on sys.path
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
console = Console()
PROJECT = "bench-backfill"
BUCKET = "bench-history"


def _timed_child(args: list[str], env: dict[str, str], log: Path) -> tuple[float, float, int]:
    """Run `python -m workbench.cli ARGS`; (seconds, peak RSS in MB, exit status)."""
    started = time.monotonic()
    with log.open("w") as out:
        child = subprocess.Popen([sys.executable, "-m", "workbench.cli", *args], cwd=ROOT, env=env, stdout=out,
                                 stderr=subprocess.STDOUT)  # fmt: skip
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - started, usage.ru_maxrss / 1024, child.returncode


def seed(count: int, objects: int) -> tuple[str, float]:
    from generator.stream import GeneratorConfig
    from publisher.manifest import new_run_id
    from publisher.run import PublishPlan, publish
    from publisher.s3 import S3Target

    run_id = new_run_id()
    plan = PublishPlan(
        run_id=run_id,
        target=S3Target(f"s3://{BUCKET}/exports", format="mixed", compression="mixed", objects=objects),
        rate=1e9,  # unpaced, as `publish --history` without --rate
        count=count,
        generator=GeneratorConfig(
            seed=17,
            malformed_rate=0.03,
            duplicate_rate=0.02,
            history=(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)),
        ),
    )
    started = time.monotonic()
    result = publish(plan)
    assert result.status == "completed", result.status
    return run_id, count / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--stream-backlog", type=int, default=50_000)
    args = parser.parse_args()

    from ddl.apply import apply_ddl
    from workbench.localstack.emulators import start_bigquery_emulator, start_pubsub_emulator, start_s3_emulator
    from workbench.localstack.stack import create_pubsub_resources

    console.print(f"machine: {describe()}")
    home = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    os.environ.update({"NO_GCE_CHECK": "true", "WORKBENCH_HOME": str(home)})
    s3 = start_s3_emulator()
    pubsub = start_pubsub_emulator(project=PROJECT)
    bq = start_bigquery_emulator(project=PROJECT, time_travel=False)
    try:
        os.environ.update(s3.exports)
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub.target
        os.environ["BIGQUERY_EMULATOR_HOST"] = bq.endpoint  # for the reconcile child
        create_pubsub_resources(pubsub.target, PROJECT)
        apply_ddl(project=PROJECT, emulator=bq.host_port)
        s3.s3_client().create_bucket(Bucket=BUCKET)

        console.print(f"seeding {args.count:,} historical events into s3://{BUCKET}/exports ...")
        run_id, seed_rate = seed(args.count, args.objects)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        output = home / "output"
        flags = ["--project", PROJECT, "--output-root", str(output), "--bigquery-emulator", bq.host_port,
                 "--emulator", pubsub.target]  # fmt: skip
        console.print("backfilling ...")
        seconds, peak, code = _timed_child(["backfill", f"s3://{BUCKET}/exports", *flags], env, home / "backfill.log")
        assert code == 0, (home / "backfill.log").read_text()[-3000:]
        console.print("reconciling ...")
        reconcile = [sys.executable, "-m", "workbench.cli", "reconcile", run_id, "--project", PROJECT,
                     "--output-root", str(output)]  # fmt: skip
        verdict = subprocess.run(reconcile, cwd=ROOT, env=env, capture_output=True, text=True)
        console.print("backfilling again (a rerun writes nothing) ...")
        rerun_s, rerun_peak, rerun_code = _timed_child(["backfill", f"s3://{BUCKET}/exports", *flags], env,
                                                       home / "rerun.log")  # fmt: skip
        stream = None
        if args.stream_backlog:
            console.print(f"baseline: the streaming pipeline draining {args.stream_backlog:,} messages ...")
            sys.path.insert(0, str(Path(__file__).parent))
            import bench_pipeline

            stack = bench_pipeline.Stack.__new__(bench_pipeline.Stack)  # reuse this run's Pub/Sub and BigQuery
            stack.pubsub_emulator, stack.pubsub, stack.bq, stack.datasets = pubsub, pubsub.target, bq, 0
            stack._apply = apply_ddl
            bench_pipeline.PROJECT = PROJECT
            stream = bench_pipeline.run_step(stack, 0, 0, poll=False, backlog=args.stream_backlog)
    finally:
        bq.stop()
        pubsub.stop()
        s3.stop()

    table = Table(title=f"backfill of {args.count:,} historical events ({args.objects} objects), {describe()}")
    for column in ("what", "events", "seconds", "events/s", "vs stream", "peak RSS MB", "exit"):
        table.add_column(column, justify="left" if column == "what" else "right")
    stream_rate = stream["published"] / (stream["drain_s"] + 6) if stream else None  # run_step waits 6 s first
    rate = args.count / seconds
    table.add_row("seed (publish --history to S3)", f"{args.count:,}", f"{args.count / seed_rate:,.1f}",
                  f"{seed_rate:,.0f}", "", "", "0")  # fmt: skip
    table.add_row("backfill (first run)", f"{args.count:,}", f"{seconds:,.1f}", f"{rate:,.0f}",
                  f"{rate / stream_rate:.2f}x" if stream_rate else "", f"{peak:,.0f}", str(code))  # fmt: skip
    table.add_row("backfill (rerun, writes nothing)", f"{args.count:,}", f"{rerun_s:,.1f}",
                  f"{args.count / rerun_s:,.0f}", "", f"{rerun_peak:,.0f}", str(rerun_code))  # fmt: skip
    if stream:
        table.add_row("stream: run-pipeline draining a backlog (baseline)", f"{stream['published']:,}",
                      f"{stream['drain_s'] + 6:,.1f}", f"{stream_rate:,.0f}", "1.00x", f"{stream['peak_rss_mb']:,.0f}",
                      str(stream["exit"]))  # fmt: skip
    console.print(table)
    console.print(f"reconcile of the backfill: exit {verdict.returncode}")
    if verdict.returncode:
        console.print(verdict.stdout[-3000:], verdict.stderr[-3000:])


if __name__ == "__main__":
    main()
