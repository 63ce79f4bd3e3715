"""Emulators as child processes of this one, for tests, benchmarks and library use: start, wait, stop.

    >>> with start_bigquery_emulator(project="workbench-local") as bq:    # doctest: +SKIP
    ...     client = bq.client()
    ...     print(bq.endpoint)                                            # http://127.0.0.1:<free port>

Command lines, environments and readiness probes come from workbench.localstack.services, the definitions
`workbench up` uses, so the two cannot disagree. `workbench up` leaves its services running after it exits
(workbench.localstack.processes); here they live as long as their handle: free ports, start in a session of
their own (a Ctrl-C in the terminal does not reach them, and stopping the session stops every helper process
they started, such as gcloud's java), wait until the probe answers (or say what failed, with the log's last
lines), stop.

Offline fix: DuckDB's spatial extension is installed from its
PyPI wheel before bqemulator starts (workbench/localstack/duckdb_extensions.py); without it the emulator tries
to download it and dies offline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventmodel.resources import DEFAULT_PROJECT, LOCAL_HOST
from workbench import extras
from workbench.errors import WorkbenchError
from workbench.localstack import services
from workbench.localstack.duckdb_extensions import install_spatial
from workbench.localstack.ports import free_port, free_port_pair, port_bindable
from workbench.localstack.processes import wait_ready

STARTUP_TIMEOUT_S = 30.0
OFFICIAL_STARTUP_TIMEOUT_S = 60.0  # gcloud, then a JVM


@dataclass
class Emulator:
    """A running emulator started by this process. `stop()` is idempotent; use it as a context manager."""

    service: services.Service
    host: str
    project: str
    process: subprocess.Popen
    log_path: Path
    workdir: Path  # the process's cwd (bqemulator's DuckDB spills into ./.tmp there); removed by stop()
    _stopped: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def port(self) -> int:
        return self.service.port

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    target = host_port  # gRPC's word for it (PUBSUB_EMULATOR_HOST)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host_port}"

    @property
    def exports(self) -> dict[str, str]:
        """The variables that point client libraries at it, as `workbench env` prints them."""
        return self.service.exports

    def client(self, location: str | None = "US"):
        """A google-cloud-bigquery client for this (BigQuery) emulator, with anonymous credentials."""
        from endpoints.bigquery import bigquery_client

        return bigquery_client(self.project, self.host_port, location)

    def s3_client(self) -> Any:
        """A boto3 S3 client for this (S3) server, with its placeholder credentials."""
        from endpoints.s3 import s3_client

        return s3_client(self.endpoint)

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed; a durable emulator restarted on the same port and data
        directory (start_* with port= and data_dir=) recovers what it had confirmed."""
        self._signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to its session, SIGKILL after `timeout`, then remove its log and scratch directory."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout)
        # A helper process may outlive the leader (gcloud's java): the session's group id is the leader's pid.
        self._signal(signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.log_path.unlink()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _signal(self, sig: int) -> None:
        # The child leads its own session (start_new_session), so its group holds only what we started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    service: services.Service,
    host: str = LOCAL_HOST,
    project: str = DEFAULT_PROJECT,
    timeout: float = STARTUP_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> Emulator:
    """Start `service` and return once its probe answers; WorkbenchError (with the log's tail) if it does not."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise WorkbenchError(f"the emulators bind loopback only, not {host}", "use --host 127.0.0.1")
    if service.extra:
        extras.require(service.extra, f"the {service.name} emulator", *service.modules)
    for port in service.ports:
        if not port_bindable(host, port):
            raise WorkbenchError(
                f"port {host}:{port} is already in use, so the {service.name} emulator cannot start",
                "stop what uses it (`workbench down` if it is the local stack) or choose another port",
            )
    workdir = Path(tempfile.mkdtemp(prefix=f"{service.name}-emulator-"))
    log_path = workdir.with_suffix(".log")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            service.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **service.env, **(env or {})},
            start_new_session=True,
            cwd=workdir,
        )
    emulator = Emulator(service, host, project, process, log_path, workdir)
    try:
        outcome = wait_ready(lambda: service.probe(host, service.port), lambda: process.poll() is None, timeout)
        if outcome == "exited":
            raise WorkbenchError(
                f"the {service.name} emulator exited with status {process.returncode} before it was ready:\n"
                f"{emulator.log_tail()}",
                _exit_hint(service, emulator.log_tail()),
            )
        if outcome == "timeout":
            raise WorkbenchError(
                f"the {service.name} emulator did not answer on {host}:{service.port} within {timeout:.0f} s:\n"
                f"{emulator.log_tail()}",
                "the machine may be overloaded; retry with a longer timeout",
            )
    except BaseException:
        emulator.stop()
        raise
    return emulator


def _exit_hint(service: services.Service, tail: str) -> str:
    if service.name == "bigquery" and ("extension" in tail.lower() or "http" in tail.lower()):
        return (
            "it tried to download a DuckDB extension; install duckdb-extension-spatial, which the emulator's "
            "start copies into place offline (it comes with pip install 'event-workbench[local]'; in a checkout "
            "`bash scripts/bootstrap.sh`), and keep BQEMU_ENABLE_FORMAT_EXTENSIONS=false"
        )
    return "read the log above; is the local stack installed (`bash scripts/bootstrap.sh`)?"


def start_pubsub_emulator(
    *flags: str,
    port: int | None = None,
    project: str = DEFAULT_PROJECT,
    data_dir: Path | None = None,
    admin: bool = False,
    host: str = LOCAL_HOST,
) -> Emulator:
    """This project's Pub/Sub emulator; data_dir makes it durable (a restart on the same port and directory
    keeps every confirmed message), admin serves its fault-injection service, flags are further flags of
    `python -m emulator.pubsub` (e.g. "--duplicate-rate", "0.3")."""
    service = services.pubsub(host, project, port or free_port(host), data_dir, admin, flags)
    return start(service, host, project)


def start_bigquery_emulator(
    project: str = DEFAULT_PROJECT,
    port: int | None = None,
    host: str = LOCAL_HOST,
    timeout: float = STARTUP_TIMEOUT_S,
    time_travel: bool = True,
    data_dir: Path | None = None,
) -> Emulator:
    """bqemulator on `port` (REST) and port + 10 (gRPC), free ones when None. With data_dir its tables live in a
    DuckDB file there and survive a kill and restart; any project id works on it."""
    extras.require("local", "the BigQuery emulator", "bqemulator")
    install_spatial()
    try:
        port = port or free_port_pair(host)
    except OSError as exc:
        raise WorkbenchError(str(exc), "close some local servers and retry") from None
    return start(services.bigquery(host, project, port, time_travel, data_dir), host, project, timeout)


def start_gcs_emulator(
    port: int | None = None, bucket: str = "workbench-test", data_dir: Path | None = None, host: str = LOCAL_HOST
) -> Emulator:
    """gcp-storage-emulator with `bucket`, in memory, or with data_dir on disk there (objects survive a kill)."""
    return start(services.gcs(host, port or free_port(host), bucket, data_dir), host)


def start_s3_emulator(
    port: int | None = None, buckets: tuple[str, ...] = (), host: str = LOCAL_HOST, timeout: float = STARTUP_TIMEOUT_S
) -> Emulator:
    """moto's S3 server on `port` (a free one when None) with `buckets` created, in memory. Its `exports` are the
    AWS variables (AWS_ENDPOINT_URL and the placeholder keys) for a child process; `s3_client()` is boto3's."""
    from endpoints.s3 import create_buckets

    emulator = start(services.s3(host, port or free_port(host)), host, timeout=timeout)
    try:
        create_buckets(emulator.s3_client(), buckets)
    except BaseException:
        emulator.stop()
        raise
    return emulator


def official_pubsub_missing() -> str | None:
    """Why Google's own Pub/Sub emulator cannot run here, or None when it can."""
    if not shutil.which("gcloud"):
        return "gcloud is not installed"
    if not shutil.which("java"):
        return "java is not installed (the official emulator needs it)"
    return None


def start_official_pubsub_emulator(project: str = DEFAULT_PROJECT, host: str = LOCAL_HOST) -> Emulator:
    """Google's Pub/Sub emulator (gcloud beta emulators pubsub), to compare this project's against it."""
    service = services.official_pubsub(host, project, free_port(host))
    return start(service, host, project, OFFICIAL_STARTUP_TIMEOUT_S)
