"""`workbench publish`: generate events and publish them at a controlled rate to Pub/Sub or a file."""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime

import click

from eventmodel.resources import DEFAULT_PROJECT, TOPIC, resolve_project
from publisher.manifest import new_run_id, run_dir
from publisher.rate import PROFILE_HELP, parse_duration
from publisher.sinks import FileTarget, PubSubTarget, check_pubsub, open_for_append
from workbench import terminal
from workbench.errors import WorkbenchError

EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"


def _duration(ctx, param, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _weights(ctx, param, value: str | None) -> dict[str, float] | None:
    if not value:
        return None
    weights = {}
    for part in value.split(","):
        name, sep, weight = part.partition("=")
        try:
            weights[name.strip()] = float(weight) if sep else 1.0
        except ValueError:
            raise click.BadParameter(f"{part!r}: write KIND=WEIGHT pairs, e.g. legacy_id=2,python_repr=1") from None
    return weights


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
    "--rate", type=float, default=100.0, show_default=True, help="Messages per second (the peak of a profile)."
)
@click.option("--profile", default="constant", show_default=True, help=f"Rate over time: {PROFILE_HELP}.")
@click.option("--duration", callback=_duration, help="Stop after this long (90s, 5m, 1h).")
@click.option("--count", type=int, help="Stop after this many messages.")
@click.option("--malformed-rate", type=float, default=0.0, show_default=True, help="Share of malformed messages, 0..1.")
@click.option("--malformed-kinds", callback=_weights, help="Weights per malformed kind: legacy_id=2,python_repr=1.")
@click.option("--duplicate-rate", type=float, default=0.0, show_default=True, help="Share of exact re-sends, 0..1.")
@click.option("--late-rate", type=float, default=0.0, show_default=True, help="Share of late events, 0..1.")
@click.option("--max-lateness", callback=_duration, default="10m", show_default=True, help="How late a late event is.")
@click.option("--out-of-order-rate", type=float, default=0.0, show_default=True, help="Share of out-of-order events.")
@click.option("--history", callback=_history, help="Spread timestamps over START..END instead of now.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same events.")
@click.option("--to", "to", metavar="FILE|-", help="Write JSON lines to FILE (or - for stdout) instead of Pub/Sub.")
@click.option("--project", help="GCP project (else PUBSUB_PROJECT_ID, GOOGLE_CLOUD_PROJECT, or the local default).")
@click.option("--topic", default=TOPIC, show_default=True)
@click.option("--emulator", metavar="HOST:PORT", help=f"Pub/Sub emulator address (else ${EMULATOR_ENV}).")
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Publishing processes, for rates one can't reach."
)
@click.option("--run-id", help="Name the run (default: time-stamped).")
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
    project,
    topic,
    emulator,
    workers,
    run_id,
):
    """Publish generated events at a controlled rate.

    Without --to, publishes to the topic on the emulator named by --emulator or PUBSUB_EMULATOR_HOST, or to real
    Pub/Sub with Application Default Credentials. Every message is recorded in the run manifest
    ($WORKBENCH_HOME/runs/RUN_ID) for `workbench reconcile`.

    \b
    workbench publish --rate 500 --duration 60s --malformed-rate 0.05
    workbench publish --rate 2000 --profile spike:20000:30s:10s --workers 2 --count 1000000
    workbench publish --count 1000 --to events.jsonl
    """
    from generator.stream import GeneratorConfig
    from publisher.run import Publisher, PublishPlan, run_with_sigint
    from workbench.publish_view import LiveView, describe_target, summary

    if to is not None:
        target = FileTarget(to)
    else:
        emulator_host = emulator or os.environ.get(EMULATOR_ENV) or None
        target = PubSubTarget(resolve_project(project, DEFAULT_PROJECT), topic, emulator_host)
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
    elif target.path != "-":
        open_for_append(target.path).close()  # unwritable paths fail here, before the run starts

    terminal.info(f"publishing run [bold]{plan.run_id}[/bold] to {describe_target(target)}")
    publisher = Publisher(plan)
    with LiveView(publisher) as view:
        result = run_with_sigint(publisher, view.update)
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
        terminal.warning("interrupted: everything sent before the stop is published and in the manifest")
        sys.exit(130)


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
