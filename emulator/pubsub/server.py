"""Start and stop the emulator: the gRPC server, health service, upkeep thread and optional journal.

    from emulator.pubsub.server import start
    handle = start(port=0)            # port 0 picks a free port
    print(handle.target)              # e.g. 127.0.0.1:40123, for PUBSUB_EMULATOR_HOST
    handle.stop()

It listens on loopback unless given another host; warning about that is its front ends' job (`exposure_risk`
says what anyone who reaches the port could do). Its admin service (fault injection while running) is off unless
asked for: admin=True, or fault settings given at start.
"""

from __future__ import annotations

import errno
import gc
import os
import socket
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from emulator.pubsub.admin import AdminService, StatsService
from emulator.pubsub.errors import EmulatorError
from emulator.pubsub.faults import FaultConfig, FaultInjector
from emulator.pubsub.flags import DEFAULT_WORKERS
from emulator.pubsub.iam_service import IamService
from emulator.pubsub.journal import Journal, open_journal
from emulator.pubsub.publisher_service import PublisherService
from emulator.pubsub.store import Store
from emulator.pubsub.subscriber_service import SubscriberService
from eventmodel.resources import LOCAL_HOST, PUBSUB_EMULATOR_PORT

SWEEP_INTERVAL = 0.1

SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),  # without this a second emulator would silently share the port
    ("grpc.max_receive_message_length", 20 * 1024 * 1024),  # so oversize publishes get Pub/Sub's own error
    ("grpc.max_send_message_length", -1),
    # google clients ping every 30 s; the default policy would answer with GOAWAY (too_many_pings).
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
]


@dataclass
class EmulatorHandle:
    """A running emulator."""

    host: str
    port: int
    store: Store
    server: grpc.Server
    journal: Journal | None = None
    admin: bool = False  # the admin (fault-injection) service is served
    _stop: threading.Event = field(default_factory=threading.Event)
    _stop_requested: threading.Event = field(default_factory=threading.Event)
    _sweeper: threading.Thread | None = None

    @property
    def target(self) -> str:
        return address(self.host, self.port)

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving; open streams end, pending journal writes are flushed."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._stop_requested.set()
        self.store.stop()
        self.server.stop(grace).wait(grace + 5)
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        if self.journal is not None:
            self.journal.close()

    def request_stop(self) -> None:
        """Ask the thread blocked in wait() to stop the emulator (safe from a signal handler)."""
        self._stop_requested.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() or request_stop() was called (True) or the timeout passed (False)."""
        return self._stop_requested.wait(timeout)


def tune_gc() -> None:
    """For a process that runs the emulator: fewer, cheaper garbage collections.

    A backlog is hundreds of thousands of small long-lived objects; with the default thresholds the cyclic
    collector walks them over and over (measured: 25-40 % of the emulator's CPU while a backlog grows).
    Called by the process entry points, not by start(), because it changes the whole process.
    """
    gc.freeze()  # everything imported so far is permanent: never scanned again
    gc.set_threshold(100_000, 50, 100)


def address(host: str, port: int) -> str:
    """host:port as gRPC and PUBSUB_EMULATOR_HOST expect it (IPv6 literals in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _check_port(host: str, port: int) -> None:
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the gRPC server does: connections of a previous run in TIME_WAIT must not block a restart.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise EmulatorError(
                    f"Port {port} on {host} is already in use.",
                    f"Stop whatever listens there (`ss -ltnp 'sport = :{port}'`) or choose another --port.",
                ) from None
            raise EmulatorError(
                f"Cannot listen on {host}:{port}: {exc.strerror}.",
                "Use a local address such as 127.0.0.1 and a free port.",
            ) from None


def _check_data_dir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise EmulatorError(
            f"The data directory {data_dir} is not writable ({exc.strerror}).",
            "Pass a --data-dir you can write to, or fix its permissions.",
        ) from None
    if not os.access(data_dir, os.W_OK):
        raise EmulatorError(
            f"The data directory {data_dir} is not writable.",
            "Pass a --data-dir you can write to, or fix its permissions.",
        )


def admin_wanted(
    admin: bool | None, faults: dict[str, Any] | None, fault_overrides: dict[str, dict[str, Any]] | None
) -> bool:
    """Whether to serve the admin service: as asked, else only when faults are set at start (asking for faults is
    asking for fault injection, and the admin service is how a test reads and changes them)."""
    if admin is not None:
        return admin
    return FaultConfig.from_dict(faults or {}).active or bool(fault_overrides)


def start(
    host: str = LOCAL_HOST,
    port: int = PUBSUB_EMULATOR_PORT,
    data_dir: str | Path | None = None,
    seed: int = 0,
    faults: dict[str, Any] | None = None,
    workers: int = DEFAULT_WORKERS,
    fault_overrides: dict[str, dict[str, Any]] | None = None,
    admin: bool | None = None,
) -> EmulatorHandle:
    """Start the emulator in this process and return once it accepts connections.

    `faults` are the global fault settings, `fault_overrides` per topic or subscription name. `admin` serves the
    admin service (fault injection while running); None: only when faults or overrides are given.
    Raises EmulatorError when the port is taken or the data directory is not writable.
    """
    _check_port(host, port)
    injector = FaultInjector(seed, FaultConfig.from_dict(faults or {}))
    for resource, values in (fault_overrides or {}).items():
        injector.configure(values, resource)
    admin = admin_wanted(admin, faults, fault_overrides)
    store = Store(injector)
    journal = None
    if data_dir is not None:
        directory = Path(data_dir)
        _check_data_dir(directory)
        journal, top = open_journal(directory, store.replay, store.snapshot_records)
        store.restore_seq(top)
        store.journal = journal

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pubsub-rpc"), options=SERVER_OPTIONS
    )
    handlers = [
        PublisherService(store).handler(),
        SubscriberService(store).handler(),
        IamService(store).handler(),
        StatsService(store).handler(),
    ]
    if admin:
        handlers.append(AdminService(store).handler())
    server.add_generic_rpc_handlers(tuple(handlers))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        bound = server.add_insecure_port(address(host, port))
    except RuntimeError:
        bound = 0
    if not bound:
        if journal is not None:
            journal.close()
        raise EmulatorError(f"Cannot listen on {host}:{port}.", "Choose another --port or --host.")
    server.start()
    for service in ("", "google.pubsub.v1.Publisher", "google.pubsub.v1.Subscriber"):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)

    handle = EmulatorHandle(host=host, port=bound, store=store, server=server, journal=journal, admin=admin)

    def sweep() -> None:
        while not handle._stop.wait(SWEEP_INTERVAL):
            store.sweep()
            store.maybe_compact()

    handle._sweeper = threading.Thread(target=sweep, name="pubsub-sweeper", daemon=True)
    handle._sweeper.start()
    return handle


def exposure_risk(admin: bool) -> str:
    """What anyone who can reach the emulator's port can do: the front ends' warning for a non-loopback host."""
    return "read and publish messages" + (" and inject faults (--admin)" if admin else "")


def wait_healthy(target: str, timeout: float = 30.0) -> None:
    """Block until the emulator at host:port answers the gRPC health check (raises TimeoutError)."""
    import time

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Pub/Sub emulator at {target} not healthy after {timeout:.0f} s")
            time.sleep(0.1)
