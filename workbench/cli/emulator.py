"""`workbench emulator pubsub`: run the project's Pub/Sub emulator in the foreground with a live view.

    workbench emulator pubsub --port 8085 --data-dir .workbench/pubsub --seed 7 --duplicate-rate 0.01
    export PUBSUB_EMULATOR_HOST=127.0.0.1:8085     # in another shell

Faults can be changed while it runs with emulator.pubsub.admin.AdminClient when its admin service is on:
`--admin`, or any fault flag (which implies it); without either, nothing can inject faults. It listens on
loopback unless --host says otherwise (then it warns). Ctrl-C or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import signal
import threading

import click


@click.group()
def emulator() -> None:
    """Local emulators of the cloud services the pipeline uses."""


@emulator.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback prints a warning (it has no authentication).")
@click.option("--port", default=8085, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on; 0 picks a free one.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Keep topics, subscriptions and unacked messages here across restarts.")
@click.option("--seed", default=0, show_default=True, help="Seed of the fault-injection decisions.")
@click.option("--admin", is_flag=True,
              help="Serve the admin service, to change faults while it runs (fault flags below imply it).")
@click.option("--duplicate-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Probability a delivery is duplicated.")
@click.option("--delay-ms", default=0.0, type=click.FloatRange(0), help="Delay before a message is deliverable.")
@click.option("--jitter-ms", default=0.0, type=click.FloatRange(0), help="Random extra delay, up to this much.")
@click.option("--publish-failure-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Probability a Publish fails with UNAVAILABLE (clients retry).")
@click.option("--lost-ack-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Probability an ack is dropped (the message is redelivered).")
@click.option("--fault", "overrides", multiple=True, metavar="RESOURCE,KEY=VALUE[,...]",
              help="Fault settings for one topic or subscription, e.g. "
                   "projects/p/subscriptions/s,lost_ack_rate=0.1 (repeatable).")
@click.option("--live/--no-live", default=True, show_default=True, help="Show the live view of topics and rates.")
def pubsub(host: str, port: int, data_dir: str | None, seed: int, admin: bool, duplicate_rate: float,
           delay_ms: float, jitter_ms: float, publish_failure_rate: float, lost_ack_rate: float,
           overrides: tuple[str, ...], live: bool) -> None:
    """Run the Pub/Sub emulator (google.pubsub.v1 over gRPC) in the foreground."""
    from emulator.pubsub.faults import parse_override
    from emulator.pubsub.live import run_live
    from emulator.pubsub.server import start, tune_gc
    from workbench import terminal

    faults = {"duplicate_rate": duplicate_rate, "delay_ms": delay_ms, "jitter_ms": jitter_ms,
              "publish_failure_rate": publish_failure_rate, "lost_ack_rate": lost_ack_rate}
    try:
        fault_overrides = dict(parse_override(text) for text in overrides)
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
    handle = start(host, port, data_dir=data_dir, seed=seed, faults=faults, fault_overrides=fault_overrides,
                   admin=True if admin else None)
    running.append(handle)
    if stopping.is_set():
        handle.request_stop()
    try:
        terminal.success(f"Pub/Sub emulator listening on {handle.target}: "
                         f"export PUBSUB_EMULATOR_HOST={handle.target}")
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
