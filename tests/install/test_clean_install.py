"""The wheel, installed with no extras into a fresh virtualenv, as a user installs it: every command answers
--help, the Pub/Sub emulator runs and serves the official client, a command that needs an extra names it (one
line, exit 2, no traceback), and `workbench bq apply` / `bq render` find the packaged DDL from a folder that is
not a checkout.

Slow (about a minute here: the wheel builds in ~1 s, `pip install` takes ~60 s for ~130 packages). The fresh
install is constrained to the versions of the project's own virtualenv (`pip freeze`), so pip takes them from
its cache or find-links instead of resolving the newest releases; constraints never add a package, so what gets
installed is exactly what the wheel declares. WORKBENCH_CLEAN_INSTALL_LATEST=1 drops the constraints to check
the newest releases a new user would get.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from workbench.localstack.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
# What a source copy for the build leaves out: environments, caches, outputs.
NOT_SOURCE = (".venv", ".git", "output", ".workbench", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
              ".ruff_cache")  # fmt: skip
EXTRA_MODULES = {"local": ("bqemulator", "gcp_storage_emulator"), "loadtest": ("locust", "gevent")}

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]


@dataclass
class Install:
    wheel: Path
    bin: Path
    outside: Path  # a working folder with no checkout in it or above it
    env: dict[str, str]

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / argv[0]), *argv[1:]], cwd=self.outside, env=self.env,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def python(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run("python", "-c", textwrap.dedent(code), timeout=timeout)


def _step(argv: list[str], log: Path, **kwargs) -> float:
    started = time.monotonic()
    with log.open("a") as sink:
        done = subprocess.run(argv, stdout=sink, stderr=subprocess.STDOUT, **kwargs)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(argv[:4])}... failed (status {done.returncode}):\n{log.read_text()[-3000:]}")
    return time.monotonic() - started


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Install:
    base = tmp_path_factory.mktemp("clean-install")
    log = base / "install.log"
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    # The build backend (setuptools) is already in this virtualenv: no isolated build environment to download.
    build_s = _step([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                     str(base / "wheels"), str(source)], log)  # fmt: skip
    [wheel] = (base / "wheels").glob("event_workbench-*.whl")
    venv = base / "venv"
    venv_s = _step([sys.executable, "-m", "venv", str(venv)], log)
    constraints: list[str] = []
    if not os.environ.get("WORKBENCH_CLEAN_INSTALL_LATEST"):
        frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                                text=True, check=True).stdout  # fmt: skip
        pins = [line for line in frozen.splitlines() if line and not line.lower().startswith(("event-workbench", "-e"))]
        (base / "constraints.txt").write_text("\n".join(pins) + "\n")
        constraints = ["-c", str(base / "constraints.txt")]
    # No extras: exactly `pip install event-workbench`. --no-compile: byte-compiling Beam's tree is most of the time.
    install_s = _step([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-compile", *constraints,
                       str(wheel)], log)  # fmt: skip
    print(f"\nclean install: wheel built in {build_s:.1f} s, venv in {venv_s:.1f} s, pip install in {install_s:.1f} s")
    outside = base / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PUBSUB_", "BIGQUERY_", "STORAGE_"))}
    env.update({"WORKBENCH_HOME": str(base / "home"), "NO_GCE_CHECK": "true", "VIRTUAL_ENV": str(venv),
                "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "COLUMNS": "200"})  # fmt: skip
    return Install(wheel, venv / "bin", outside, env)


def test_the_wheel_carries_the_ddl_and_its_run_books(fresh):
    names = set(zipfile.ZipFile(fresh.wheel).namelist())
    for folder in (ROOT / "ddl", ROOT / "ddl" / "ops"):
        for sql in folder.glob("*.sql"):
            assert sql.relative_to(ROOT).as_posix() in names, f"the wheel lacks {sql.relative_to(ROOT)}"


def test_the_install_has_no_extra(fresh):
    modules = [m for ms in EXTRA_MODULES.values() for m in ms]
    done = fresh.python(f"import importlib.util as u; print([m for m in {modules!r} if u.find_spec(m)])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", "an extra's package came in with the core install"


def _command_paths(fresh: Install) -> list[str]:
    """Every command and sub-command, discovered from the installed click group (nothing hard-coded)."""
    done = fresh.python("""
        import click
        from workbench.cli import cli

        def walk(group, prefix):
            ctx = click.Context(group)
            for name in group.list_commands(ctx):
                command = group.get_command(ctx, name)
                yield prefix + [name]
                if isinstance(command, click.Group):
                    yield from walk(command, prefix + [name])

        for path in walk(cli, []):
            print(" ".join(path))
    """)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")[:-1]


def test_every_command_answers_help(fresh):
    paths = _command_paths(fresh)
    assert {"publish", "emulator pubsub", "bq apply", "loadtest", "up"} <= set(paths)  # the discovery works
    failed = []
    for path in ["", *paths]:
        done = fresh.run("workbench", *path.split(), "--help")
        if done.returncode != 0 or "Usage:" not in done.stdout or "Traceback" in done.stderr:
            failed.append(f"workbench {path} --help: status {done.returncode}\n{done.stderr[-1500:]}")
    assert not failed, "\n".join(failed)


def test_the_emulator_runs_and_serves_the_official_client(fresh):
    from emulator.pubsub.server import wait_healthy

    port = free_port()
    process = subprocess.Popen([str(fresh.bin / "workbench"), "emulator", "pubsub", "--port", str(port), "--no-live"],
                               cwd=fresh.outside, env=fresh.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:  # healthy, or say why it died
            if process.poll() is not None:
                pytest.fail(f"the emulator exited with status {process.returncode}:\n{process.communicate()[1]}")
            try:
                wait_healthy(f"127.0.0.1:{port}", timeout=1)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "the emulator did not answer its health check within 60 s"
        client = fresh.python(f"""
            import os
            os.environ["PUBSUB_EMULATOR_HOST"] = "127.0.0.1:{port}"
            from google.cloud import pubsub_v1
            publisher = pubsub_v1.PublisherClient()
            topic = publisher.create_topic(name="projects/clean-install/topics/hello-topic").name
            print(publisher.publish(topic, b"hello").result(timeout=30))
            print([t.name for t in publisher.list_topics(project="projects/clean-install")])
        """)
        assert client.returncode == 0, client.stderr
        assert "projects/clean-install/topics/hello-topic" in client.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert f"PUBSUB_EMULATOR_HOST=127.0.0.1:{port}" in err


@pytest.mark.parametrize(
    ("argv", "extra"),
    [(["loadtest", "--run-time", "1s"], "loadtest"), (["up"], "local"), (["demo", "--count", "10"], "local")],
    ids=["loadtest", "up", "demo"],
)
def test_a_command_that_needs_an_extra_names_it(fresh, argv, extra):
    done = fresh.run("workbench", *argv)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"pip install 'event-workbench[{extra}]'" in done.stderr


def test_bq_finds_the_packaged_ddl_outside_a_checkout(fresh):
    assert not any((parent / "pyproject.toml").exists() for parent in [fresh.outside, *fresh.outside.parents])
    applied = fresh.run("workbench", "bq", "apply", "--dry-run", "--project", "p")
    assert applied.returncode == 0, applied.stderr
    assert "CREATE SCHEMA IF NOT EXISTS `p.events`" in applied.stdout
    assert "-- 30_views.sql#1" in applied.stdout
    rendered = fresh.run("workbench", "bq", "render", "ops/snapshots.sql", "--project", "p")
    assert rendered.returncode == 0, rendered.stderr
    assert "`p.events" in rendered.stdout
