"""Loopback ports: one that is free now, whether one is taken, and the REST + gRPC pair bqemulator binds."""

from __future__ import annotations

import os
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


_LISTEN = "0A"  # the TCP state of a listening socket in /proc/net/tcp


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP `port` (any address), or None when unknown: not Linux, no
    listener, or a process of another user. Read from /proc (the socket's inode, then the fd that holds it)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{fields[9]}]")
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    if not inodes:
        return None
    for pid in filter(str.isdigit, _listdir("/proc")):
        for fd in _listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return int(pid)
            except OSError:
                continue
    return None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
