"""A command that needs an optional install says so in one line naming `pip install 'event-workbench[EXTRA]'`,
exits 2, and starts nothing. The packages are hidden here (sys.modules[name] = None, which is how import
machinery spells "not installed"); tests/install/test_clean_install.py checks the same on a real install."""

from __future__ import annotations

import sys

import pytest

from workbench.cli import main


def run(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    return exited.value.code, capsys.readouterr().err


def hide(monkeypatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def assert_one_line_hint(code: int, err: str, extra: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert f"pip install 'event-workbench[{extra}]'" in lines[0]


def test_loadtest_without_locust_names_the_loadtest_extra(capsys, home, monkeypatch):
    hide(monkeypatch, "locust")
    code, err = run(capsys, "loadtest", "--run-time", "1s")
    assert_one_line_hint(code, err, "loadtest")
    assert "locust not installed" in err
    assert not (home / "runs").exists(), "no run may be recorded"


def test_up_without_the_bigquery_emulator_names_the_local_extra_and_starts_nothing(capsys, home, monkeypatch):
    hide(monkeypatch, "bqemulator")
    code, err = run(capsys, "up", "--pubsub-port", "1")  # a port it would fail on, were anything started
    assert_one_line_hint(code, err, "local")
    assert "bigquery" in err
    assert not (home / "stack" / "state.json").exists()


def test_up_gcs_without_the_gcs_emulator_names_the_local_extra(capsys, home, monkeypatch):
    hide(monkeypatch, "gcp_storage_emulator")
    code, err = run(capsys, "up", "--gcs", "--no-bigquery", "--pubsub-port", "1")
    assert_one_line_hint(code, err, "local")
    assert "gcs" in err


def test_the_bigquery_emulator_handle_names_the_local_extra(monkeypatch):
    from workbench.errors import WorkbenchError
    from workbench.localstack.emulators import start_bigquery_emulator

    hide(monkeypatch, "bqemulator")
    with pytest.raises(WorkbenchError, match=r"pip install 'event-workbench\[local\]'"):
        start_bigquery_emulator()


def test_up_s3_without_moto_names_the_local_extra(capsys, home, monkeypatch):
    from workbench.localstack import stack

    hide(monkeypatch, "moto")
    try:
        code, err = run(capsys, "up", "--s3", "--no-bigquery", "--pubsub-port", "1")
        started = (home / "stack" / "state.json").exists()
    finally:
        stack.down()  # should the check ever let it start, nothing outlives the test
    assert_one_line_hint(code, err, "local")
    assert "s3" in err and "moto" in err
    assert not started


def test_the_s3_emulator_handle_names_the_local_extra(monkeypatch):
    from workbench.errors import WorkbenchError
    from workbench.localstack.emulators import start_s3_emulator

    hide(monkeypatch, "moto")
    with pytest.raises(WorkbenchError, match=r"pip install 'event-workbench\[local\]'"):
        start_s3_emulator().stop()  # stopped, should the check ever let it start
