"""Where servers listen: loopback unless told otherwise, and one warning line on stderr when told otherwise.

Every server the workbench starts (the Pub/Sub emulator, the local stack's BigQuery and GCS emulators, Locust's
web UI and master) has no authentication: on an address other machines can reach, anyone there could read,
publish or (with the emulator's admin service) inject faults.

    >>> is_loopback("127.0.0.1"), is_loopback("[::1]"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import TextIO

# How "every interface" is spelled by the servers we start (gRPC, Locust, argparse defaults).
_ALL_INTERFACES = {"", "*", "0.0.0.0", "::", "[::]"}


def is_loopback(host: str) -> bool:
    """True when `host` (an address or a name) can only be reached from this machine."""
    host = (host or "").strip()
    if host in _ALL_INTERFACES:
        return False
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        pass
    if bare.lower() == "localhost":
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(bare, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def warn_if_exposed(
    host: str, what: str, risk: str = "read and publish messages", stream: TextIO | None = None
) -> bool:
    """Print one warning line to stderr when `what` listens beyond loopback; returns True when it warned."""
    if is_loopback(host):
        return False
    shown = host if host not in ("", "*") else "every interface"
    print(
        f"warning: {what} listens on {shown}, beyond this machine: it has no authentication, so anyone who can "
        f"reach it can {risk}; use 127.0.0.1 unless that is what you want",
        file=stream or sys.stderr,
        flush=True,
    )
    return True
