"""What `workbench exec` tells the processes it starts, through their environment (the only channel into an
unchanged program), and how the child's environment is built. Pure functions; no Beam.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from eventmodel import resources as names

ACTIVE_ENV = "WORKBENCH_EXEC"  # "1" in every process exec starts
READ_ENV = "WORKBENCH_EXEC_READ"  # "fast": the workbench's local reader; "stock": Beam's own
IDLE_ENV = "WORKBENCH_EXEC_STOP_WHEN_IDLE"  # seconds without a message before the fast reader drains; "" never
# "1" in the workbench's own pipeline (`workbench run-pipeline`), which needs no redirect: activate() stands aside.
OWN_PIPELINE_ENV = "WORKBENCH_OWN_PIPELINE"
MAX_UNACKED_ENV = "WORKBENCH_EXEC_MAX_UNACKED"  # messages one run reads (and holds unacknowledged) at most
PYTHONPATH_ENV = "PYTHONPATH"

FAST = "fast"
STOCK = "stock"
DEFAULT_IDLE_SECONDS = 30.0
# Every message of a run stays unacknowledged until the run ends (its lease extended meanwhile); this bounds the
# leases one run keeps and the ledger's memory (~200 bytes a message).
DEFAULT_MAX_UNACKED = 100_000

STARTUP_DIR = Path(__file__).resolve().parent / "startup"  # holds the sitecustomize.py the child loads


@dataclass(frozen=True)
class ExecSettings:
    read: str = FAST
    idle_seconds: float | None = DEFAULT_IDLE_SECONDS
    max_unacked: int = DEFAULT_MAX_UNACKED

    def to_environment(self) -> dict[str, str]:
        return {
            ACTIVE_ENV: "1",
            READ_ENV: self.read,
            IDLE_ENV: "" if self.idle_seconds is None else f"{self.idle_seconds:g}",
            MAX_UNACKED_ENV: str(self.max_unacked),
        }

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> ExecSettings:
        env = os.environ if env is None else env
        idle = env.get(IDLE_ENV, f"{DEFAULT_IDLE_SECONDS:g}")
        return cls(
            read=STOCK if env.get(READ_ENV) == STOCK else FAST,
            idle_seconds=float(idle) if idle else None,
            max_unacked=int(env.get(MAX_UNACKED_ENV) or DEFAULT_MAX_UNACKED),
        )


def child_environment(
    base: Mapping[str, str], exports: Mapping[str, str], project: str | None, settings: ExecSettings
) -> dict[str, str]:
    """The environment of the exec'd command: `base` (the caller's, without emulator hosts the stack does not
    export), then the running stack's exports (they win: the command runs against this stack), the project, no GCE
    metadata probe, the settings, and the startup folder first on PYTHONPATH."""
    # An emulator the stack does not run is no emulator at all: a stale export from another stack would otherwise
    # send the command there (and the redirect would point Beam at it).
    stale = {names.PUBSUB_EMULATOR_ENV, names.BIGQUERY_EMULATOR_ENV, names.STORAGE_EMULATOR_ENV} - set(exports)
    # The workbench's own run-pipeline marks its own process (OWN_PIPELINE_ENV) before Beam loads; inherited from
    # the caller (a run-pipeline earlier in the same process), it would turn the redirect off for the user's command.
    stale.add(OWN_PIPELINE_ENV)
    env = {**{k: v for k, v in base.items() if k not in stale}, **exports}
    if project:
        env.setdefault(names.PROJECT_ENV_VARS[1], project)  # GOOGLE_CLOUD_PROJECT, when BigQuery did not export it
        env.setdefault(names.PROJECT_ENV_VARS[0], project)
    env["NO_GCE_CHECK"] = "true"  # google-auth would probe the GCE metadata server for credentials
    env.update(settings.to_environment())
    kept = [p for p in base.get(PYTHONPATH_ENV, "").split(os.pathsep) if p and p != str(STARTUP_DIR)]
    env[PYTHONPATH_ENV] = os.pathsep.join([str(STARTUP_DIR), *kept])
    return env
