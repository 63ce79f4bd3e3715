"""Background service processes that outlive the command that started them, tracked by pid.

A started process gets its own session (so a Ctrl-C in the terminal does not reach it), its output goes to
a log file, and its pid is stored with the command line it was started with. Stopping checks that the pid
still runs that command line before signalling it, so a recycled pid never kills an unrelated process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def start_detached(argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start argv in its own session, output to log_path, in cwd (where it may leave scratch files)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if cwd is not None:
        cwd.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            close_fds=True,
            cwd=cwd,
        )
    return process.pid


def command_line(pid: int) -> list[str] | None:
    """The argv of a running process, or None when no such process runs (or it is a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie. Unlike command_line(), never fooled by the brief moment during
    exec() when /proc/PID/cmdline reads empty."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def is_ours(pid: int, argv: list[str]) -> bool:
    """True when pid runs the command line we started it with (the interpreter path may be resolved)."""
    running = command_line(pid)
    return running is not None and running[1:] == argv[1:]


def stop(pid: int, argv: list[str], timeout: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after timeout; returns False when the pid was not ours (nothing signalled)."""
    if not is_ours(pid, argv):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)  # the whole session: emulators may run helper processes
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if command_line(pid) is None:
            return True
        _reap(pid)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    return True


def wait_ready(probe: Callable[[], bool], running: Callable[[], bool], timeout: float) -> str:
    """Poll a service's readiness probe: "ready" once it answers, "exited" when its process ended first, or
    "timeout". The one wait of every start, detached (`workbench up`) or as a child (emulators.py)."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return "ready"
        if not running():
            return "exited"
        if time.monotonic() > deadline:
            return "timeout"
        time.sleep(0.1)


def _reap(pid: int) -> None:
    # A child of this very process (tests, `up` followed by `down` in one run) stays a zombie until waited on.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
