"""One definition of the emulator's flags (emulator.pubsub.flags): `python -m emulator.pubsub` and
`workbench emulator pubsub` parse a command line into the same start() arguments, with the defaults of
eventmodel.resources."""

from __future__ import annotations

import pytest

from emulator.pubsub import server
from emulator.pubsub.__main__ import main
from emulator.pubsub.errors import EmulatorError
from emulator.pubsub.flags import parser, start_arguments
from eventmodel.resources import LOCAL_HOST, PUBSUB_EMULATOR_PORT
from workbench.cli.emulator import pubsub
from workbench.errors import WorkbenchError

EVERY_FLAG = [
    "--host",
    "::1",
    "--port",
    "0",
    "--data-dir",
    "state",
    "--seed",
    "7",
    "--admin",
    "--duplicate-rate",
    "0.5",
    "--delay-ms",
    "20",
    "--jitter-ms",
    "5",
    "--publish-failure-rate",
    "0.1",
    "--lost-ack-rate",
    "0.2",
    "--fault",
    "projects/p/subscriptions/s,lost_ack_rate=0.1",
    "--workers",
    "4",
]


@pytest.mark.parametrize("argv", [[], EVERY_FLAG], ids=["defaults", "every-flag"])
def test_both_front_ends_start_the_emulator_alike(argv, monkeypatch, cli_runner):
    calls: list[dict] = []

    def start(**arguments):
        calls.append(arguments)
        raise EmulatorError("not started", "this is a test")

    monkeypatch.setattr(server, "start", start)
    monkeypatch.setattr(server, "tune_gc", lambda: None)
    assert main(argv) == 2
    result = cli_runner.invoke(pubsub, [*argv, "--no-live"])
    assert isinstance(result.exception, WorkbenchError) and result.exception.fix == "this is a test"
    from_module, from_cli = calls
    assert from_module == from_cli


def test_defaults_are_the_resource_defaults():
    arguments = start_arguments(vars(parser().parse_args([])))
    assert (arguments["host"], arguments["port"]) == (LOCAL_HOST, PUBSUB_EMULATOR_PORT)
    assert arguments["admin"] is None  # the server decides: on only when faults are set at start
    assert arguments["fault_overrides"] == {}


def test_out_of_range_values_are_refused_by_both(capsys, cli_runner):
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["--duplicate-rate", "2"])
    assert exited.value.code == 2
    assert "not between 0 and 1" in capsys.readouterr().err
    assert cli_runner.invoke(pubsub, ["--duplicate-rate", "2"]).exit_code == 2
