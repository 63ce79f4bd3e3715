"""The emulator's command-line flags, declared once: `python -m emulator.pubsub` builds its argparse parser from
them and `workbench emulator pubsub` its click options, and both turn the parsed values into start()'s arguments
with `start_arguments`.

    >>> parser().parse_args(["--port", "0", "--lost-ack-rate", "0.1"]).port
    0
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from emulator.pubsub.faults import parse_override
from eventmodel.resources import LOCAL_HOST, PUBSUB_EMULATOR_PORT

# Every StreamingPull and every waiting Pull holds a worker thread for its whole life.
DEFAULT_WORKERS = 128


@dataclass(frozen=True)
class Flag:
    """One flag. `kind` is int, float, str, bool (a switch) or "directory"; `low`/`high` bound numbers."""

    name: str
    help: str
    kind: Any = str
    default: Any = None
    low: float | None = None
    high: float | None = None
    repeatable: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.name.removeprefix("--").replace("-", "_")


FAULT_FLAGS = (
    Flag("--duplicate-rate", "Probability a delivery is duplicated.", float, 0.0, 0, 1),
    Flag("--delay-ms", "Delay before a message is deliverable.", float, 0.0, 0),
    Flag("--jitter-ms", "Random extra delay, up to this much.", float, 0.0, 0),
    Flag("--publish-failure-rate", "Probability a Publish fails with UNAVAILABLE (clients retry).", float, 0.0, 0, 1),
    Flag("--lost-ack-rate", "Probability an ack is dropped (the message is redelivered).", float, 0.0, 0, 1),
)

FLAGS = (
    Flag(
        "--host",
        "Address to listen on; anything but loopback prints a warning (it has no authentication).",
        str,
        LOCAL_HOST,
    ),
    Flag("--port", "Port to listen on; 0 picks a free one.", int, PUBSUB_EMULATOR_PORT, 0, 65535),
    Flag("--data-dir", "Keep topics, subscriptions and unacked messages here across restarts.", "directory"),
    Flag("--seed", "Seed of the fault-injection decisions.", int, 0),
    Flag("--admin", "Serve the admin service, to change faults while it runs (fault flags imply it).", bool, False),
    *FAULT_FLAGS,
    Flag(
        "--fault",
        "Fault settings for one topic or subscription, e.g. projects/p/subscriptions/s,lost_ack_rate=0.1 (repeatable).",
        repeatable=True,
        metavar="RESOURCE,KEY=VALUE[,...]",
    ),
    Flag("--workers", "gRPC worker threads (each open stream holds one).", int, DEFAULT_WORKERS, 1),
)


def start_arguments(values: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of emulator.pubsub.server.start() for parsed flag values (keyed by Flag.dest).

    Raises ValueError for a malformed --fault.
    """
    return {
        "host": values["host"],
        "port": values["port"],
        "data_dir": values["data_dir"],
        "seed": values["seed"],
        "faults": {flag.dest: values[flag.dest] for flag in FAULT_FLAGS},
        "fault_overrides": dict(parse_override(text) for text in values["fault"]),
        "workers": values["workers"],
        # Without --admin the server decides: on only when faults are set at start.
        "admin": True if values["admin"] else None,
    }


def parser(prog: str = "python -m emulator.pubsub", description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser of FLAGS."""
    built = argparse.ArgumentParser(prog=prog, description=description)
    for flag in FLAGS:
        if flag.kind is bool:
            built.add_argument(flag.name, action="store_true", help=flag.help)
        elif flag.repeatable:
            built.add_argument(flag.name, action="append", default=[], metavar=flag.metavar, help=flag.help)
        else:
            kind = str if flag.kind == "directory" else flag.kind
            built.add_argument(
                flag.name,
                type=_bounded(kind, flag.low, flag.high),
                default=flag.default,
                metavar=flag.metavar,
                help=flag.help,
            )
    return built


def _bounded(kind: Callable[[str], Any], low: float | None, high: float | None) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{text} is not {bounds}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert
