"""`workbench publish`: generate events and publish them at a controlled rate to Pub/Sub, a file or S3."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from eventmodel.resources import DEFAULT_PROJECT, TOPIC, resolve_project
from publisher import objects as layout
from publisher.errors import PublishError
from publisher.manifest import new_run_id, run_dir
from publisher.rate import PROFILE_HELP
from publisher.s3 import S3Target, check_s3
from publisher.sinks import FileTarget, PubSubTarget, check_pubsub, open_for_append
from workbench import terminal
from workbench.cli.params import DURATION
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from generator.stream import GeneratorConfig

EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"
DEFAULT_RATE = 100.0
# History written to S3 is not paced unless --rate says so: far above what one process can write.
UNPACED_RATE = 1e9


def _weights(ctx, param, value: str | None) -> dict[str, float] | None:
    from generator.stream import parse_malformed_weights  # the generator loads Faker: only when a run needs it

    try:
        return parse_malformed_weights(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _history(ctx, param, value: str | None) -> tuple[datetime, datetime] | None:
    if not value:
        return None
    start, sep, end = value.partition("..")
    try:
        bounds = tuple(
            datetime.fromisoformat(x.strip()).replace(tzinfo=UTC)
            if datetime.fromisoformat(x.strip()).tzinfo is None
            else datetime.fromisoformat(x.strip())
            for x in (start, end)
        )
    except ValueError:
        bounds = ()
    if not sep or len(bounds) != 2 or bounds[0] >= bounds[1]:
        raise click.BadParameter(f"{value!r}: write START..END in ISO form, e.g. 2025-02-01..2025-02-08T12:00")
    return bounds  # type: ignore[return-value]


@click.command()
@click.option(
    "--rate",
    type=float,
    help=f"Messages per second (the peak of a profile). Default {DEFAULT_RATE:g}; with --to s3:// unpaced.",
)
@click.option("--profile", default="constant", show_default=True, help=f"Rate over time: {PROFILE_HELP}.")
@click.option("--duration", type=DURATION, help="Stop after this long (90s, 5m, 1h, 1m30).")
@click.option("--count", type=int, help="Stop after this many messages.")
@click.option("--malformed-rate", type=float, default=0.0, show_default=True, help="Share of malformed messages, 0..1.")
@click.option("--malformed-kinds", callback=_weights, help="Weights per malformed kind: legacy_id=2,python_repr=1.")
@click.option("--duplicate-rate", type=float, default=0.0, show_default=True, help="Share of exact re-sends, 0..1.")
@click.option("--late-rate", type=float, default=0.0, show_default=True, help="Share of late events, 0..1.")
@click.option("--max-lateness", type=DURATION, default="10m", show_default=True, help="How late a late event is.")
@click.option("--out-of-order-rate", type=float, default=0.0, show_default=True, help="Share of out-of-order events.")
@click.option("--history", callback=_history, help="Spread timestamps over START..END instead of now.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same events.")
@click.option(
    "--to",
    "to",
    metavar="FILE|-|s3://BUCKET/PREFIX",
    help="Write JSON lines to FILE (or - for stdout), or the payloads as objects under s3://BUCKET/PREFIX/RUN_ID/ "
    "(needs --count), instead of Pub/Sub.",
)
@click.option(
    "--format",
    "object_format",
    type=click.Choice(layout.FORMATS),
    help="S3 objects: ndjson (one event per line, .jsonl; the default), array (a JSON array, .json), per-event "
    "(an object per event) or mixed (each object draws ndjson or array, small ones per-event).",
)
@click.option(
    "--compression",
    type=click.Choice(layout.COMPRESSIONS),
    help="S3 objects: none (the default), gzip (.gz) or mixed (a coin per object).",
)
@click.option("--gzip", "gzip_objects", is_flag=True, help="S3 objects: the same as --compression gzip.")
@click.option(
    "--objects",
    type=int,
    help="S3: cut the events into N objects of skewed sizes (a few large, many small; fixed by --seed). Default 1.",
)
@click.option(
    "--split-by-type", is_flag=True, help="S3: one object per event type (PREFIX/RUN_ID/TYPE/...) instead of mixed."
)
@click.option("--project", help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).")
@click.option("--topic", default=TOPIC, show_default=True)
@click.option("--emulator", metavar="HOST:PORT", help=f"Pub/Sub emulator address (else ${EMULATOR_ENV}).")
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Publishing processes, for rates one can't reach."
)
@click.option("--run-id", help="Name the run (default: time-stamped).")
@click.option(
    "--replay",
    metavar="RUN_ID",
    help="Send run RUN_ID's events again under the same event ids (its seed, generator settings, workers and count, "
    "unless --count/--duration/--rate say otherwise): a deduplicating pipeline drops what it holds, and reconcile "
    "reports those events as held by the earlier run. Without it every run has event ids of its own.",
)
def publish(
    rate,
    profile,
    duration,
    count,
    malformed_rate,
    malformed_kinds,
    duplicate_rate,
    late_rate,
    max_lateness,
    out_of_order_rate,
    history,
    seed,
    to,
    object_format,
    compression,
    gzip_objects,
    objects,
    split_by_type,
    project,
    topic,
    emulator,
    workers,
    run_id,
    replay,
):
    """Publish generated events at a controlled rate.

    Without --to, publishes to the topic on the emulator named by --emulator or PUBSUB_EMULATOR_HOST, or to real
    Pub/Sub with Application Default Credentials. Every message is recorded in the run manifest
    ($WORKBENCH_HOME/runs/RUN_ID) for `workbench reconcile`.

    With --to s3://BUCKET/PREFIX the payloads alone are written as an export holds them, under PREFIX/RUN_ID/,
    with boto3's usual AWS settings (AWS_ENDPOINT_URL, AWS_REGION, credentials); the manifest records each event's
    object and position. Malformed bytes stay exact: one with a line break gets an object of its own, one that
    is not JSON sits in an ndjson object beside an array (docs/generator.md).

    \b
    workbench publish --rate 500 --duration 60s --malformed-rate 0.05
    workbench publish --rate 2000 --profile spike:20000:30s:10s --workers 2 --count 1000000
    workbench publish --count 1000 --to events.jsonl
    workbench publish --history 2025-01-01..2025-02-01 --count 100000 --malformed-rate 0.02 \\
        --to s3://history/exports --format mixed --compression mixed --objects 40
    """
    from generator.stream import GeneratorConfig
    from publisher.run import Publisher, PublishPlan, run_with_sigint
    from workbench.publish_view import LiveView, describe_target, summary

    s3_flags = {
        "--format": object_format,
        "--compression": compression,
        "--gzip": gzip_objects or None,
        "--objects": objects,
        "--split-by-type": split_by_type or None,
    }
    if to is not None and to.startswith("s3://"):
        if gzip_objects and compression not in (None, layout.GZIP):
            raise click.UsageError(f"--gzip is --compression gzip: drop one of --gzip and --compression {compression}")
        target = S3Target(
            to,
            format=object_format or layout.NDJSON,
            compression=layout.GZIP if gzip_objects else compression or layout.NONE,
            objects=1 if objects is None else objects,
            split_by_type=split_by_type,
        )
    elif given := [flag for flag, value in s3_flags.items() if value is not None]:
        raise click.UsageError(f"{', '.join(given)} apply to --to s3://BUCKET/PREFIX only")
    elif to is not None:
        target = FileTarget(to)
    else:
        target = pubsub_target(project, topic, emulator)
    generator_config = GeneratorConfig(
        seed=seed,
        malformed_rate=malformed_rate,
        malformed_weights=malformed_kinds,
        duplicate_rate=duplicate_rate,
        late_rate=late_rate,
        max_lateness_s=max_lateness,
        out_of_order_rate=out_of_order_rate,
        history=history,
    )
    if rate is None:
        rate = UNPACED_RATE if isinstance(target, S3Target) else DEFAULT_RATE
    if replay:
        generator_config, rate, profile, count, workers = _replaying(
            replay, generator_config, rate, profile, count, duration, workers
        )
    plan = PublishPlan(
        run_id=run_id or new_run_id(),
        target=target,
        rate=rate,
        profile=profile,
        count=count,
        duration=duration,
        workers=workers,
        generator=generator_config,
    )
    try:
        plan.check()
    except ValueError as exc:
        raise click.UsageError(_as_flags(str(exc))) from None
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
    if result.status == "failed":
        raise WorkbenchError(
            "the run failed: " + "; ".join(result.totals.errors or ["a worker ended early"]),
            "see the errors above; the manifest records everything that was published",
        )
    if result.totals.failed:
        terminal.warning(f"{result.totals.failed:,} messages failed after retries (recorded as failed)")
    if result.status == "interrupted":
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
        sys.exit(128 + stopped_by)  # the shell's convention: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP


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


def _replaying(run: str, asked: GeneratorConfig, rate: float, profile: str, count: int | None,
               duration: float | None, workers: int):  # fmt: skip
    """The generator settings, rate, profile, count and workers of a replay of `run`."""
    from click.core import ParameterSource

    from publisher.manifest import load_manifest
    from publisher.replay import replay_config

    context = click.get_current_context()
    given = lambda name: context.get_parameter_source(name) == ParameterSource.COMMANDLINE  # noqa: E731
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
        if given(name) and getattr(asked, field_name) != getattr(config, field_name)
    ]
    if clashing:
        raise click.UsageError(
            f"--replay {run} sends that run's events with its own generator settings: drop {', '.join(clashing)}"
        )
    plan = origin.get("plan") or {}
    if given("workers") and workers != plan.get("workers", 1):
        raise click.UsageError(
            f"run {run} was published by {plan.get('workers', 1)} worker(s), each with its own ids: "
            f"drop --workers {workers} to replay it"
        )
    if count is None and duration is None:
        count = (origin.get("totals") or {}).get("sent") or plan.get("count")
    if not given("rate"):
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
