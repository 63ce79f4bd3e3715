"""Loopback ports: one that is free now, whether one is taken, and the REST + gRPC pair bqemulator binds."""

from __future__ import annotations

import socket

from eventmodel.resources import BIGQUERY_GRPC_OFFSET, LOCAL_HOST


def free_port(host: str = LOCAL_HOST) -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def port_bindable(host: str, port: int) -> bool:
    """A server could bind host:port now. Probed as the servers bind (SO_REUSEADDR): a port whose old connections
    linger in TIME_WAIT after a restart is free for them, and so must be free here too."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_pair(host: str = LOCAL_HOST, offset: int = BIGQUERY_GRPC_OFFSET) -> int:
    """A free port whose neighbour at port + offset is free too (bqemulator: REST and, 10 above, gRPC)."""
    for _ in range(50):
        port = free_port(host)
        if port + offset < 65536 and port_bindable(host, port + offset):
            return port
    raise OSError(f"found no free pair of ports {offset} apart on {host}")
