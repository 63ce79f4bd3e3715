"""`workbench check`: the standard battery against any pipeline, judged per scenario and property.

    (pipeline started through `workbench exec`, when --pipeline names one)
    -> one run published, its phases the scenarios (battery.scenarios), each message tagged with its scenario
    -> the sinks polled (a reconcile per poll) until they settle, with what is still missing per scenario
    -> the last reconcile's verdict and each event's lag per sink, scored (battery.scorecard)
    -> the terminal scorecard, and --html / --junit / --json

Exit status: 0 every property holds, 1 one does not, 2 the check could not run (each case with its fix), and
128 + N when signal N stopped it (what it started is stopped first).

A pipeline started here runs under `workbench exec --stop-when-idle`: once the battery is published and the
pipeline has read nothing for that long, it drains and ends by itself. A pipeline running elsewhere (Dataflow,
another terminal) is only read: the check waits for its sinks to settle, as `reconcile --wait` does.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from battery import scenarios as S
from battery.model import Budgets, CheckData, Lag, Phase, SentEvent
from endpoints.errors import FixableError
from eventmodel.resources import TOPIC, workbench_home
from publisher.manifest import iter_events, new_run_id, read_manifest, run_dir
from workbench.errors import WorkbenchError

# A --pipeline that ends within this long of its start never read the battery: refused (exit 2) with its output.
STARTUP_S = 5.0
PIPELINE_IDLE_S = 15.0  # `workbench exec --stop-when-idle`: how long without a message before it drains and ends
STOP_TIMEOUT_S = 120.0  # a pipeline asked to stop (SIGTERM: it drains) before it is killed
LOG_TAIL = 25  # lines of a failed pipeline's output shown
EXAMPLE = "python my_pipeline.py --streaming"


@dataclass
class CheckOptions:
    sinks: Path | None = None  # the sink contract; None: this project's pipeline (the built-in contract)
    pipeline: str | None = None  # a command to run through `workbench exec`; None: a pipeline running elsewhere
    scenarios: tuple[str, ...] = ()  # none: all
    battery: S.BatterySettings = field(default_factory=S.BatterySettings)
    budgets: Budgets = field(default_factory=Budgets)
    project: str | None = None
    emulator: str | None = None
    output_root: str | None = None  # overrides the contract's GCS root (default ./output for the built-in)
    dataset: str | None = None  # overrides the contract's dataset
    wait_s: float = 600.0  # after the publish, how long the sinks may take to settle
    idle_s: float = PIPELINE_IDLE_S
    allow_foreign: bool = False
    engine: str = "auto"  # where reconcile compares (reconcile.run.ReconcileTarget.engine)
    json_path: Path | None = None
    html_path: Path | None = None
    junit_path: Path | None = None


def check_options(*, sinks_path: Path | None, rate: float, duration_s: float, burst_s: float, repeats: int,
                  seed: int | None, latency_budget: float, drain_budget: float, wait_s: float, idle_s: float,
                  scenarios: tuple[str, ...], **options: Any) -> CheckOptions:  # fmt: skip
    """The CheckOptions of `workbench check`'s options (names as the command reads them), each time limit refused
    in the command's words unless it is more than 0; no --seed draws one (the report names it)."""
    import secrets

    import click

    for option, value in (("--wait", wait_s), ("--latency-budget", latency_budget), ("--drain-budget", drain_budget),
                          ("--stop-when-idle", idle_s)):  # fmt: skip
        if value <= 0:
            raise click.BadParameter("must be more than 0 seconds", param_hint=option)
    if seed is None:
        seed = secrets.randbelow(1_000_000)
    battery = S.BatterySettings(rate=rate, duration_s=duration_s, burst_s=burst_s, seed=seed, repeats=repeats)
    return CheckOptions(sinks=sinks_path, scenarios=tuple(scenarios), battery=battery, wait_s=wait_s, idle_s=idle_s,
                        budgets=Budgets(latency_s=latency_budget, drain_s=drain_budget), **options)  # fmt: skip


class CheckView:
    """What the check shows while it runs; workbench.check_view draws it, tests pass a silent one."""

    def step(self, text: str) -> None: ...

    def publishing(self) -> Any:
        """A context whose value has update(publisher) (publisher.run's on_progress), or None."""
        return contextlib.nullcontext(None)

    def waiting(self) -> Any:
        """A context whose value has poll(missing_by_scenario, report, remaining_s, note) and
        unreadable(message, remaining_s)."""
        return contextlib.nullcontext(None)

    def scorecard(self, card: Any, data: CheckData) -> None: ...


def run_check(options: CheckOptions, view: CheckView | None = None) -> int:
    """The battery, start to verdict; returns the exit status (see the module's docstring). WorkbenchError: exit 2."""
    from workbench.demo import Stopped, StopSignals

    view = view or CheckView()
    with StopSignals() as signals:
        try:
            return _run_check(options, view, signals)
        except Stopped as stop:
            view.step(f"stopped by {signal.Signals(stop.signum).name}: what the check started is stopped")
            return 128 + stop.signum
        except KeyboardInterrupt:
            view.step("stopped by SIGINT: what the check started is stopped")
            return 128 + signal.SIGINT


def _run_check(options: CheckOptions, view: CheckView, signals: Any) -> int:
    from publisher.run import Publisher, PublishPlan, run_with_signals
    from reconcile.contract import ContractError

    began = time.monotonic()
    chosen = _scenarios(options)
    plan_phases = S.phases(options.battery, chosen)
    check_report_paths(options)
    try:
        target = reconcile_target(options)
        contract = target.contract()
    except ContractError as exc:
        raise WorkbenchError(exc.message, exc.fix) from None
    pubsub = _pubsub(options)
    run_id = new_run_id()
    plan = PublishPlan(run_id=run_id, target=pubsub, rate=plan_phases[0].rate, phases=tuple(plan_phases))
    try:
        plan.check()
    except ValueError as exc:
        raise WorkbenchError(f"the battery cannot be published: {exc}", "see the option it names") from None
    view.step(f"battery {', '.join(p.name for p in plan_phases)} (seed {options.battery.seed}: --seed "
              f"{options.battery.seed} repeats it) as run {run_id} to {_where(pubsub)}; sinks judged by "
              f"{contract.name}")  # fmt: skip
    pipeline = start_pipeline(options, run_id, view) if options.pipeline else None
    try:
        publisher = Publisher(plan)
        with view.publishing() as live:
            result = run_with_signals(publisher, live.update if live else None)
        if result.status == "interrupted":
            signals.stopping(publisher.stop_signal or signal.SIGINT)
            view.step(f"publish interrupted: run {run_id} holds what was sent before the stop")
            return 128 + (publisher.stop_signal or signal.SIGINT)
        if result.status != "completed":
            raise WorkbenchError(
                "the battery's publish failed: " + "; ".join(result.totals.errors or ["a worker ended early"]),
                f"see the errors above; the manifest is {run_dir(run_id) / 'manifest.json'}",
            )
        events = sent_events(run_id)
        report, lags = settle(run_id, target, options, events, pipeline, view)
    finally:
        if pipeline is not None and pipeline.process.poll() is None:
            view.step("stopping the pipeline (it drains what it read)")
            stop_pipeline(pipeline.process)
    data = CheckData(
        run_id=run_id,
        contract=contract.name,
        promise=contract.duplicates,
        sinks=[sink for sink, on in report.checked.items() if on],
        phases=phases_of(read_manifest(run_id)),
        report=report.to_dict(),
        events=events,
        lags=lags,
        budgets=options.budgets,
        pipeline=options.pipeline,
        notes=list(report.notes),
        elapsed_s=round(time.monotonic() - began, 3),
    )
    return finish(data, options, view)


def finish(data: CheckData, options: CheckOptions, view: CheckView) -> int:
    """Score, show, write the reports asked for; the exit status (a report that cannot be written: exit 2)."""
    from battery.scorecard import score

    card = score(data)
    try:
        view.scorecard(card, data)
    finally:  # the reports are what CI keeps: written even when the terminal is gone
        write_reports(card, data, options, on_written=view.step)
    return card.exit_code


def _scenarios(options: CheckOptions) -> tuple[str, ...]:
    try:
        S.select(options.scenarios)
        options.battery.check()
    except FixableError as exc:
        raise WorkbenchError(exc.message, exc.fix) from None
    return options.scenarios


def _where(target: Any) -> str:
    where = f"emulator {target.emulator_host}" if target.emulator_host else "Google Cloud"
    return f"projects/{target.project}/topics/{target.topic} ({where})"


def _pubsub(options: CheckOptions) -> Any:
    """The topic the battery is published to, found as `workbench publish` finds it (its refusal when there is
    neither an emulator nor a project says what to do), and checked before anything is sent."""
    from publisher.sinks import check_pubsub
    from workbench.publish_run import pubsub_target

    target = pubsub_target(options.project, TOPIC, options.emulator)
    check_pubsub(target)
    return target


def reconcile_target(options: CheckOptions) -> Any:
    """The ReconcileTarget the check judges by: the contract's GCS root and dataset unless the options name them,
    the local stack's endpoints when it runs (none for a real project)."""
    from eventmodel.resources import DATASET, DEFAULT_PROJECT, resolve_project
    from reconcile.contract import load_contract
    from reconcile.run import ReconcileTarget
    from workbench.localstack.stack import local_endpoints

    output_root, dataset = options.output_root, options.dataset
    if options.sinks:
        contract = load_contract(options.sinks)
        output_root = output_root or (contract.gcs.root if contract.gcs else None)
        dataset = dataset or (contract.dataset if contract.tables or contract.dead_letters.table else None)
    else:
        output_root, dataset = output_root or "./output", dataset or DATASET
    project = resolve_project(options.project, DEFAULT_PROJECT)
    return ReconcileTarget(endpoints=local_endpoints(), output_root=output_root, project=project, dataset=dataset,
                           sinks=str(options.sinks) if options.sinks else None,
                           allow_foreign=options.allow_foreign, engine=options.engine)  # fmt: skip


def check_report_paths(options: CheckOptions) -> None:
    """Refuse, before any work, a report path that cannot be written (exit 1 then always means a failed property)."""
    from workbench.report_files import check_output

    paths = [(o, p) for o, p in (("--json", options.json_path), ("--html", options.html_path),
                                 ("--junit", options.junit_path)) if p]  # fmt: skip
    seen: dict[str, str] = {}
    for option, path in paths:
        key = os.path.abspath(path)
        if key in seen:
            raise WorkbenchError(f"{seen[key]} and {option} name the same file {path}", "give each its own file")
        seen[key] = option
        check_output(option, Path(path))


# --- the pipeline under test ---------------------------------------------------------------------------------


@dataclass
class RunningPipeline:
    process: subprocess.Popen
    log: Path
    started: float


def start_pipeline(options: CheckOptions, run_id: str, view: CheckView) -> RunningPipeline:
    """--pipeline's command through `workbench exec` (the stack's environment, Beam's IO redirected), in a process
    group of its own, its output in a log; refused (exit 2) when it ends at once."""
    try:
        argv = shlex.split(options.pipeline or "")
    except ValueError as exc:
        raise WorkbenchError(f"--pipeline {options.pipeline!r} cannot be split into words: {exc}",
                             f"quote it as a shell would, e.g. --pipeline {EXAMPLE!r}") from None  # fmt: skip
    if not argv:
        raise WorkbenchError("--pipeline is empty", f"name the command, e.g. --pipeline {EXAMPLE!r}")
    log = workbench_home() / "check" / run_id / "pipeline.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "workbench.cli", "exec", "--stop-when-idle", f"{options.idle_s:g}s", "--", *argv]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                   env={**os.environ, "COLUMNS": "120"}, start_new_session=True)  # fmt: skip
    view.step(f"pipeline started through `workbench exec` (log: {log})")
    pipeline = RunningPipeline(process, log, time.monotonic())
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WorkbenchError(
                f"the pipeline command exited at once (status {process.returncode}), before the battery could be "
                f"published; its last output:\n{log_tail(log)}",
                f"run it alone with `workbench exec -- {shlex.join(argv)}` and make it keep reading the topic "
                "(a streaming pipeline: e.g. --streaming)",
            )
        time.sleep(0.1)
    return pipeline


def log_tail(log: Path, lines: int = LOG_TAIL) -> str:
    try:
        text = log.read_text(errors="replace").rstrip()
    except OSError:
        return "  (no output)"
    return "\n".join("  " + line for line in (text.splitlines()[-lines:] or ["(no output)"]))


def stop_pipeline(process: subprocess.Popen) -> None:
    """SIGTERM to the pipeline's group (`workbench exec` passes it on: the pipeline drains), SIGKILL after
    STOP_TIMEOUT_S: the demo's way, with the time a slow pipeline needs to drain."""
    from workbench.demo import stop_pipeline as stop

    stop(process, STOP_TIMEOUT_S)


# --- waiting for the sinks -------------------------------------------------------------------------------------


def settle(run_id: str, target: Any, options: CheckOptions, events: list[SentEvent],
           pipeline: RunningPipeline | None, view: CheckView) -> tuple[Any, list[Lag]]:  # fmt: skip
    """Reconcile until the run matches, or the pipeline started here has ended (it drains and ends by itself once
    idle), or, for a pipeline running elsewhere, its sinks stop changing; at options.wait_s, a pipeline started here
    is stopped (it drains) and reconciled once more. Returns the last report and each event's lags."""
    from battery.scorecard import missing_by_scenario
    from reconcile.errors import NotYetReadable
    from reconcile.run import STABLE_FOR_S

    deadline = time.monotonic() + options.wait_s
    published = first_published(events)
    last: tuple | None = None
    stable_since = time.monotonic()
    with view.waiting() as live:
        while True:
            ended = pipeline is not None and pipeline.process.poll() is not None
            try:
                report, lags = reconcile_with_lags(run_id, target, published)
            except NotYetReadable as exc:
                # A pipeline creates its tables and folders as it writes: until then its sinks cannot be read. Given
                # up on once the pipeline started here has ended, or the wait ran out.
                if ended or time.monotonic() >= deadline:
                    raise
                if live:
                    live.unreadable(exc.message, max(0.0, deadline - time.monotonic()))
                time.sleep(min(target.poll_interval(), max(0.0, deadline - time.monotonic())))
                continue
            remaining = deadline - time.monotonic()
            signature = (tuple(sorted(report.sizes.items())), tuple(sorted(report.problem_counts.items())))
            if signature != last:
                last, stable_since = signature, time.monotonic()
            # A pipeline started here may write slowly but steadily (a row per line item of a bulk order): its sinks
            # are final when it has ended. One running elsewhere is judged once its sinks stop changing.
            stable = pipeline is None and time.monotonic() - stable_since >= STABLE_FOR_S
            note = _settle_note(report, ended, stable, remaining, pipeline)
            if live:
                live.poll(missing_by_scenario(report.to_dict(), events), report, max(0.0, remaining), note)
            if report.matched or ended or stable or remaining <= 0:
                if remaining <= 0 and pipeline is not None and not ended:
                    view.step(f"the wait ran out (--wait {options.wait_s:g}s): stopping the pipeline, which drains")
                    stop_pipeline(pipeline.process)
                    report, lags = reconcile_with_lags(run_id, target, published)  # what it wrote while draining
                if not report.matched and note:
                    report.notes.append(note)
                if pipeline is not None and pipeline.process.returncode not in (None, 0):
                    report.notes.append(f"the pipeline ended with status {pipeline.process.returncode}; its last "
                                        f"output:\n{log_tail(pipeline.log)}")  # fmt: skip
                return report, lags
            time.sleep(min(target.poll_interval(), max(0.0, remaining)))


def _settle_note(report: Any, ended: bool, stable: bool, remaining: float, pipeline: Any) -> str:
    if report.matched:
        return ""
    if ended:
        return "the pipeline started by the check has ended: its sinks are final"
    if stable:
        from reconcile.run import STABLE_FOR_S

        return f"the sinks did not change for {STABLE_FOR_S:g} s: stopped waiting"
    if remaining <= 0:
        return "the wait ran out (--wait) before the sinks settled"
    return "waiting for the pipeline" if pipeline else "waiting for the sinks"


def reconcile_with_lags(run_id: str, target: Any, published: dict[str, int]) -> tuple[Any, list[Lag]]:
    """One reconcile of the run, and from the same engine each copy's publish and landed time per sink."""
    from reconcile.queries import LAGS, render
    from reconcile.run import reconcile

    engine = target.make_engine()
    try:
        report = reconcile(run_id, target, engine=engine)
        rows = engine.run(render(LAGS, engine.tables, report.run_id, report.checked))
    finally:
        engine.close()
    return report, lags_of(rows, published)


def lags_of(rows: list[dict[str, Any]], published: dict[str, int]) -> list[Lag]:
    """Each copy's Lag; a sink that keeps no publish time is timed from the publisher's acknowledgement of the
    event's first message (`published`: event id -> epoch ms), and a copy with neither is left out."""
    lags = []
    for r in rows:
        start = r["publish_ms"] if r["publish_ms"] is not None else published.get(r["event_id"])
        if start is not None:
            lags.append(Lag(r["event_id"], r["sink"], int(start), int(r["landed_ms"])))
    return lags


def first_published(events: list[SentEvent]) -> dict[str, int]:
    """Event id -> when its first message's publish was acknowledged (a re-send's copy counts from the first)."""
    found: dict[str, int] = {}
    for e in events:
        if e.published_ms is not None and (e.event_id not in found or e.published_ms < found[e.event_id]):
            found[e.event_id] = e.published_ms
    return found


# --- the run's manifest ------------------------------------------------------------------------------------------


def sent_events(run_id: str) -> list[SentEvent]:
    """The run's published messages, with their scenario (publisher.manifest's events-*.csv)."""
    return [
        SentEvent(
            event_id=row["event_id"],
            scenario=row.get("scenario") or "",
            expected=row["expected"],
            event_type=row["event_type"],
            kind=row["kind"] or None,
            reason=row["reason"] or None,
            event_time=row["event_time"] or None,
            duplicate=row["duplicate"] == "1",
            message_id=row["message_id"] or None,
            published_ms=int(row["outcome_ms"]) if row.get("outcome_ms") else None,
        )
        for row in iter_events(run_id)
        if row["outcome"] == "published"
    ]


def phases_of(manifest: dict[str, Any]) -> list[Phase]:
    """The scenarios as the manifest recorded them (publisher.run: `phases`), with their wall-clock spans."""

    def ms(text: str | None) -> int:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000) if text else 0

    return [Phase(p["name"], float(p["rate"]), int(p.get("seed") or p.get("generator", {}).get("seed") or 0),
                  ms(p.get("started_at")), ms(p.get("finished_at")), int(p.get("published") or p.get("sent") or 0))
            for p in manifest.get("phases") or []]  # fmt: skip


# --- reports -----------------------------------------------------------------------------------------------------


def write_reports(card: Any, data: CheckData, options: CheckOptions,
                  on_written: Callable[[str], None] | None = None) -> None:  # fmt: skip
    from battery.html import write_html
    from battery.junit import to_junit

    elapsed = data.elapsed_s
    writers = (
        ("--json", options.json_path, lambda p: p.write_bytes(orjson.dumps(
            {"run_id": data.run_id, "scorecard": card.to_dict(), "reconcile": data.report},
            default=str, option=orjson.OPT_INDENT_2))),
        ("--junit", options.junit_path, lambda p: p.write_text(to_junit(card, data.run_id, elapsed))),
        ("--html", options.html_path, lambda p: write_html(card, data, p)),
    )  # fmt: skip
    for option, path, write in writers:
        if not path:
            continue
        try:
            write(Path(path))
        except OSError as exc:
            raise WorkbenchError(
                f"the check ran (scorecard above) but its {option} report {path} could not be written: "
                f"{exc.strerror or exc}",
                "free space or permissions on that folder, or pass another path; then run the check again",
            ) from None
        if on_written:
            on_written(f"{option.removeprefix('--')} report: {path}")
