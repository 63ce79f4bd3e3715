"""The services of the embedded local stack: how each is started, probed and advertised.

Every service listens on loopback only. The exports are the environment contract shared with
docker-compose.yml: any Google client library pointed by them reaches the local stack unchanged.
"""

from __future__ import annotations

import shutil
import socket
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eventmodel.resources import BIGQUERY_EMULATOR_PORT, GCS_EMULATOR_PORT, PUBSUB_EMULATOR_PORT

BIGQUERY_GRPC_OFFSET = 10  # bqemulator's Storage Read/Write gRPC port sits beside its REST port (9050 -> 9060)


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    argv: list[str]
    probe: Callable[[str, int], bool]  # one quick readiness check (host, port) -> ready
    exports: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()  # every port it binds (for the port-in-use check)
    extra: str | None = None  # the optional install (pyproject.toml extra) that brings it, checked before a start
    modules: tuple[str, ...] = ()  # what of that extra it needs


def _console_script(name: str) -> list[str]:
    """Run a console script of this virtualenv through its interpreter, so that /proc/PID/cmdline reads exactly
    as started ([python, script, args]) and `down` can recognise the process as ours."""
    beside = Path(sys.executable).with_name(name)
    return [sys.executable, str(beside if beside.exists() else (shutil.which(name) or name))]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
            return 200 <= response.status < 300
    except OSError:
        return False


def _pubsub_ready(host: str, port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def pubsub(
    host: str, project: str, port: int = PUBSUB_EMULATOR_PORT, data_dir: Path | None = None, admin: bool = False
) -> Service:
    """This project's emulator; admin=True also serves its fault-injection service (off unless asked for)."""
    argv = [sys.executable, "-m", "emulator.pubsub", "--host", host, "--port", str(port)]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    if admin:
        argv.append("--admin")
    return Service(
        "pubsub",
        port,
        argv,
        _pubsub_ready,
        {"PUBSUB_EMULATOR_HOST": f"{host}:{port}", "PUBSUB_PROJECT_ID": project},
        ports=(port,),
    )


def bigquery(
    host: str,
    project: str,
    port: int = BIGQUERY_EMULATOR_PORT,
    time_travel: bool = True,
    data_dir: Path | None = None,
) -> Service:
    """bqemulator through workbench.localstack.bigquery_main; time_travel=False skips its per-write table copies
    (see that module: they make memory grow with every write under streaming load). With data_dir the tables
    live in a DuckDB file there (bqemulator --persistent) and survive a restart, a crash or `workbench down`;
    without it they are in memory and die with the process."""
    grpc_port = port + BIGQUERY_GRPC_OFFSET
    argv = [
        sys.executable, "-m", "workbench.localstack.bigquery_main", *([] if time_travel else ["--no-time-travel"]),
        "start",
        "--rest-host", host, "--rest-port", str(port),
        "--grpc-host", host, "--grpc-port", str(grpc_port),
        "--project", project, "--log-level", "warning",
    ]  # fmt: skip
    if data_dir is not None:
        argv += ["--persistent", "--data-dir", str(data_dir)]
    return Service(
        "bigquery",
        port,
        argv,
        lambda h, p: _http_ok(f"http://{h}:{p}/bigquery/v2/projects/{project}/datasets"),
        {"BIGQUERY_EMULATOR_HOST": f"http://{host}:{port}", "GOOGLE_CLOUD_PROJECT": project},
        # Offline fix (architecture.md): never try to download DuckDB's avro/format extensions at start.
        env={"BQEMU_ENABLE_FORMAT_EXTENSIONS": "false"},
        ports=(port, grpc_port),
        extra="local",
        modules=("bqemulator",),
    )


def gcs(host: str, port: int = GCS_EMULATOR_PORT, bucket: str = "workbench-local") -> Service:
    argv = [
        *_console_script("gcp-storage-emulator"), "start",
        "--host", host, "--port", str(port), "--in-memory", "--quiet", "--default-bucket", bucket,
    ]  # fmt: skip
    return Service(
        "gcs",
        port,
        argv,
        lambda h, p: _http_ok(f"http://{h}:{p}/storage/v1/b/{bucket}"),
        {"STORAGE_EMULATOR_HOST": f"http://{host}:{port}"},
        ports=(port,),
        extra="local",
        modules=("gcp_storage_emulator",),
    )
