"""What `workbench exec -- COMMAND...` does once its options are read: run the command in the local stack's
environment (workbench.beam_redirect.settings.child_environment), pass stop signals on to its process group, and
return its exit status (128 + N when signal N ended it).

    status = run_exec(stock_read=False, stop_when_idle=30.0, no_idle_stop=False, max_unacked=10_000,
                      command=("python", "my_pipeline.py", "--streaming"))
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence

import click

from workbench.beam_redirect.settings import FAST, STOCK, ExecSettings, child_environment
from workbench.errors import WorkbenchError

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_exec(*, stock_read: bool, stop_when_idle: float, no_idle_stop: bool, max_unacked: int,
             command: Sequence[str]) -> int:  # fmt: skip
    """Run `command` against the local stack; its exit status. No stack running: WorkbenchError (exit 2)."""
    if stop_when_idle <= 0:
        raise click.BadParameter("must be more than 0 seconds", param_hint="--stop-when-idle")
    settings = ExecSettings(
        read=STOCK if stock_read else FAST,
        idle_seconds=None if no_idle_stop else stop_when_idle,
        max_unacked=max_unacked,
    )
    return run_forwarding_signals(list(command), exec_environment(settings))


def exec_environment(settings: ExecSettings) -> dict[str, str]:
    """The child's environment, or WorkbenchError when no local stack runs."""
    from eventmodel.resources import PUBSUB_EMULATOR_ENV, workbench_home
    from workbench.localstack.stack import env_exports, read_state

    exports = env_exports()
    if PUBSUB_EMULATOR_ENV not in exports:
        raise WorkbenchError(
            f"no local stack is running for WORKBENCH_HOME={workbench_home()}, so there is nothing to run the "
            "command against",
            "start it with `workbench up` (add --gcs for gs:// paths), then run `workbench exec -- ...` again",
        )
    return child_environment(os.environ, exports, read_state().get("project"), settings)


def run_forwarding_signals(command: Sequence[str], env: dict[str, str]) -> int:
    """Run `command` in a process group of its own, pass SIGINT/SIGTERM/SIGHUP on to that group, and return its
    exit status (128 + N when signal N ended it)."""
    try:
        child = subprocess.Popen(command, env=env, process_group=0)
    except OSError as exc:  # not found, not executable
        raise WorkbenchError(
            f"cannot start {command[0]!r}: {exc.strerror or exc}",
            "check the command's name (or give its path) after `workbench exec --`",
        ) from None

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(child.pid, signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - code if code < 0 else code
