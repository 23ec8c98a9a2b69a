"""systemd's readiness protocol (sd_notify): tell the service manager we serve.

With ``Type=notify`` systemd sets ``NOTIFY_SOCKET``; a datagram ``READY=1`` marks
the service started, ``STOPPING=1`` that it is shutting down. Without the variable
(not under systemd) this does nothing.
"""

from __future__ import annotations

import os
import socket

__all__ = ["notify"]


def notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1") to systemd; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True
