"""`workbench run-pipeline` under every stop signal a user sends, each followed by the documented state and a reconcile.

- Ctrl-C once, SIGTERM (`kill`, `timeout`, systemd, a CI cancel) and SIGHUP (a closed terminal) drain: buffered
  files and rows are written, what they hold is acknowledged, and the exit status is 128 + the signal.
- A second signal stops at once: what was read and not committed by every sink stays unacknowledged, and Pub/Sub
  delivers it to the next run (at-least-once).
- In every case the subscription's lock is released, the next `run-pipeline --stop-when-idle` reads what is left,
  and reconcile accounts for every event of the run (redelivered copies allowed, nothing missing).

Real processes, as a user runs them: `workbench publish` and `workbench run-pipeline` are `python -m workbench.cli`
subprocesses with a WORKBENCH_HOME of their own, against the session's Pub/Sub and BigQuery emulators, each test in
a project of its own. The signals go where a user's would: Ctrl-C to the process group (a terminal signals its
foreground group), SIGTERM to the pid (`kill`, `timeout`), and the hang-up from a real pseudo-terminal that the test
closes, which the kernel turns into SIGHUP to the group, after which every write to it fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_support import files_under
from stack_support import LocalStack

from eventmodel import resources as names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
COUNT = 2000
ACK_DEADLINE_S = 10  # what a forced stop held comes back to the next run within this
# Flow control keeps the run from reading the whole backlog at once: it reads PULL_SIZE at a time while fewer than
# MAX_OUTSTANDING are unacknowledged, and acks a message once its file (flushed every FLUSH_S) and row are written.
FLUSH_S, PULL_SIZE, MAX_OUTSTANDING = 1, 100, 300
START_TIMEOUT_S = 150.0  # the CLI's start (Beam's imports, the preflight) on a busy 2-core machine
DRAIN_EXIT_S = 60.0  # a drain: the reader stops, the buffers are written, the acks sent
FORCED_EXIT_S = 30.0  # a second signal: the cancel, the last acks of what was committed (10 s at most)


class Terminal:
    """A pseudo-terminal that is the process's controlling terminal, its output copied to a log file; close() is a
    terminal window closing: the kernel sends SIGHUP to its foreground process group, and writes to it fail."""

    def __init__(self, log: Path) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, b"\x00\x28\x00\xa0\x00\x00\x00\x00")  # 40 rows, 160 columns
        self.log = log
        self._stop = threading.Event()
        self._copier = threading.Thread(target=self._copy, daemon=True)
        self._copier.start()

    def _copy(self) -> None:
        with self.log.open("ab") as out:
            while not self._stop.is_set():
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if ready:
                    try:
                        out.write(os.read(self.master, 65536))
                    except OSError:
                        return
                    out.flush()

    def take_control(self) -> None:
        """In the child, before exec: a session of its own whose controlling terminal is this one."""
        os.setsid()
        fcntl.ioctl(self.slave, termios.TIOCSCTTY, 0)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._copier.join(5)
        os.close(self.master)
        os.close(self.slave)


class Workbench:
    """One test's world: its project on the session's emulators (topic, subscription, dead-letter pair, tables), its
    home, its output root, and the `workbench` processes it starts (killed at the end if still running)."""

    def __init__(self, stack: LocalStack, tmp_path: Path) -> None:
        self.pubsub, self.bigquery, self.tmp = stack.pubsub, stack.bigquery_emulator, tmp_path
        self.project, self.home, self.output = stack.project, stack.home, stack.output
        self.processes: list[subprocess.Popen] = []
        self.terminals: list[Terminal] = []

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_HOME": str(self.home), "NO_GCE_CHECK": "true",
               "COLUMNS": "160"}  # fmt: skip
        for name in ("PUBSUB_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
            env.pop(name, None)
        return env

    def start(self, name: str, *args: str, terminal: bool = False) -> subprocess.Popen:
        """`workbench ARGS` in a session of its own, its output in NAME.log: on a terminal of its own (closed by
        hang_up) or into the file."""
        argv = [sys.executable, "-m", "workbench.cli", *args]
        log = self.tmp / f"{name}.log"
        if terminal:
            tty = Terminal(log)
            self.terminals.append(tty)
            process = subprocess.Popen(argv, cwd=ROOT, env=self.env(), stdin=tty.slave, stdout=tty.slave,
                                       stderr=tty.slave, preexec_fn=tty.take_control)  # fmt: skip
        else:
            with log.open("wb") as out:
                process = subprocess.Popen(argv, cwd=ROOT, env=self.env(), stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def publish(self, run_id: str) -> subprocess.Popen:
        return self.start(f"publish-{run_id}", "publish", "--emulator", self.pubsub, "--project", self.project,
                          "--run-id", run_id, "--count", str(COUNT), "--rate", "1000", "--malformed-rate", "0.05",
                          "--duplicate-rate", "0.02")  # fmt: skip

    def pipeline(self, name: str, *extra: str, terminal: bool = False) -> subprocess.Popen:
        return self.start(name, "run-pipeline", "--project", self.project, "--emulator", self.pubsub,
                          "--bigquery-emulator", self.bigquery.host_port, "--output-root", str(self.output),
                          "--flush-seconds", str(FLUSH_S), "--pull-size", str(PULL_SIZE),
                          "--max-outstanding", str(MAX_OUTSTANDING), *extra, terminal=terminal)  # fmt: skip

    def subscription(self) -> dict:
        """The pipeline subscription's counters from the emulator: acked, outstanding (leased), backlog."""
        from emulator.pubsub.admin import AdminClient

        with AdminClient(self.pubsub) as admin:
            return admin.stats()["subscriptions"][f"projects/{self.project}/subscriptions/{names.SUBSCRIPTION}"]

    def wait_exit(self, process: subprocess.Popen, name: str, timeout: float) -> int:
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} still running {timeout:g} s after the stop:\n{self.log(name)[-3000:]}")

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        for tty in self.terminals:
            tty.close()


def prepare(make_stack, request: pytest.FixtureRequest, tmp_path: Path, bigquery=True) -> Workbench:
    """The test's stack (its WORKBENCH_HOME set too: reconcile, in this process, reads the run's manifest there),
    with the short ack deadline that brings back what a forced stop held."""
    return Workbench(make_stack(request, "signals", bigquery=bigquery, ack_deadline_s=ACK_DEADLINE_S), tmp_path)


@pytest.fixture
def world(make_stack, request, tmp_path) -> Iterator[Workbench]:
    it = prepare(make_stack, request, tmp_path)
    yield it
    it.close()


@pytest.fixture
def world_with_its_own_bigquery(make_stack, request, tmp_path) -> Iterator[Workbench]:
    """A world whose BigQuery emulator the test may kill and start again (its tables on disk survive)."""
    from workbench.localstack.emulators import start_bigquery_emulator

    data = tmp_path / "bigquery-data"
    data.mkdir()
    bigquery = start_bigquery_emulator(project="signals", time_travel=False, data_dir=data)
    try:
        it = prepare(make_stack, request, tmp_path, bigquery=bigquery)
    except BaseException:
        bigquery.stop()  # a stack that could not be made leaves no emulator behind
        raise

    def restart_bigquery() -> None:
        it.bigquery = start_bigquery_emulator(project="signals", port=it.bigquery.port, time_travel=False,
                                              data_dir=data)  # fmt: skip

    it.restart_bigquery = restart_bigquery
    try:
        yield it
    finally:
        it.close()
        it.bigquery.stop()


def wait_for_files_with_more_to_read(world: Workbench, name: str, process: subprocess.Popen) -> None:
    """Until the run has written some files while Pub/Sub still holds messages it has not read."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not files_under(str(world.output)):
        assert process.poll() is None, f"run-pipeline ended early ({process.returncode}):\n{world.log(name)[-3000:]}"
        assert time.monotonic() < deadline, f"no file within {START_TIMEOUT_S:g} s:\n{world.log(name)[-3000:]}"
        time.sleep(0.05)
    assert world.subscription()["backlog"] > 0, "the run read everything before the stop: it would prove less"


def unacked_in(text: str) -> int:
    """How many messages the run says it left unacknowledged."""
    found = re.search(r"([\d,]+) messages read were not committed by every sink", text)
    if found:
        return int(found.group(1).replace(",", ""))
    assert "everything read was written and acknowledged" in text, text[-3000:]
    return 0


def finish_and_reconcile(world: Workbench, run_id: str, publisher: subprocess.Popen) -> None:
    """The next run starts (the lock was released), reads the rest and what came back, and the run reconciles."""
    from endpoints import Endpoints
    from reconcile.run import ReconcileTarget, reconcile

    assert world.wait_exit(publisher, f"publish-{run_id}", 120) == 0, world.log(f"publish-{run_id}")[-3000:]
    again = world.pipeline("again", "--stop-when-idle", "5s")
    code = world.wait_exit(again, "again", 300)
    assert code == 0, world.log("again")[-3000:]
    assert "everything read was written and acknowledged" in world.log("again")
    target = ReconcileTarget(output_root=str(world.output), project=world.project, dataset=names.DATASET,
                             endpoints=Endpoints(bigquery=world.bigquery.endpoint, pubsub=world.pubsub))  # fmt: skip
    report = reconcile(run_id, target)
    assert report.exit_code == 0, (report.problems[:10], report.notes)


@pytest.mark.parametrize(
    ("signum", "to"),
    [(signal.SIGINT, "group"), (signal.SIGTERM, "pid"), (signal.SIGHUP, "terminal")],
    ids=["SIGINT-once", "SIGTERM", "SIGHUP"],
)
def test_one_stop_signal_drains_acks_what_it_wrote_and_the_next_run_finishes(world, signum, to):
    run_id = f"signal-{signum.name.lower()}"
    name = "stopped"
    pipeline = world.pipeline(name, terminal=to == "terminal")
    publisher = world.publish(run_id)
    wait_for_files_with_more_to_read(world, name, pipeline)
    if to == "terminal":
        world.terminals[-1].close()  # the kernel hangs up: SIGHUP to the group, and the screen is gone
    elif to == "group":
        os.killpg(pipeline.pid, signum)  # Ctrl-C: the terminal signals its whole foreground group
    else:
        os.kill(pipeline.pid, signum)  # `kill PID`, `timeout`, a supervisor
    code = world.wait_exit(pipeline, name, DRAIN_EXIT_S)
    after = world.subscription()
    log = world.log(name)

    assert code == 128 + signum, log[-3000:]  # 130, 143, 129: the shell's "stopped by a signal"
    assert "Traceback" not in log, log[-3000:]
    if to != "terminal":  # a closed terminal shows nothing; the exit status and the subscription tell
        assert f"interrupted ({signum.name}): drained" in log, log[-3000:]
        assert unacked_in(log) == 0, log[-3000:]
    # Drained, every sink up: every message it read was written and acknowledged, none is left leased.
    assert after["outstanding"] == 0, after
    assert after["acked"] > 0 and after["backlog"] > 0, after
    finish_and_reconcile(world, run_id, publisher)


@pytest.mark.parametrize(
    ("first", "second"),
    [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)],
    ids=["SIGINT-twice", "SIGTERM-then-Ctrl-C"],
)
def test_a_second_signal_stops_at_once_and_the_next_run_gets_what_was_not_acknowledged(
    world_with_its_own_bigquery, first, second
):
    world = world_with_its_own_bigquery
    run_id = f"twice-{first.name.lower()}"
    name = "stopped"
    pipeline = world.pipeline(name)
    publisher = world.publish(run_id)
    wait_for_files_with_more_to_read(world, name, pipeline)
    # BigQuery goes down: its rows are retried (for --sink-retry-seconds, 300 s), so the drain the first signal
    # starts cannot finish, and what is read stays unacknowledged: the stop a second signal is for.
    world.bigquery.kill()
    os.killpg(pipeline.pid, first)
    time.sleep(2.0)
    assert pipeline.poll() is None, "draining: waiting for BigQuery"
    stopped_at = time.monotonic()
    os.killpg(pipeline.pid, second)
    code = world.wait_exit(pipeline, name, FORCED_EXIT_S)
    took = time.monotonic() - stopped_at
    log = world.log(name)

    assert code == 128 + first, log[-3000:]  # the first signal names the stop
    assert f"stopped at once ({first.name}, then a second signal)" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert took < FORCED_EXIT_S
    assert unacked_in(log) > 0, log[-3000:]  # what the next run must get again
    assert "shows up as redelivered" in log
    world.restart_bigquery()
    finish_and_reconcile(world, run_id, publisher)
