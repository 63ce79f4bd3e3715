"""`workbench check`'s own overhead: the whole battery against this project's pipeline, beside a plain publish +
reconcile of the same events, measured in the same run on the same local stack.

    .venv/bin/python benchmarks/bench_check.py            # default battery settings (~86,000 messages; ~8 minutes)
    .venv/bin/python benchmarks/bench_check.py --quick    # 100/s for 5 s, burst 3 s (~4,000 messages; < 2 minutes)

1. Baseline, what a user would do by hand: `workbench run-pipeline --stop-when-idle 15` in the background, the
   battery's phases published as one run (publisher.run.publish, the library `workbench publish` calls), the
   pipeline left to drain and stop by itself, then `workbench reconcile RUN`. Timed: publish, publish -> pipeline
   ended (the drain, its 15 s idle wait included), the reconcile, and the total.
2. The battery: `workbench check --pipeline "workbench run-pipeline --stop-when-idle 15"` at the same settings (its
   own run, same seeds: the same events under new ids). Timed: the whole command.
The battery's overhead is its total minus the baseline's publish + drain (what the pipeline needs anyway): the
reconciles it polls with, reading each copy's lag, scoring and the reports. The target is under 90 s at the
default settings. Figures print as a table; docs/benchmarks.md records them with the machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import describe  # benchmarks/ is the script's folder, hence on sys.path
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
console = Console()
IDLE = "15s"
TARGET_OVERHEAD_S = 90.0


def workbench(env: dict[str, str], cwd: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def pipeline_command() -> list[str]:
    return [sys.executable, "-m", "workbench.cli", "run-pipeline", "--stop-when-idle", IDLE]


def baseline(env: dict[str, str], cwd: Path, settings) -> dict[str, float]:
    """Publish the battery's phases as one run by hand, let the pipeline drain, reconcile: each step timed."""
    from battery.scenarios import phases
    from publisher.manifest import new_run_id
    from publisher.run import PublishPlan, publish
    from publisher.sinks import PubSubTarget

    os.environ.update(env)
    pipeline = subprocess.Popen(pipeline_command(), cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        time.sleep(5)  # as the check gives its pipeline before publishing
        plan_phases = tuple(phases(settings))
        target = PubSubTarget(env["PUBSUB_PROJECT_ID"], "backend-events-topic", env["PUBSUB_EMULATOR_HOST"])
        run_id = new_run_id()
        began = time.monotonic()
        result = publish(PublishPlan(run_id=run_id, target=target, phases=plan_phases))
        published = time.monotonic()
        assert result.status == "completed", result
        code = pipeline.wait(1800)
        drained = time.monotonic()
        assert code == 0, f"the pipeline ended with {code}"
    finally:
        if pipeline.poll() is None:
            pipeline.kill()
            pipeline.wait(30)
    done = workbench(env, cwd, "reconcile", run_id)
    reconciled = time.monotonic()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"messages": float(result.totals.published), "publish_s": published - began, "drain_s": drained - published,
            "reconcile_s": reconciled - drained, "total_s": reconciled - began}  # fmt: skip


def battery(env: dict[str, str], cwd: Path, settings, reports: Path) -> dict[str, float]:
    args = ["check", "--pipeline", shlex.join(pipeline_command()), "--rate", f"{settings.rate:g}", "--duration",
            f"{settings.duration_s:g}s", "--burst-for", f"{settings.burst_s:g}s", "--junit", str(reports / "check.xml"),
            "--html", str(reports / "check.html"), "--json", str(reports / "check.json")]  # fmt: skip
    began = time.monotonic()
    done = workbench(env, cwd, *args)
    elapsed = time.monotonic() - began
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    return {"total_s": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small battery: 100/s for 5 s, burst 3 s")
    options = parser.parse_args()

    from battery.scenarios import BatterySettings
    from workbench.localstack.ports import free_port_pair

    settings = BatterySettings(rate=100, duration_s=5, burst_s=3) if options.quick else BatterySettings()
    with tempfile.TemporaryDirectory(prefix="bench-check-") as folder:
        cwd = Path(folder)
        env = {**os.environ, "WORKBENCH_HOME": str(cwd / "home"), "NO_GCE_CHECK": "true", "COLUMNS": "120"}
        for name in ("PUBSUB_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
            env.pop(name, None)
        pubsub, bigquery = free_port_pair(), free_port_pair()
        up = workbench(env, cwd, "up", "--pubsub-port", str(pubsub), "--bigquery-port", str(bigquery))
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            exports = workbench(env, cwd, "env").stdout
            env |= dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines()
                        if line.startswith("export "))  # fmt: skip
            console.print(f"machine: {describe()}")
            console.print("baseline: publish + drain + reconcile, by hand ...")
            base = baseline(env, cwd, settings)
            console.print("battery: workbench check ...")
            check = battery(env, cwd, settings, cwd)
        finally:
            workbench(env, cwd, "down", timeout=120)
    needed = base["publish_s"] + base["drain_s"]
    overhead = check["total_s"] - needed
    table = Table(title=f"workbench check vs publish + reconcile ({base['messages']:,.0f} messages)")
    for column in ("", "seconds", "vs baseline"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row("baseline: publish", f"{base['publish_s']:.1f}", "")
    table.add_row("baseline: drain (pipeline ended, 15 s idle included)", f"{base['drain_s']:.1f}", "")
    table.add_row("baseline: reconcile", f"{base['reconcile_s']:.1f}", "")
    table.add_row("baseline: total", f"{base['total_s']:.1f}", "1.00x")
    table.add_row("battery: workbench check, total", f"{check['total_s']:.1f}",
                  f"{check['total_s'] / base['total_s']:.2f}x")  # fmt: skip
    verdict = "met" if overhead < TARGET_OVERHEAD_S else "NOT met"
    table.add_row("battery overhead (total - baseline publish - drain)", f"{overhead:.1f}",
                  f"target < {TARGET_OVERHEAD_S:g} s: {verdict}")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
