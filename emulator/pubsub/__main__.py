"""`python -m emulator.pubsub --host 127.0.0.1 --port 8085 [--data-dir DIR] [--seed N] [--admin] [fault flags]`

Runs the emulator in the foreground until SIGINT or SIGTERM; prints one line `listening on HOST:PORT` on
stdout when ready (port 0 picks a free port, so launchers read the line). This is how the local stack and the
tests launch it; `workbench emulator pubsub` adds a live view on top of the same flags (emulator.pubsub.flags)
and the same start().

The admin service (fault injection while running) is off unless `--admin` is given; fault flags given here
(`--duplicate-rate`, `--fault`, ...) imply it. A --host other than loopback prints a warning on stderr. An
emulator that cannot start prints what went wrong and the fix on stderr and exits with status 2.
"""

from __future__ import annotations

import signal
import sys

from emulator.pubsub import flags
from emulator.pubsub.errors import EmulatorError
from eventmodel.exposure import warn_if_exposed


def main(argv: list[str] | None = None) -> int:
    from emulator.pubsub.server import exposure_risk, start, tune_gc

    args = flags.parser(description=__doc__.splitlines()[0]).parse_args(argv)
    tune_gc()
    try:
        handle = start(**flags.start_arguments(vars(args)))
    except (EmulatorError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    warn_if_exposed(handle.host, "the Pub/Sub emulator", exposure_risk(handle.admin))
    signal.signal(signal.SIGTERM, lambda *_: handle.request_stop())
    signal.signal(signal.SIGINT, lambda *_: handle.request_stop())
    print(f"listening on {handle.target}", flush=True)
    while not handle.wait(0.5):
        pass
    handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
