"""Fixtures for the Pub/Sub emulator tests: emulator processes on free loopback ports, and clients bound to them.

`backend` is parametrized over this project's emulator and, when gcloud and java are installed, the official
Java emulator, so the conformance suite runs the same assertions against both. Every process started here is
stopped by its own pid (or its own process group, for gcloud, which starts java as a child).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.fixture(scope="session")
def workbench_emulator() -> Iterator[EmulatorProcess]:
    emulator = start_workbench_emulator()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def official_emulator() -> Iterator[EmulatorProcess]:
    reason = official_emulator_missing()
    if reason:
        pytest.skip(f"official emulator unavailable: {reason}")
    emulator = start_official_emulator()
    yield emulator
    emulator.stop()


@pytest.fixture(params=["workbench", "official"])
def backend(request: pytest.FixtureRequest) -> EmulatorProcess:
    """The emulator a conformance test runs against."""
    return request.getfixturevalue(f"{request.param}_emulator")


_names = itertools.count(1)


@dataclass
class PubSub:
    """Official clients pointed at one emulator, plus unique resource names and cleanup."""

    emulator: EmulatorProcess
    publisher: object
    subscriber: object
    project: str = PROJECT

    @property
    def official(self) -> bool:
        return self.emulator.kind == "official"

    def topic_path(self, prefix: str = "topic") -> str:
        return f"projects/{self.project}/topics/{prefix}-{next(_names)}-{uuid.uuid4().hex[:6]}"

    def subscription_path(self, prefix: str = "sub") -> str:
        return f"projects/{self.project}/subscriptions/{prefix}-{next(_names)}-{uuid.uuid4().hex[:6]}"

    def topic(self) -> str:
        name = self.topic_path()
        self.publisher.create_topic(name=name)
        return name

    def subscription(self, topic: str, **settings: object) -> str:
        name = self.subscription_path()
        self.subscriber.create_subscription(request={"name": name, "topic": topic, **settings})
        return name

    def publish(self, topic: str, *payloads: bytes, **attributes: str) -> list[str]:
        futures = [self.publisher.publish(topic, payload, **attributes) for payload in payloads]
        return [f.result(timeout=30) for f in futures]

    def pull(self, subscription: str, count: int, timeout: float = 20.0, ack: bool = True) -> list:
        """Pull until `count` messages arrived or the timeout passed; acks them unless ack=False."""
        from google.api_core import exceptions

        received: list = []
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            try:
                response = self.subscriber.pull(
                    request={"subscription": subscription, "max_messages": count - len(received)},
                    timeout=max(1.0, min(5.0, deadline - time.monotonic())),
                )
            except exceptions.DeadlineExceeded:
                continue
            received.extend(response.received_messages)
            if ack and response.received_messages:
                self.subscriber.acknowledge(
                    request={"subscription": subscription, "ack_ids": [m.ack_id for m in response.received_messages]}
                )
        return received

    def pull_nothing(self, subscription: str, wait: float = 1.5) -> list:
        """Pull for `wait` seconds expecting nothing; returns whatever came (unacked)."""
        return self.pull(subscription, 1000, timeout=wait, ack=False)


@pytest.fixture
def pubsub(backend: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    yield from _clients(backend, monkeypatch)


@pytest.fixture
def workbench_pubsub(workbench_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    yield from _clients(workbench_emulator, monkeypatch)


def _clients(emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.target)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.005),
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
    )
    subscriber = pubsub_v1.SubscriberClient()
    yield PubSub(emulator, publisher, subscriber)
    publisher.stop()
    subscriber.close()


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[EmulatorProcess], PubSub]]:
    """Open clients on any emulator (e.g. one from fresh_emulator); all are closed after the test."""
    opened: list[Iterator[PubSub]] = []

    def factory(emulator: EmulatorProcess) -> PubSub:
        clients = _clients(emulator, monkeypatch)
        opened.append(clients)
        return next(clients)

    yield factory
    for clients in opened:
        next(clients, None)


@pytest.fixture
def fresh_emulator() -> Iterator[Callable[..., EmulatorProcess]]:
    """Start private emulator processes (with flags) for one test; all are stopped afterwards."""
    started: list[EmulatorProcess] = []

    def launch(*args: str, port: int | None = None) -> EmulatorProcess:
        emulator = start_workbench_emulator(*args, port=port)
        started.append(emulator)
        return emulator

    yield launch
    for emulator in started:
        emulator.stop()
