"""Emulator processes for tests: this project's Pub/Sub emulator and the official one (where gcloud and java are
installed), each on a free loopback port and stopped by its own pid (or its own process group, for gcloud, which
starts java as a child). Imported by tests/conftest.py (fixtures) and by test modules that start private ones.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "p"
OFFICIAL_START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_grpc_ready(target: str, process: subprocess.Popen, timeout: float) -> None:
    """Wait until a ListTopics call succeeds (works for both emulators; the official one has no health service)."""
    from google.pubsub_v1.types import ListTopicsRequest, ListTopicsResponse

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/google.pubsub.v1.Publisher/ListTopics",
            request_serializer=ListTopicsRequest.serialize,
            response_deserializer=ListTopicsResponse.deserialize,
        )
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"emulator process exited early with status {process.returncode}")
            try:
                call(ListTopicsRequest(project=f"projects/{PROJECT}"), timeout=1.0)
                return
            except grpc.RpcError:
                time.sleep(0.2)
    raise TimeoutError(f"emulator at {target} not ready after {timeout:.0f} s")


@dataclass
class EmulatorProcess:
    """A running emulator subprocess."""

    kind: str  # "workbench" or "official"
    target: str
    process: subprocess.Popen
    args: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is not None:
            return
        if self.kind == "official":
            # gcloud runs java as a child in the session we created: stop that whole group, and only it.
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            if self.kind == "official":
                os.killpg(self.process.pid, signal.SIGKILL)
            else:
                self.process.kill()
            self.process.wait(timeout=10)
        if self.kind == "official":
            # java may outlive gcloud; its group id is gcloud's pid.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


def start_workbench_emulator(*args: str, port: int | None = None) -> EmulatorProcess:
    port = port or free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # stderr goes to a file, not a pipe: nobody reads a pipe during the session, and a full one would block it.
    # (The child keeps its own descriptor of the log after this block closes ours.)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "emulator.pubsub", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        emulator = EmulatorProcess("workbench", f"127.0.0.1:{port}", process, list(args))
        # The process prints "listening on ..." once serving, or an error and exits.
        line = process.stdout.readline().decode()
        if not line.startswith("listening on"):
            emulator.stop()
            log.seek(0)
            raise RuntimeError(f"emulator did not start: {line}{log.read().decode()}")
    from emulator.pubsub.server import wait_healthy

    try:
        wait_healthy(emulator.target, timeout=30)
    except Exception:
        emulator.stop()
        raise
    return emulator


def official_emulator_missing() -> str | None:
    if not shutil.which("gcloud"):
        return "gcloud is not installed"
    if not shutil.which("java"):
        return "java is not installed (the official emulator needs it)"
    return None


def start_official_emulator() -> EmulatorProcess:
    port = free_port()
    process = subprocess.Popen(
        ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}", f"--project={PROJECT}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    emulator = EmulatorProcess("official", f"127.0.0.1:{port}", process)
    try:
        _wait_grpc_ready(emulator.target, process, OFFICIAL_START_TIMEOUT)
    except Exception:
        emulator.stop()
        raise
    return emulator


def start_gcs_emulator(port: int | None = None, storage: Path | None = None) -> tuple[subprocess.Popen, int]:
    """gcp-storage-emulator with bucket `workbench-test` on a free (or the given) loopback port, once it answers.
    In memory, or with `storage`, on disk there (objects survive a kill and restart)."""
    import time
    import urllib.request

    from workbench.localstack.services import free_port

    port = port or free_port()
    script = Path(sys.executable).with_name("gcp-storage-emulator")
    argv = [sys.executable, str(script), "start", "--host", "127.0.0.1", "--port", str(port),
            "--default-bucket", "workbench-test", *([] if storage else ["--in-memory"])]  # fmt: skip
    env = {**os.environ, **({"STORAGE_BASE": str(storage)} if storage else {})}
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                               start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/storage/v1/b/workbench-test", timeout=1).close()
            return process, port
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the GCS emulator did not start") from None
            time.sleep(0.2)


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
