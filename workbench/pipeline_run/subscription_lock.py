"""One local pipeline per subscription and home: a lock beside the dedup journal.

Two pipelines on one subscription split its messages between them, and both append to one dedup journal, each
dropping as "duplicates" what the other wrote (`workbench demo` beside a running `run-pipeline` reported 31
duplicated events). The second one is refused, naming the first.

The lock is an flock(2) on `<journal>.lock`: the kernel releases it when its holder exits in any way (kill -9
included), so a dead pipeline never leaves a stale lock. The file only carries the holder's pid, start time and
command, for the message.

    with claim_subscription("workbench-local", "backend-events-topic-sub"):   # WorkbenchError if already held
        run(...)
    refuse_if_claimed("workbench-local", "backend-events-topic-sub")          # a check only (the demo's)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from eventmodel.resources import workbench_home
from workbench.errors import WorkbenchError


def dedup_journal(project: str, subscription: str, home: Path | None = None) -> Path:
    """Where the local pipeline keeps the dedup step's memory across restarts (one file per subscription)."""
    name = subscription.rsplit("/", 1)[-1]
    return (home or workbench_home()) / "pipeline" / f"dedup-{project}-{name}.tsv"


def lock_path(project: str, subscription: str, home: Path | None = None) -> Path:
    return dedup_journal(project, subscription, home).with_suffix(".lock")


@dataclass(frozen=True)
class Holder:
    """Who holds a subscription's lock, as it wrote itself into the lock file (fields may be empty if unreadable)."""

    pid: int | None
    started: str  # ISO 8601, UTC
    command: str

    def describe(self) -> str:
        pid = f"pid {self.pid}" if self.pid else "a process"
        since = f", running since {self.started}" if self.started else ""
        return f"{pid}{since}" + (f" ({self.command})" if self.command else "")


@contextlib.contextmanager
def claim_subscription(project: str, subscription: str, home: Path | None = None) -> Iterator[Path]:
    """Hold the subscription's lock for the block; WorkbenchError (with the fix) if another pipeline holds it."""
    path = lock_path(project, subscription, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not truncated: the holder's details stay until we own it
    try:
        if not _lock(fd):
            raise _refusal(project, subscription, _read_holder(fd))
        os.ftruncate(fd, 0)
        os.pwrite(fd, _describe_self().encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock (the kernel does the same when the process dies)


def _lock(fd: int, attempts: int = 3) -> bool:
    # A few tries: claimed_by() holds the lock for an instant while it looks.
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < attempts:
                time.sleep(0.1)
    return False


def claimed_by(project: str, subscription: str, home: Path | None = None) -> Holder | None:
    """Who runs a local pipeline on this subscription and home now, or None."""
    path = lock_path(project, subscription, home)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        return None
    finally:
        os.close(fd)


def refuse_if_claimed(project: str, subscription: str, home: Path | None = None) -> None:
    """WorkbenchError naming the pipeline that already reads this subscription from this home, if one does."""
    holder = claimed_by(project, subscription, home)
    if holder is not None:
        raise _refusal(project, subscription, holder)


def _refusal(project: str, subscription: str, holder: Holder) -> WorkbenchError:
    name = subscription if subscription.startswith("projects/") else f"projects/{project}/subscriptions/{subscription}"
    kill = f", or `kill {holder.pid}`" if holder.pid else ""
    return WorkbenchError(
        f"another pipeline already reads {name} with this WORKBENCH_HOME: {holder.describe()}; two would split the "
        "messages and share one dedup journal",
        f"stop it first (Ctrl-C in its terminal{kill}: either way it drains, then exits) or wait for it to finish; "
        "to run both on purpose, give this one its own --subscription",
    )


def _describe_self() -> str:
    started = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    command = shlex.join(["workbench", *sys.argv[1:]])
    return f"{os.getpid()}\t{started}\t{command[:300]}\n"


def _read_holder(fd: int) -> Holder:
    # The holder writes its line right after locking: a second that reads in that instant sees nothing yet.
    for _ in range(5):
        line = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if line:
            break
        time.sleep(0.05)
    pid, started, command = ([*line.split("\t", 2), "", "", ""])[:3]
    return Holder(int(pid) if pid.isdigit() else None, started, command)
