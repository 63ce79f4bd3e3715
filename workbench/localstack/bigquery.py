"""Run the BigQuery emulator (bqemulator) as a child process on loopback, for tests and library use.

    >>> with start_bigquery_emulator(project="workbench-local") as bq:    # doctest: +SKIP
    ...     client = bq.client()
    ...     print(bq.endpoint)                                            # http://127.0.0.1:<free port>

The command line, environment and readiness probe come from workbench.localstack.services.bigquery, the
same definition `workbench up` uses, so the two cannot disagree; this module adds the foreground life
cycle: pick free ports, start, wait until healthy (or say what failed), stop by pid.

Offline fix (docs/architecture): BQEMU_ENABLE_FORMAT_EXTENSIONS=false keeps the emulator from downloading
DuckDB's avro extension, and DuckDB's spatial extension is installed from its PyPI wheel before the start
(workbench/localstack/duckdb_extensions.py); without it the emulator tries to download it and dies offline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from eventmodel.resources import DEFAULT_PROJECT, LOCAL_HOST
from workbench import extras
from workbench.errors import WorkbenchError
from workbench.localstack.duckdb_extensions import install_spatial
from workbench.localstack.services import BIGQUERY_GRPC_OFFSET, bigquery

STARTUP_TIMEOUT_S = 30.0
# Environment for the emulator beyond what services.bigquery sets: no metadata-server probe, no telemetry.
_EXTRA_ENV = {"NO_GCE_CHECK": "true", "BQEMU_METRICS_ENABLED": "false"}


@dataclass
class BigQueryEmulator:
    """A running emulator started by this process. `stop()` is idempotent; use it as a context manager."""

    host: str
    port: int
    project: str
    process: subprocess.Popen
    log_path: Path
    workdir: Path | None = None  # the process's cwd, holding DuckDB's spill files; removed by stop()
    _stopped: bool = field(default=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self, location: str = "US"):
        """A google-cloud-bigquery client for this emulator (anonymous credentials)."""
        from workbench.bq_apply import make_client

        return make_client(self.project, self.host_port, location)

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the emulator's process group (SIGTERM, then SIGKILL) and wait for it."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            # The child leads its own session (start_new_session), so its group id is its pid: only what we started.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        with contextlib.suppress(OSError):
            self.log_path.unlink()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> BigQueryEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers bind (SO_REUSEADDR): a port whose old connections linger in TIME_WAIT after a restart is
        # free for them, and must be free here too.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_pair(host: str = LOCAL_HOST) -> int:
    """A free REST port whose gRPC neighbour (port + BIGQUERY_GRPC_OFFSET) is free too."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port + BIGQUERY_GRPC_OFFSET < 65536 and _free(host, port + BIGQUERY_GRPC_OFFSET):
            return port
    raise WorkbenchError(f"found no free pair of ports on {host}", "close some local servers and retry")


def start_bigquery_emulator(
    project: str = DEFAULT_PROJECT,
    port: int | None = None,
    host: str = LOCAL_HOST,
    timeout: float = STARTUP_TIMEOUT_S,
    time_travel: bool = True,
    data_dir: Path | None = None,
) -> BigQueryEmulator:
    """Start bqemulator on host:port (a free port when None) and return once it answers; WorkbenchError if not.

    The error says what failed: the port was taken, the process exited (with its last log lines, and the
    offline-fix hint when it tried to download an extension), or it did not become ready within `timeout`.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise WorkbenchError(f"the emulator binds loopback only, not {host}", "use --host 127.0.0.1")
    extras.require("local", "the BigQuery emulator", "bqemulator")
    install_spatial()
    port = port or free_port_pair(host)
    for taken in (port, port + BIGQUERY_GRPC_OFFSET):
        if not _free(host, taken):
            raise WorkbenchError(
                f"port {host}:{taken} is already in use; the BigQuery emulator needs {port} (REST) and "
                f"{port + BIGQUERY_GRPC_OFFSET} (gRPC)",
                "stop what uses it (`workbench down` if it is the local stack) or choose another port",
            )
    service = bigquery(host, project, port, time_travel, data_dir)  # data_dir: tables survive a restart
    workdir = Path(tempfile.mkdtemp(prefix="bqemulator-"))  # DuckDB spills into ./.tmp of the process's cwd
    log = tempfile.NamedTemporaryFile(prefix="bqemulator-", suffix=".log", delete=False)  # noqa: SIM115
    with log:
        process = subprocess.Popen(
            service.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **service.env, **_EXTRA_ENV},
            start_new_session=True,
            cwd=workdir,
        )
    emulator = BigQueryEmulator(host, port, project, process, Path(log.name), workdir)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                tail = emulator.log_tail()
                hint = "check the log above; is bqemulator installed (`bash scripts/bootstrap.sh`)?"
                if "extension" in tail.lower() or "http" in tail.lower():
                    hint = (
                        "it tried to download a DuckDB extension; install duckdb-extension-spatial, which the "
                        "emulator's start copies into place offline (it comes with pip install "
                        "'event-workbench[local]'; in a checkout `bash scripts/bootstrap.sh`), and keep "
                        "BQEMU_ENABLE_FORMAT_EXTENSIONS=false"
                    )
                raise WorkbenchError(
                    f"the BigQuery emulator exited with status {process.returncode} before it was ready:\n{tail}",
                    hint,
                )
            if service.probe(host, port):
                return emulator
            if time.monotonic() > deadline:
                raise WorkbenchError(
                    f"the BigQuery emulator did not answer on {emulator.endpoint} within {timeout:.0f} s:\n"
                    f"{emulator.log_tail()}",
                    "the machine may be overloaded; retry, or start it by hand: bqemulator start --help",
                )
            time.sleep(0.2)
    except BaseException:
        emulator.stop()
        raise
