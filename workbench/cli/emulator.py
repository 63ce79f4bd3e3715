"""`workbench emulator pubsub`: run the project's Pub/Sub emulator in the foreground with a live view.

    workbench emulator pubsub --port 8085 --data-dir .workbench/pubsub --seed 7 --duplicate-rate 0.01
    export PUBSUB_EMULATOR_HOST=127.0.0.1:8085     # in another shell

Faults can be changed while it runs with emulator.pubsub.admin.AdminClient when its admin service is on:
`--admin`, or any fault flag (which implies it); without either, nothing can inject faults. It listens on
loopback unless --host says otherwise (then it warns). Ctrl-C or SIGTERM stops it cleanly. The flags are
emulator.pubsub.flags, the same as `python -m emulator.pubsub`'s, plus --live/--no-live.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from emulator.pubsub.flags import FLAGS, Flag


@click.group()
def emulator() -> None:
    """Local emulators of the cloud services the pipeline uses."""


def _click_option(flag: Flag) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The click option of one of the emulator's declared flags."""
    if flag.kind is bool:
        return click.option(flag.name, is_flag=True, help=flag.help)
    if flag.repeatable:
        return click.option(flag.name, multiple=True, metavar=flag.metavar, help=flag.help)
    if flag.kind == "directory":
        kind: Any = click.Path(file_okay=False)
    elif flag.low is None and flag.high is None:
        kind = flag.kind
    elif flag.kind is int:
        kind = click.IntRange(flag.low, flag.high)
    else:
        kind = click.FloatRange(flag.low, flag.high)
    return click.option(
        flag.name,
        type=kind,
        default=flag.default,
        show_default=flag.default is not None,
        metavar=flag.metavar,
        help=flag.help,
    )


def _with_emulator_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    for flag in reversed(FLAGS):  # click lists options in the order their decorators are written
        command = _click_option(flag)(command)
    return command


@emulator.command()
@_with_emulator_flags
@click.option("--live/--no-live", default=True, show_default=True, help="Show the live view of topics and rates.")
def pubsub(live: bool, **flag_values: Any) -> None:
    """Run the Pub/Sub emulator (google.pubsub.v1 over gRPC) in the foreground."""
    from workbench.emulator_run import run_pubsub_emulator

    run_pubsub_emulator(live, flag_values)
