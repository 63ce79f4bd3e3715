"""Every time option of every command takes the same durations (90, 90s, 5m, 1h, 1m30): one parser, one type
(workbench.cli.params.DURATION), so a form one option accepts is never refused by another."""

from __future__ import annotations

import importlib

import click
import pytest

from workbench.cli import COMMANDS
from workbench.cli.params import DURATION, Duration

# Option names that hold a length of time: a new one is caught by the pattern, not by a list to keep up to date.
TIME_WORDS = ("duration", "wait", "idle", "run_time", "lateness", "ttl", "seconds", "timeout", "interval")


def every_option() -> list[tuple[str, click.Option]]:
    found = []
    for name, target in COMMANDS.items():
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        commands = command.commands.values() if isinstance(command, click.Group) else [command]
        for each in commands:
            found += [(f"{name} {each.name}", p) for p in each.params if isinstance(p, click.Option)]
    return found


# A flag (--no-idle-stop) takes no value: it is not a length of time, whatever its name says.
TIME_OPTIONS = [(where, o) for where, o in every_option()
                if not o.is_flag and any(word in o.name for word in TIME_WORDS)]  # fmt: skip


def test_the_time_options_are_found():
    names = {o.opts[0] for _, o in TIME_OPTIONS}
    assert {"--duration", "--wait", "--stop-when-idle", "--run-time", "--max-lateness"} <= names


@pytest.mark.parametrize(("where", "option"), TIME_OPTIONS, ids=[f"{w} {o.opts[0]}" for w, o in TIME_OPTIONS])
def test_every_time_option_takes_a_duration(where, option):
    assert isinstance(option.type, Duration), f"{where} {option.opts[0]} is {option.type!r}: use DURATION"


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("1m30", 90), ("1m30s", 90), ("1h", 3600),
                                               ("2.5s", 2.5), ("5m", 300)])  # fmt: skip
def test_the_forms_a_duration_takes(text, seconds):
    assert DURATION.convert(text, None, None) == seconds


@pytest.mark.parametrize("text", ["ten", "", "5 min", "-3s", "1d"])
def test_a_bad_duration_says_what_to_write(text):
    with pytest.raises(click.BadParameter, match="write seconds like 90 or 90s, or 5m, 1h, 1m30s"):
        DURATION.convert(text, None, None)
