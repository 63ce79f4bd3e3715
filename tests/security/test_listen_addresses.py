"""Every server listens on loopback unless told otherwise, and being told otherwise prints one warning line on
stderr: the Pub/Sub emulator (both entry points), the local stack, and Locust's web UI and master."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from eventmodel.exposure import is_loopback, warn_if_exposed

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_GCE_CHECK": "true"}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "", "*", "::", "[::]", "192.168.1.10", "10.0.0.1", "no-such-host.invalid"])
def test_addresses_beyond_this_machine(host):
    assert not is_loopback(host)


def test_the_warning_is_one_line_naming_the_address_and_the_fix():
    stream = io.StringIO()
    assert warn_if_exposed("0.0.0.0", "the Pub/Sub emulator", stream=stream)
    [line] = stream.getvalue().splitlines()
    assert line.startswith("warning: the Pub/Sub emulator listens on 0.0.0.0")
    assert "127.0.0.1" in line
    assert not warn_if_exposed("127.0.0.1", "the Pub/Sub emulator", stream=stream)
    assert len(stream.getvalue().splitlines()) == 1


def _emulator_stderr(*argv: str, host: str = "127.0.0.1") -> str:
    """Start an emulator process on `host`, wait until it serves, stop it; its stderr."""
    from emulator.pubsub.server import wait_healthy
    from workbench.localstack.ports import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *argv, "--host", host, "--port", str(port)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_healthy(f"127.0.0.1:{port}", timeout=30)  # 0.0.0.0 includes loopback
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    return err


@pytest.mark.integration
@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "entry",
    [["-m", "emulator.pubsub"], ["-m", "workbench.cli", "emulator", "pubsub", "--no-live"]],
    ids=["module", "cli"],
)
def test_the_emulator_warns_when_it_listens_beyond_loopback(entry):
    exposed = _emulator_stderr(*entry, host="0.0.0.0")
    warnings = [line for line in exposed.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, exposed
    assert "0.0.0.0" in warnings[0] and "no authentication" in warnings[0]
    assert "warning:" not in _emulator_stderr(*entry)  # the default: loopback, quiet


def test_the_stack_warns_for_a_host_beyond_loopback(monkeypatch, tmp_path, capsys):
    from workbench.localstack import stack

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(stack, "read_state", lambda: (_ for _ in ()).throw(RuntimeError("stop here")))
    with pytest.raises(RuntimeError, match="stop here"):
        stack.up(stack.StackConfig(host="0.0.0.0", with_bigquery=False))
    assert "warning: the local stack listens on 0.0.0.0" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="stop here"):
        stack.up(stack.StackConfig(with_bigquery=False))
    assert "warning" not in capsys.readouterr().err


def test_locust_defaults_to_loopback_for_its_web_ui_and_master():
    """Locust's own defaults are every interface; the locustfile's parser hook makes them loopback. In a child
    process: importing locust patches the standard library with gevent."""
    code = (
        "import locust.argument_parser as a, loadtest.locustfile\n"
        "o = a.get_parser().parse_args(['-f', 'loadtest/locustfile.py'])\n"
        "print(o.web_host, o.master_bind_host)\n"
    )
    env = {k: v for k, v in ENV.items() if not k.startswith("LOCUST_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["127.0.0.1", "127.0.0.1"]


def test_locust_servers_told_to_listen_elsewhere_warn(capsys):
    from loadtest.options import warn_if_exposed as warn_locust

    warn_locust(SimpleNamespace(headless=False, web_host="0.0.0.0", master=True, master_bind_host="*"))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert "Locust's web UI listens on 0.0.0.0" in lines[0]
    assert "Locust master listens on every interface" in lines[1]
    warn_locust(SimpleNamespace(headless=True, web_host="0.0.0.0", master=False, master_bind_host="*"))
    warn_locust(SimpleNamespace(headless=False, web_host="127.0.0.1", master=True, master_bind_host="127.0.0.1"))
    assert capsys.readouterr().err == ""
