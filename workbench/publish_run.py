"""What `workbench publish` does once its options are read: find the target, plan the run (a replay takes its
settings from the run it replays), check the target, publish with the live view, and say how it ended.

    status = run_publish(PublishSettings(count=1000, to="events.jsonl"))  # the exit status

The demo publishes through this too. Exit statuses (the command's): 0 published (failed messages are recorded and
warned about); 128 + the signal that interrupted it (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP). A run that failed, or a
problem a user can fix, raises WorkbenchError (exit 2); options that do not go together raise click's UsageError
(exit 2), in the command's words.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from eventmodel.resources import DEFAULT_PROJECT, TOPIC, resolve_project
from publisher import objects as layout
from publisher.errors import PublishError
from publisher.manifest import new_run_id, run_dir
from publisher.s3 import S3Target, check_s3
from publisher.sinks import FileTarget, PubSubTarget, check_pubsub, open_for_append
from workbench import terminal
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from generator.stream import GeneratorConfig
    from publisher.run import PublishPlan

EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"
DEFAULT_RATE = 100.0
# History written to S3 is not paced unless --rate says so: far above what one process can write.
UNPACED_RATE = 1e9


@dataclass(frozen=True)
class PublishSettings:
    """The options of `workbench publish`, as the command read them (durations in seconds)."""

    rate: float | None = None  # None: DEFAULT_RATE, or unpaced to s3://
    profile: str = "constant"
    duration: float | None = None
    count: int | None = None
    malformed_rate: float = 0.0
    malformed_kinds: dict[str, float] | None = None
    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    max_lateness: float = 600.0
    out_of_order_rate: float = 0.0
    history: tuple[datetime, datetime] | None = None
    seed: int = 0
    to: str | None = None  # FILE, "-", or s3://BUCKET/PREFIX; None: Pub/Sub
    object_format: str | None = None
    compression: str | None = None
    gzip_objects: bool = False
    objects: int | None = None
    split_by_type: bool = False
    project: str | None = None
    topic: str = TOPIC
    emulator: str | None = None
    workers: int = 1
    run_id: str | None = None
    replay: str | None = None
    # The options the user gave (names as above): a replay refuses a given value that differs from its run's.
    given: frozenset[str] = frozenset()


def run_publish(s: PublishSettings) -> int:
    """Publish as `s` says; the exit status."""
    from publisher.run import Publisher, run_with_sigint
    from workbench.publish_view import LiveView, describe_target, summary

    plan = plan_of(s)
    target = plan.target
    if run_dir(plan.run_id).exists():
        raise WorkbenchError(f"run {plan.run_id!r} already exists", "choose another --run-id, or leave it out")
    # The preflight's PublishError reaches the user as it is: main() shows every FixableError with its fix.
    if isinstance(target, PubSubTarget):
        check_pubsub(target)
    elif isinstance(target, S3Target):
        check_s3(target)
    elif target.path != "-":
        open_for_append(target.path).close()  # unwritable paths fail here, before the run starts

    terminal.info(f"publishing run [bold]{plan.run_id}[/bold] to {describe_target(target, plan.run_id)}")
    publisher = Publisher(plan)
    with LiveView(publisher) as view:
        result = run_with_sigint(publisher, view.update)
    # After SIGHUP the terminal may be gone: the manifest is written, so a summary that cannot be shown is no error.
    with contextlib.suppress(OSError):
        for table in summary(result):
            terminal.console.print(table)
        terminal.info(f"manifest: {run_dir(plan.run_id) / 'manifest.json'}")
    return ending(result, publisher)


def plan_of(s: PublishSettings) -> PublishPlan:
    """The run `s` asks for, checked: its target, generator settings, pace and size."""
    from publisher.run import PublishPlan

    target = target_of(s)
    generator, rate, profile, count, workers = _generator_of(s), s.rate, s.profile, s.count, s.workers
    if rate is None:
        rate = UNPACED_RATE if isinstance(target, S3Target) else DEFAULT_RATE
    if s.replay:
        generator, rate, profile, count, workers = _replaying(s, generator, rate)
    plan = PublishPlan(run_id=s.run_id or new_run_id(), target=target, rate=rate, profile=profile, count=count,
                       duration=s.duration, workers=workers, generator=generator)  # fmt: skip
    try:
        plan.check()
    except ValueError as exc:
        raise click.UsageError(_as_flags(str(exc))) from None
    return plan


def target_of(s: PublishSettings) -> Any:
    """Where the events go: S3 objects, a file (or stdout), or Pub/Sub; the S3 options refused elsewhere."""
    s3_flags = {
        "--format": s.object_format,
        "--compression": s.compression,
        "--gzip": s.gzip_objects or None,
        "--objects": s.objects,
        "--split-by-type": s.split_by_type or None,
    }
    if s.to is not None and s.to.startswith("s3://"):
        if s.gzip_objects and s.compression not in (None, layout.GZIP):
            raise click.UsageError(
                f"--gzip is --compression gzip: drop one of --gzip and --compression {s.compression}"
            )
        return S3Target(
            s.to,
            format=s.object_format or layout.NDJSON,
            compression=layout.GZIP if s.gzip_objects else s.compression or layout.NONE,
            objects=1 if s.objects is None else s.objects,
            split_by_type=s.split_by_type,
        )
    if given := [flag for flag, value in s3_flags.items() if value is not None]:
        raise click.UsageError(f"{', '.join(given)} apply to --to s3://BUCKET/PREFIX only")
    if s.to is not None:
        return FileTarget(s.to)
    return pubsub_target(s.project, s.topic, s.emulator)


def _generator_of(s: PublishSettings) -> GeneratorConfig:
    from generator.stream import GeneratorConfig

    return GeneratorConfig(
        seed=s.seed,
        malformed_rate=s.malformed_rate,
        malformed_weights=s.malformed_kinds,
        duplicate_rate=s.duplicate_rate,
        late_rate=s.late_rate,
        max_lateness_s=s.max_lateness,
        out_of_order_rate=s.out_of_order_rate,
        history=s.history,
    )


def ending(result: Any, publisher: Any) -> int:
    """The exit status of a finished publish, after saying what a failed or interrupted one left behind."""
    if result.status == "failed":
        raise WorkbenchError(
            "the run failed: " + "; ".join(result.totals.errors or ["a worker ended early"]),
            "see the errors above; the manifest records everything that was published",
        )
    if result.totals.failed:
        terminal.warning(f"{result.totals.failed:,} messages failed after retries (recorded as failed)")
    if result.status != "interrupted":
        return 0
    stopped_by = publisher.stop_signal or signal.SIGINT
    name, in_flight = signal.Signals(stopped_by).name, result.totals.in_flight
    how = f"stopped at once ({name}, then a second signal)" if publisher.aborting else f"interrupted ({name})"
    with contextlib.suppress(OSError):
        if in_flight:
            terminal.warning(
                f"{how}: {in_flight:,} messages were in flight and their outcome is unknown, so reconcile refuses "
                f"this run; {result.totals.published:,} published are recorded in the manifest"
            )
        else:
            terminal.warning(
                f"{how}: everything sent before the stop has its outcome in the manifest; "
                f"`workbench reconcile {result.run_id}` checks it"
            )
    return 128 + stopped_by  # the shell's convention: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP


def pubsub_target(project: str | None, topic: str, emulator: str | None) -> PubSubTarget:
    """Where a Pub/Sub publish goes, found as run-pipeline and reconcile find it: --emulator, else
    PUBSUB_EMULATOR_HOST, else real Pub/Sub when --project names a project, else the running local stack, else real
    Pub/Sub with the project from the environment. Says which it chose."""
    from workbench.localstack.stack import local_endpoints

    resolved = resolve_project(project, DEFAULT_PROJECT)
    if emulator or os.environ.get(EMULATOR_ENV):
        host = emulator or os.environ[EMULATOR_ENV]
        source = "--emulator" if emulator else EMULATOR_ENV
    elif project:
        host, source = None, "--project"
    else:
        stack = local_endpoints()  # what `workbench up` started, in the project it created the topics in
        host, source = stack.pubsub, "the running local stack (`workbench up`)"
        resolved = (stack.project or resolved) if host else resolved
    if host is None and resolved == DEFAULT_PROJECT:
        raise WorkbenchError(
            "no Pub/Sub emulator is running and no GCP project is named",
            "start the local stack (`workbench up`), pass --emulator HOST:PORT, or name a project with --project P",
        )
    where = f"the emulator at {host}" if host else f"real Pub/Sub in project {resolved}"
    terminal.info(f"target: {where} (from {source if host or project else 'the environment'})")
    return PubSubTarget(resolved, topic, host)


# Options a replay takes from the run it replays (option -> GeneratorConfig field): a different value would send
# other events.
_REPLAYED = {"seed": "seed", "malformed_rate": "malformed_rate", "malformed_kinds": "malformed_weights",
             "duplicate_rate": "duplicate_rate", "late_rate": "late_rate", "max_lateness": "max_lateness_s",
             "out_of_order_rate": "out_of_order_rate", "history": "history"}  # fmt: skip


def _replaying(s: PublishSettings, asked: GeneratorConfig, rate: float):
    """The generator settings, rate, profile, count and workers of a replay of run `s.replay`."""
    from publisher.manifest import load_manifest
    from publisher.replay import replay_config

    run, profile, count = s.replay, s.profile, s.count
    origin = load_manifest(run)
    if origin is None:
        raise WorkbenchError(f"no run {run!r} to replay under {run_dir(run).parent}", "list the runs: `workbench runs`")
    try:
        config = replay_config(origin)
    except PublishError as exc:
        raise WorkbenchError(exc.message, exc.fix) from None
    clashing = [
        f"--{name.replace('_', '-')}"
        for name, field_name in _REPLAYED.items()
        if name in s.given and getattr(asked, field_name) != getattr(config, field_name)
    ]
    if clashing:
        raise click.UsageError(
            f"--replay {run} sends that run's events with its own generator settings: drop {', '.join(clashing)}"
        )
    plan = origin.get("plan") or {}
    if "workers" in s.given and s.workers != plan.get("workers", 1):
        raise click.UsageError(
            f"run {run} was published by {plan.get('workers', 1)} worker(s), each with its own ids: "
            f"drop --workers {s.workers} to replay it"
        )
    if count is None and s.duration is None:
        count = (origin.get("totals") or {}).get("sent") or plan.get("count")
    if "rate" not in s.given:
        rate, profile = plan.get("rate", rate), plan.get("profile", profile)
    return config, rate, profile, count, plan.get("workers", 1)


# GeneratorConfig speaks in field names; users typed flags.
_FLAGS = {
    "malformed_weights": "--malformed-kinds",
    "malformed_rate": "--malformed-rate",
    "duplicate_rate": "--duplicate-rate",
    "out_of_order_rate": "--out-of-order-rate",
    "late_rate": "--late-rate",
    "max_lateness_s": "--max-lateness",
    "history": "--history",
    "seed": "--seed",
}


def _as_flags(message: str) -> str:
    for field_name, flag in _FLAGS.items():
        message = re.sub(rf"(?<![\w-]){field_name}\b", flag, message)
    return message
