"""The services of the embedded local stack: how each is started, probed and advertised.

Every service listens on loopback only. The exports are the environment contract shared with
docker-compose.yml: any Google client library pointed by them reaches the local stack unchanged, and so do
boto3, Beam's s3:// filesystem and the AWS CLI for the S3 server (AWS_ENDPOINT_URL and its placeholder keys).
"""

from __future__ import annotations

import shutil
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from endpoints.s3 import LOCAL_S3_ACCESS_KEY_ID, LOCAL_S3_REGION, LOCAL_S3_SECRET_ACCESS_KEY
from eventmodel import resources as names
from eventmodel.resources import BIGQUERY_EMULATOR_PORT, BIGQUERY_GRPC_OFFSET, GCS_EMULATOR_PORT, PUBSUB_EMULATOR_PORT

# What a client of the local S3 server needs besides its endpoint: moto's placeholder keys (any pair is accepted
# while the server checks no signature; they open no real account) and a region (boto3 insists on one).
S3_TEST_CREDENTIALS = {
    names.AWS_ACCESS_KEY_ID_ENV: LOCAL_S3_ACCESS_KEY_ID,
    names.AWS_SECRET_ACCESS_KEY_ENV: LOCAL_S3_SECRET_ACCESS_KEY,
    names.AWS_REGION_ENV: LOCAL_S3_REGION,
}


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
    host: str,
    project: str,
    port: int = PUBSUB_EMULATOR_PORT,
    data_dir: Path | None = None,
    admin: bool = False,
    flags: tuple[str, ...] = (),
) -> Service:
    """This project's emulator; admin=True also serves its fault-injection service (off unless asked for);
    flags: further flags of `python -m emulator.pubsub` (fault injection, --seed)."""
    argv = [sys.executable, "-m", "emulator.pubsub", "--host", host, "--port", str(port), *flags]
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
        # Offline fix: never try to download DuckDB's avro/format extensions at start (the emulator dies offline);
        # no GCE metadata probe, no telemetry.
        env={"BQEMU_ENABLE_FORMAT_EXTENSIONS": "false", "NO_GCE_CHECK": "true", "BQEMU_METRICS_ENABLED": "false"},
        ports=(port, grpc_port),
        extra="local",
        modules=("bqemulator",),
    )


def gcs(
    host: str, port: int = GCS_EMULATOR_PORT, bucket: str = "workbench-local", data_dir: Path | None = None
) -> Service:
    """gcp-storage-emulator with `bucket`: in memory, or with data_dir its objects on disk there (STORAGE_BASE)."""
    argv = [
        *_console_script("gcp-storage-emulator"), "start",
        "--host", host, "--port", str(port), "--quiet", "--default-bucket", bucket,
        *([] if data_dir is not None else ["--in-memory"]),
    ]  # fmt: skip
    return Service(
        "gcs",
        port,
        argv,
        lambda h, p: _http_ok(f"http://{h}:{p}/storage/v1/b/{bucket}"),
        {"STORAGE_EMULATOR_HOST": f"http://{host}:{port}"},
        env={"STORAGE_BASE": str(data_dir)} if data_dir is not None else {},
        ports=(port,),
        extra="local",
        modules=("gcp_storage_emulator",),
    )


def s3(host: str, port: int = names.S3_SERVER_PORT) -> Service:
    """moto's server mode (`python -m moto.server`) as the local S3: objects in memory, gone when it stops.

    Ready when an S3 call answers (ListBuckets, unsigned: moto checks no signature unless told to, see
    workbench/localstack/s3_permissions.py). The exports point boto3 (AWS_ENDPOINT_URL, botocore >= 1.31), Beam's
    s3:// filesystem (which builds its client through boto3) and the AWS CLI at it with its placeholder keys.
    """
    return Service(
        "s3",
        port,
        [sys.executable, "-m", "moto.server", "--host", host, "--port", str(port)],
        lambda h, p: _http_ok(f"http://{h}:{p}/"),
        {names.AWS_ENDPOINT_ENV: f"http://{host}:{port}", **S3_TEST_CREDENTIALS},
        ports=(port,),
        extra="local",
        modules=("moto", "flask", "flask_cors"),
    )


def _pubsub_answers(host: str, port: int) -> bool:
    """A ListTopics call succeeds: the readiness of Google's emulator, which serves no health service."""
    import grpc
    from google.pubsub_v1.types import ListTopicsRequest, ListTopicsResponse

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        call = channel.unary_unary(
            "/google.pubsub.v1.Publisher/ListTopics",
            request_serializer=ListTopicsRequest.serialize,
            response_deserializer=ListTopicsResponse.deserialize,
        )
        try:
            call(ListTopicsRequest(project="projects/probe"), timeout=1.0)
        except grpc.RpcError:
            return False
    return True


def official_pubsub(host: str, project: str, port: int) -> Service:
    """Google's Pub/Sub emulator through gcloud (which runs it in a JVM): the reference the tests and benchmarks
    compare this project's emulator against, where gcloud and java are installed."""
    return Service(
        "official-pubsub",
        port,
        ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port={host}:{port}", f"--project={project}"],
        _pubsub_answers,
        {"PUBSUB_EMULATOR_HOST": f"{host}:{port}", "PUBSUB_PROJECT_ID": project},
        ports=(port,),
    )
