"""`workbench demo`: the whole loop on the embedded local stack, ending in reconcile's verdict.

    stack up (if it is not) -> pipeline in the background -> publish a run -> pipeline drains and stops
    -> reconcile (exit status = reconcile's) -> stop what the demo started

A stack that was already up stays up, so the run can be inspected and reconciled again, and the demo restarts none
of its services: chaos needs the Pub/Sub emulator's admin service, and when the running emulator lacks it, the demo
restarts it only if that provably loses no message (durable, or nothing was ever published to it); otherwise it
refuses and says what to run.

Ctrl-C, SIGTERM and SIGHUP stop the demo the same way: the publish drains (a second signal stops it at once), the
pipeline it started is stopped, the stack it started goes down, and the exit status is 128 + the signal's number
(130, 143, 129).

With chaos, the Pub/Sub
emulator disturbs the run (seeded): duplicate deliveries, publish UNAVAILABLE, lost acks and delivery jitter on
the pipeline's topic and subscription, and the pipeline itself is killed (SIGKILL, at a seeded moment of the
publish) and started again; reconcile must still find nothing lost, nothing altered and no duplicate in the GCS
files (what the killed run had written but not yet acknowledged comes back as the same message: a redelivery,
reported, not a failure).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from eventmodel import resources as names
from eventmodel.resources import workbench_home
from publisher.manifest import new_run_id
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.publish_run import PublishSettings

# Chaos on the pipeline's own topic and subscription (never the dead-letter ones, which reconcile reads).
CHAOS_SUBSCRIPTION = {"duplicate_rate": 0.02, "lost_ack_rate": 0.02, "delay_ms": 20.0, "jitter_ms": 50.0}
CHAOS_TOPIC = {"publish_failure_rate": 0.02}
# A lost ack comes back after the subscription's ack deadline (workbench.localstack.stack.ACK_DEADLINE_S, 20 s):
# under chaos the pipeline waits past it so that redeliveries reach it (and its dedup) before it stops.
IDLE_S = 8.0
CHAOS_IDLE_S = 35.0
PIPELINE_START_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 600.0


@dataclass
class DemoOptions:
    rate: float = 500.0
    count: int | None = 5000
    duration: float | None = None  # seconds
    malformed_rate: float = 0.05
    duplicate_rate: float = 0.01
    seed: int = 1
    chaos: bool = False
    output_root: str = "./output"
    # Further `workbench publish` options the user gave (PublishSettings fields): they win over the demo's own.
    publish_options: dict[str, Any] = field(default_factory=dict)
    pubsub_port: int = names.PUBSUB_EMULATOR_PORT  # used when the demo starts the stack
    bigquery_port: int = names.BIGQUERY_EMULATOR_PORT

    def __post_init__(self) -> None:
        if self.duration:  # a run for this long, whatever the count
            self.count = None


def _stack_running() -> bool:
    from workbench.localstack.stack import status

    rows = {r["service"]: r["state"] for r in status()}
    return rows.get("pubsub") == "running" and rows.get("bigquery") == "running"


def _argv_value(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def running_config(state: dict[str, Any]) -> Any:
    """The StackConfig whose services are exactly the running ones (same command lines), so that `up` with it
    restarts nothing; None when no configuration reproduces them (another version started them)."""
    from workbench.localstack.stack import StackConfig

    services = state.get("services") or {}
    pubsub = services.get("pubsub")
    if not pubsub:
        return None
    data_dir = _argv_value(pubsub["argv"], "--data-dir")
    base = StackConfig(
        host=pubsub.get("host", names.LOCAL_HOST),
        project=state.get("project", names.DEFAULT_PROJECT),
        pubsub_port=pubsub["port"],
        data_dir=Path(data_dir) if data_dir else None,
        pubsub_admin="--admin" in pubsub["argv"],
        with_bigquery="bigquery" in services,
        bigquery_port=services.get("bigquery", {}).get("port", names.BIGQUERY_EMULATOR_PORT),
        with_gcs="gcs" in services,
        gcs_port=services.get("gcs", {}).get("port", names.GCS_EMULATOR_PORT),
        with_s3="s3" in services,
        s3_port=services.get("s3", {}).get("port", names.S3_SERVER_PORT),
    )
    running = {name: entry["argv"] for name, entry in services.items()}
    for persistent in (True, False):
        for time_travel in (False, True):
            config = replace(base, bigquery_persistent=persistent, bigquery_time_travel=time_travel)
            if {s.name: s.argv for s in config.services()} == running:
                return config
    return None


@contextlib.contextmanager
def local_stack(options: DemoOptions, on_step: Callable[[str], None]) -> Iterator[bool]:
    """The local stack for the demo; yields True when the demo started it (and stops it afterwards)."""
    from workbench.localstack import stack

    if _stack_running():
        state = stack.read_state()
        orphan = left_by_a_killed_demo(state)
        if orphan is not None:
            on_step(f"the running stack was started by a demo that was killed (pid {orphan}) before it could stop "
                    "it: this demo stops it at the end, as that one would have")  # fmt: skip
        else:
            on_step("local stack already up: it stays up after the demo")
        config = running_config(state)
        serves_admin = config is not None and config.pubsub_admin
        if options.chaos and not serves_admin:
            why = stack.restart_would_discard(state["services"]["pubsub"])
            if config is None:
                why = "this demo cannot tell how the running stack was started, so it would not restart it alike"
            if why:
                raise WorkbenchError(
                    "--chaos needs the Pub/Sub emulator's admin service, which the running stack's emulator was "
                    f"started without; restarting it would discard its messages: {why}",
                    "keep them: run the demo without --chaos; or, once the earlier runs are reconciled, "
                    "`workbench down` and `workbench demo --chaos` (it starts a stack of its own), or "
                    "`workbench up --pubsub-admin --data-dir DIR` for a stack whose Pub/Sub survives restarts",
                )
            on_step("chaos needs the Pub/Sub emulator's admin service: restarting it with --admin (it holds nothing "
                    "a restart could lose)")  # fmt: skip
            config = replace(config, pubsub_admin=True)
        if config is not None:
            stack.up(config, on_step)  # restarts nothing else; creates what is missing (topics, subscriptions, DDL)
        else:
            _create_resources(state, on_step)
        if orphan is None:
            yield False
            return
        _claim(stack.read_state())
        try:
            yield True
        finally:
            stack.down(on_step)
            _owner_path().unlink(missing_ok=True)
        return
    config = stack.StackConfig(
        pubsub_port=options.pubsub_port, bigquery_port=options.bigquery_port, pubsub_admin=options.chaos
    )
    try:
        stack.up(config, on_step, port_option="workbench demo --{}-port N")  # a taken port's fix names our option
    except (Stopped, KeyboardInterrupt):  # stopped while starting: what did start goes down again
        stack.down(on_step)
        raise
    _claim(stack.read_state())  # a demo SIGKILLed from here on leaves a stack the next demo knows it may stop
    try:
        yield True
    finally:
        stack.down(on_step)
        _owner_path().unlink(missing_ok=True)


def _owner_path() -> Path:
    return workbench_home() / "demo" / "stack-owner.json"


def _service_pids(state: dict[str, Any]) -> dict[str, int]:
    return {name: entry["pid"] for name, entry in (state.get("services") or {}).items()}


def _claim(state: dict[str, Any]) -> None:
    """Record that this demo started the running stack (its processes, by pid), to stop it at the end."""
    from publisher.manifest import this_process

    path = _owner_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps({"demo": this_process(), "services": _service_pids(state)}))


def left_by_a_killed_demo(state: dict[str, Any]) -> int | None:
    """The pid of the demo that started the running stack and was killed before stopping it (SIGKILL, a crash),
    or None: the stack is the user's (no claim, a live demo's, or services restarted since the claim)."""
    from publisher.manifest import process_gone

    try:
        claim = orjson.loads(_owner_path().read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if claim.get("services") != _service_pids(state) or not process_gone(claim.get("demo")):
        return None
    return claim["demo"]["pid"]


def _create_resources(state: dict[str, Any], on_step: Callable[[str], None]) -> None:
    """What `up` creates when missing, without touching the running services (whose settings are not known)."""
    from ddl.apply import apply_ddl
    from workbench.localstack.stack import create_pubsub_resources

    project = state.get("project", names.DEFAULT_PROJECT)
    pubsub = state["services"]["pubsub"]
    create_pubsub_resources(f"{pubsub.get('host', names.LOCAL_HOST)}:{pubsub['port']}", project)
    bigquery = state["services"].get("bigquery")
    if bigquery:
        apply_ddl(project=project, emulator=f"{bigquery.get('host', names.LOCAL_HOST)}:{bigquery['port']}")
    on_step("topics, subscriptions and the BigQuery model checked on the running stack")


class Stopped(BaseException):
    """SIGTERM or SIGHUP reached the demo: like KeyboardInterrupt, it unwinds through every cleanup."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """While the demo runs: SIGTERM and SIGHUP raise Stopped, as Ctrl-C raises KeyboardInterrupt, so that the
    cleanups run (the pipeline it started, the stack it started). Once stopping, further signals are ignored so
    that a second one cannot cut the cleanup short (each of its waits is bounded). The publish installs its own
    handlers while it runs (drain, then at once) and puts these back."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def stopping(self, signum: int) -> None:
        """A stop that arrived some other way (the publish ended interrupted): from now on, only clean up."""
        if self.signum is None:
            self.signum = signum

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Stopped(signum)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler)


@contextlib.contextmanager
def chaos(emulator: str, project: str, seed: int, on_step: Callable[[str], None]) -> Iterator[None]:
    from emulator.pubsub.admin import AdminClient

    admin = AdminClient(emulator)
    subscription = f"projects/{project}/subscriptions/{names.SUBSCRIPTION}"
    topic = f"projects/{project}/topics/{names.TOPIC}"
    admin.set_faults(subscription=subscription, seed=seed, **CHAOS_SUBSCRIPTION)
    admin.set_faults(topic=topic, seed=seed, **CHAOS_TOPIC)
    on_step(f"chaos on (seed {seed}): {CHAOS_SUBSCRIPTION} on the subscription, {CHAOS_TOPIC} on the topic")
    try:
        yield
    finally:
        injected = admin.faults().get("counts", {})
        admin.clear_faults(subscription)
        admin.clear_faults(topic)
        admin.channel.close()
        on_step(f"chaos off; faults injected: {injected}")


def start_pipeline(output_root: str, idle_s: float, log: Path, append: bool = False) -> subprocess.Popen:
    """`workbench run-pipeline` in the background, stopping once idle for idle_s (its output goes to log)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "workbench.cli", "run-pipeline", "--stop-when-idle", str(idle_s),
            "--output-root", output_root]  # fmt: skip
    with log.open("ab" if append else "wb") as sink:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "120"}, start_new_session=True)  # fmt: skip


def wait_until_reading(process: subprocess.Popen, log: Path, timeout: float = PIPELINE_START_TIMEOUT_S) -> None:
    """Until the pipeline's live view has drawn (it is pulling), or it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WorkbenchError(
                f"the pipeline exited while starting (status {process.returncode}); its output: {log}",
                "read the log; `workbench run-pipeline` alone shows the same error",
            )
        if log.exists() and b"DirectRunner" in log.read_bytes():
            return
        time.sleep(0.25)
    raise WorkbenchError(f"the pipeline did not start within {timeout:g} s (log: {log})", "read the log")


def wait_for_drain(process: subprocess.Popen, log: Path, timeout: float = DRAIN_TIMEOUT_S) -> None:
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the pipeline drains what it read, then exits
        code = process.wait(60)
    if code != 0:
        raise WorkbenchError(f"the pipeline ended with status {code}; its output: {log}", "read the log")


def stop_pipeline(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM to the pipeline's process group (it drains: what it read is written and acknowledged), SIGKILL if it
    is still there after timeout (what it had not acknowledged is delivered again to the next run)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


class PipelineCrash:
    """Chaos: SIGKILL the pipeline at a seeded moment of the publish, then start it again (same settings, the log
    appended). What the killed run read but had not acknowledged is redelivered to the new one."""

    def __init__(self, options: DemoOptions, idle_s: float, log: Path, on_step: Callable[[str], None]) -> None:
        expected_s = (options.count or 0) / options.rate if options.count else 10.0
        self.delay_s = random.Random(options.seed).uniform(0.3, 0.6) * max(expected_s, 2.0)
        self.options, self.idle_s, self.log, self.on_step = options, idle_s, log, on_step
        self.current: subprocess.Popen | None = None
        self._done = threading.Event()
        self._timer: threading.Timer | None = None

    def arm(self, pipeline: subprocess.Popen) -> PipelineCrash:
        self.current = pipeline
        self._timer = threading.Timer(self.delay_s, self._crash)
        self._timer.daemon = True
        self._timer.start()
        return self

    def _crash(self) -> None:
        try:
            os.killpg(self.current.pid, signal.SIGKILL)
            self.current.wait(30)
            self.on_step(f"chaos: killed the pipeline (SIGKILL) {self.delay_s:.1f} s into the publish; restarting it")
            with self.log.open("ab") as sink:
                sink.write(b"\n---- killed (SIGKILL) by demo --chaos; restarted ----\n")
            self.current = start_pipeline(self.options.output_root, self.idle_s, self.log, append=True)
        finally:
            self._done.set()

    def restarted(self, timeout: float = PIPELINE_START_TIMEOUT_S) -> subprocess.Popen:
        """The pipeline after the crash (waits for the crash if the publish ended first)."""
        self._done.wait(self.delay_s + timeout)
        return self.current

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def run_demo(options: DemoOptions, on_step: Callable[[str], None]) -> int:
    """The loop; returns reconcile's exit status (0 matched, 1 mismatch), or 128 + the signal that stopped it
    (Ctrl-C, SIGTERM, SIGHUP) once what the demo started is stopped."""
    with StopSignals() as signals:
        try:
            return _run_demo(options, on_step, signals)
        except Stopped as stop:
            on_step(f"stopped by {signal.Signals(stop.signum).name}: what the demo started is stopped")
            return 128 + stop.signum
        except KeyboardInterrupt:
            on_step("stopped by SIGINT: what the demo started is stopped")
            return 128 + signal.SIGINT
        except SystemExit:
            if signals.signum is not None:  # the publish ended interrupted by this signal
                on_step(f"stopped by {signal.Signals(signals.signum).name}: what the demo started is stopped")
                return 128 + signals.signum
            raise


def publish_settings(options: DemoOptions, run_id: str, project: str) -> PublishSettings:
    """The demo's publish: its own rate, shares and seed, under its run id, with the user's further options over
    them (each counts as given, as on a command line: a --replay refuses what differs from its run)."""
    from workbench.publish_run import PublishSettings

    own: dict[str, Any] = {"rate": options.rate, "malformed_rate": options.malformed_rate,
                           "duplicate_rate": options.duplicate_rate, "seed": options.seed, "run_id": run_id,
                           "project": project}  # fmt: skip
    if options.duration:
        own["duration"] = options.duration
    elif options.count:
        own["count"] = options.count
    chosen = {**own, **options.publish_options}
    return PublishSettings(**chosen, given=frozenset(chosen))


def _run_demo(options: DemoOptions, on_step: Callable[[str], None], signals: StopSignals) -> int:
    from workbench.localstack.stack import local_endpoints
    from workbench.pipeline_run.subscription_lock import refuse_if_claimed
    from workbench.publish_run import run_publish
    from workbench.reconcile_run import run_reconcile

    run_id = new_run_id()
    log = workbench_home() / "demo" / f"pipeline-{run_id}.log"
    with local_stack(options, on_step) as started:
        endpoints = local_endpoints()
        os.environ.update({"PUBSUB_EMULATOR_HOST": endpoints.pubsub, "BIGQUERY_EMULATOR_HOST": endpoints.bigquery})
        from workbench.localstack.stack import read_state

        project = read_state().get("project", names.DEFAULT_PROJECT)
        # A pipeline of the user's already reading the subscription would split the demo's messages with it.
        refuse_if_claimed(project, names.SUBSCRIPTION)
        disturb = chaos(endpoints.pubsub, project, options.seed, on_step) if options.chaos else None
        idle_s = CHAOS_IDLE_S if options.chaos else IDLE_S
        with disturb or contextlib.nullcontext():
            pipeline = start_pipeline(options.output_root, idle_s, log)
            crash = None
            try:
                on_step(f"pipeline starting in the background (log: {log})")
                wait_until_reading(pipeline, log)
                if options.chaos:
                    crash = PipelineCrash(options, idle_s, log, on_step).arm(pipeline)
                status = run_publish(publish_settings(options, run_id, project))
                if status:
                    if status > 128:  # the publish was stopped by a signal
                        signals.stopping(status - 128)
                    raise SystemExit(status)
                if crash is not None:
                    pipeline = crash.restarted()
                on_step("published; waiting for the pipeline to drain and stop")
                wait_for_drain(pipeline, log)
            finally:
                if crash is not None:
                    crash.cancel()
                    pipeline = crash.current or pipeline
                if pipeline.poll() is None:
                    stop_pipeline(pipeline)
        on_step("reconciling")
        report = run_reconcile(run_id, output_root=options.output_root, project=project, wait_s=30)
        if started:
            on_step(
                "the demo started the local stack and stops it now: the Pub/Sub emulator's messages (the dead-letter "
                f"topic among them) go with it; the files in {options.output_root} and BigQuery's tables stay. To "
                "inspect and reconcile a run again afterwards, start the stack first (`workbench up`): a stack that "
                "was already up stays up."
            )
    return report.exit_code
