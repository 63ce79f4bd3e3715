"""A library's own error (the emulator's, the publisher's) reaches the user as the CLI's own do: message, fix,
exit status 2, no traceback; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import pytest

import workbench.cli as cli_module
from ddl.errors import DdlError
from emulator.pubsub.errors import EmulatorError
from endpoints.errors import EndpointError
from publisher.errors import PublishError


@pytest.mark.parametrize("error", [EmulatorError, PublishError, DdlError, EndpointError])
def test_a_library_error_is_shown_with_its_fix(error, monkeypatch, capsys):
    def fails(**_: object) -> None:
        raise error("the thing broke", "do this instead")

    monkeypatch.setattr(cli_module.cli, "main", fails)
    with pytest.raises(SystemExit) as exited:
        cli_module.main(["status"])
    assert exited.value.code == 2
    shown = capsys.readouterr()
    text = shown.err + shown.out
    assert "the thing broke" in text and "do this instead" in text and "Traceback" not in text


def test_any_other_exception_is_not_swallowed(monkeypatch):
    def fails(**_: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(cli_module.cli, "main", fails)
    with pytest.raises(KeyError):
        cli_module.main(["status"])
