"""The emulator's own services beside Pub/Sub, and a small Python client for them.

Both live on the same gRPC port as Pub/Sub, with JSON bodies so that any gRPC client can call them without
generated code:
- `emulator.pubsub.Admin` (GetFaults, SetFaults, ClearFaults): fault injection while the emulator runs. Off
  unless asked for (`--admin`, `start(admin=True)`, or fault settings given at start, which imply it); when off,
  every call answers UNIMPLEMENTED, so nothing that can reach the port can disturb the emulator.
- `emulator.pubsub.Stats` (Stats): read-only counters per topic and subscription, always on (names and counts
  only, nothing the Pub/Sub API does not already show; the live view and tests read it).

    from emulator.pubsub.admin import AdminClient
    with AdminClient("127.0.0.1:8085") as admin:     # an emulator started with --admin
        admin.set_faults(duplicate_rate=0.1, lost_ack_rate=0.05)                       # global
        admin.set_faults(subscription="projects/p/subscriptions/s", delay_ms=200, jitter_ms=50)
        print(admin.faults()["counts"])                                                 # injected so far
        admin.clear_faults()
"""

from __future__ import annotations

from typing import Any

import grpc
import orjson

from emulator.pubsub.errors import EmulatorError
from emulator.pubsub.store import Store

SERVICE = "emulator.pubsub.Admin"
STATS_SERVICE = "emulator.pubsub.Stats"


def _decode(data: bytes) -> dict[str, Any]:
    return orjson.loads(data) if data else {}


def _encode(value: Any) -> bytes:
    return orjson.dumps(value)


def _method(fn: Any) -> grpc.RpcMethodHandler:
    def call(request: dict[str, Any], context: grpc.ServicerContext) -> Any:
        try:
            return fn(request)
        except (ValueError, TypeError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    return grpc.unary_unary_rpc_method_handler(call, request_deserializer=_decode, response_serializer=_encode)


class StatsService:
    """Read-only counters (always served)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            STATS_SERVICE,
            {
                "Stats": _method(lambda request: self.store.stats()),
            },
        )


class AdminService:
    """Fault injection while running (served only when asked for: see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "GetFaults": _method(lambda request: self.store.faults.report()),
                "SetFaults": _method(self.set_faults),
                "ClearFaults": _method(self.clear_faults),
            },
        )

    def set_faults(self, request: dict[str, Any]) -> dict[str, Any]:
        settings = dict(request)
        resource = settings.pop("resource", None)
        seed = settings.pop("seed", None)
        if seed is not None:
            self.store.faults.reseed(int(seed))
        self.store.faults.configure(settings, resource)
        return self.store.faults.report()

    def clear_faults(self, request: dict[str, Any]) -> dict[str, Any]:
        self.store.faults.clear(request.get("resource"))
        return self.store.faults.report()


class AdminClient:
    """Calls the admin and stats services of a running emulator (host:port, as in PUBSUB_EMULATOR_HOST).

    A fault call to an emulator that does not serve its admin service raises EmulatorError saying how to start
    it with the service on; other errors are the grpc.RpcError of the call (INVALID_ARGUMENT for bad settings).
    """

    def __init__(self, target: str, timeout: float = 10.0) -> None:
        self.target = target
        self.channel = grpc.insecure_channel(target)
        self.timeout = timeout

    def _call(self, method: str, body: dict[str, Any] | None = None, service: str = SERVICE) -> dict[str, Any]:
        stub = self.channel.unary_unary(
            f"/{service}/{method}", request_serializer=_encode, response_deserializer=_decode
        )
        try:
            return stub(body or {}, timeout=self.timeout)
        except grpc.RpcError as exc:
            if service == SERVICE and exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise EmulatorError(
                    f"the Pub/Sub emulator at {self.target} does not serve its admin service (fault injection is "
                    "off unless asked for)",
                    "start it with --admin (`workbench emulator pubsub --admin`, `python -m emulator.pubsub "
                    "--admin`, `workbench up --pubsub-admin`)",
                ) from None
            raise

    def set_faults(
        self, topic: str | None = None, subscription: str | None = None, seed: int | None = None, **rates: float
    ) -> dict[str, Any]:
        """Change fault settings: globally, or for one topic (publish failures) or subscription.

        Rates: duplicate_rate, delay_ms, jitter_ms, publish_failure_rate, lost_ack_rate. Returns the report.
        """
        body: dict[str, Any] = dict(rates)
        if topic or subscription:
            body["resource"] = topic or subscription
        if seed is not None:
            body["seed"] = seed
        return self._call("SetFaults", body)

    def clear_faults(self, resource: str | None = None) -> dict[str, Any]:
        return self._call("ClearFaults", {"resource": resource} if resource else {})

    def faults(self) -> dict[str, Any]:
        """Settings and the count of every injected fault, in total and per resource."""
        return self._call("GetFaults")

    def stats(self) -> dict[str, Any]:
        """Topics (published counts) and subscriptions (backlog, delivered, acked, dead-lettered)."""
        return self._call("Stats", service=STATS_SERVICE)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
