"""The seam through which the transport opens and accepts connections.

The peer manager never calls trio's socket functions itself: it is given a
``NetworkBackend``. ``TrioNetwork`` is the real one (TCP through trio); netsim can pass
one that connects members over in-memory streams in virtual time. Failures to connect
are translated here, at the edge, into ``PeerUnreachable``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from p2pledger.wire.errors import ListenFailed, PeerUnreachable

__all__ = ["ConnectionHandler", "NetworkBackend", "TrioNetwork", "parse_address"]

#: Called once per accepted connection, in a task owned by the server.
ConnectionHandler = Callable[[trio.abc.Stream], Awaitable[None]]


class NetworkBackend(Protocol):
    """What the transport needs from a network."""

    async def open_tcp_stream(self, host: str, port: int) -> trio.abc.Stream:
        """Connect to ``host:port``; raise PeerUnreachable on failure."""
        ...

    async def serve_tcp(
        self,
        handler: ConnectionHandler,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections until cancelled; report the bound port as started.

        Raise ListenFailed if the address cannot be bound.
        """
        ...


class TrioNetwork:
    """Real TCP through trio."""

    async def open_tcp_stream(self, host: str, port: int) -> trio.abc.Stream:
        try:
            return await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise PeerUnreachable(f"cannot connect to {host}:{port}: {exc}") from exc

    async def serve_tcp(
        self,
        handler: ConnectionHandler,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise ListenFailed(f"cannot listen on {host}:{port}: {exc}") from exc
        bound = listeners[0].socket.getsockname()[1]
        task_status.started(bound)
        await trio.serve_listeners(handler, listeners)


def parse_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too); raise PeerUnreachable if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PeerUnreachable(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)
