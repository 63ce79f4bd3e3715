"""What `workbench emulator pubsub` does once its flags are read: run the project's Pub/Sub emulator in the
foreground, with the live view, until Ctrl-C or SIGTERM.

    run_pubsub_emulator(live=True, flag_values={"port": 8085, "data_dir": ".workbench/pubsub", ...})

`flag_values` are emulator.pubsub.flags' FLAGS, by name, as click read them. A fault flag the emulator refuses
raises click's BadParameter for --fault (exit 2); a server that cannot start raises WorkbenchError (exit 2).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import click


def run_pubsub_emulator(live: bool, flag_values: dict[str, Any]) -> None:
    """Run the Pub/Sub emulator (google.pubsub.v1 over gRPC) in the foreground until a stop signal."""
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
