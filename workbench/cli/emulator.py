"""`workbench emulator pubsub`: run the project's Pub/Sub emulator in the foreground with a live view.

    workbench emulator pubsub --port 8085 --data-dir .workbench/pubsub --seed 7 --duplicate-rate 0.01
    export PUBSUB_EMULATOR_HOST=127.0.0.1:8085     # in another shell

Faults can be changed while it runs with emulator.pubsub.admin.AdminClient when its admin service is on:
`--admin`, or any fault flag (which implies it); without either, nothing can inject faults. It listens on
loopback unless --host says otherwise (then it warns). Ctrl-C or SIGTERM stops it cleanly. The flags are
emulator.pubsub.flags, the same as `python -m emulator.pubsub`'s, plus --live/--no-live.
"""

from __future__ import annotations

import signal
import threading
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
    from emulator.pubsub.errors import EmulatorError
    from emulator.pubsub.flags import start_arguments
    from emulator.pubsub.server import exposure_risk, start, tune_gc
    from eventmodel.exposure import warn_if_exposed
    from workbench import terminal
    from workbench.emulator_view import run_live
    from workbench.errors import WorkbenchError

    try:
        arguments = start_arguments(flag_values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    tune_gc()
    # Ctrl-C and SIGTERM ask the server to stop instead of raising: a KeyboardInterrupt that lands inside the live
    # view's locks can leave one held, and the view's refresh thread (and so the process) would never end. The
    # handlers go in before start(): a signal that comes while the server starts is kept for when it has.
    stopping = threading.Event()
    running: list = []

    def on_signal(*_: object) -> None:
        stopping.set()
        for handle_ in running:
            handle_.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        handle = start(**arguments)
    except EmulatorError as exc:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise WorkbenchError(exc.message, exc.fix) from None
    running.append(handle)
    if stopping.is_set():
        handle.request_stop()
    try:
        warn_if_exposed(handle.host, "the Pub/Sub emulator", exposure_risk(handle.admin))
        terminal.success(f"Pub/Sub emulator listening on {handle.target}: export PUBSUB_EMULATOR_HOST={handle.target}")
        if handle.admin:
            terminal.info("admin service on: faults can be changed while it runs (emulator.pubsub.admin.AdminClient)")
        if live:
            run_live(handle, terminal.console)
        else:
            while not handle.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    terminal.info("Pub/Sub emulator stopped")
