"""`python -m emulator.pubsub --port 8085 [--data-dir DIR] [--seed N] [--admin] [--duplicate-rate P] ...`

Runs the emulator in the foreground until SIGINT or SIGTERM; prints one line `listening on HOST:PORT` on
stdout when ready (port 0 picks a free port, so launchers read the line). This is how the local stack and the
tests launch it; `workbench emulator pubsub` adds a live view on top of the same start().

The admin service (fault injection while running) is off unless `--admin` is given; fault flags given here
(`--duplicate-rate`, `--fault`, ...) imply it. A --host other than loopback prints a warning on stderr.
"""

from __future__ import annotations

import argparse
import signal
import sys

from workbench.errors import WorkbenchError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m emulator.pubsub", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback unless told otherwise)")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--data-dir", default=None, help="keep state in this directory across restarts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault-injection decisions")
    parser.add_argument("--admin", action="store_true",
                        help="serve the admin service (change faults while running); fault flags imply it")
    parser.add_argument("--duplicate-rate", type=float, default=0.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--publish-failure-rate", type=float, default=0.0)
    parser.add_argument("--lost-ack-rate", type=float, default=0.0)
    parser.add_argument("--fault", action="append", default=[], metavar="RESOURCE,KEY=VALUE[,...]",
                        help="fault settings for one topic or subscription, e.g. "
                             "projects/p/subscriptions/s,lost_ack_rate=0.1 (repeatable)")
    parser.add_argument("--workers", type=int, default=128, help="gRPC worker threads (each open stream holds one)")
    return parser.parse_args(argv)


def fault_settings(args: argparse.Namespace) -> dict[str, float]:
    return {
        "duplicate_rate": args.duplicate_rate,
        "delay_ms": args.delay_ms,
        "jitter_ms": args.jitter_ms,
        "publish_failure_rate": args.publish_failure_rate,
        "lost_ack_rate": args.lost_ack_rate,
    }


def main(argv: list[str] | None = None) -> int:
    from emulator.pubsub.faults import parse_override
    from emulator.pubsub.server import start, tune_gc

    args = parse_args(argv)
    tune_gc()
    try:
        overrides = dict(parse_override(text) for text in args.fault)
        handle = start(args.host, args.port, data_dir=args.data_dir, seed=args.seed,
                       faults=fault_settings(args), workers=args.workers, fault_overrides=overrides,
                       admin=True if args.admin else None)
    except (WorkbenchError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: handle.request_stop())
    signal.signal(signal.SIGINT, lambda *_: handle.request_stop())
    print(f"listening on {handle.target}", flush=True)
    while not handle.wait(0.5):
        pass
    handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
