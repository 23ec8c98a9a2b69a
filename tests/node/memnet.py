"""An in-memory ``NetworkBackend``: members talk over trio memory streams, so a whole
network runs in one trio run, on virtual time, with no sockets."""

from __future__ import annotations

import trio
import trio.testing

from p2pledger.wire import ConnectionHandler, ListenFailed, PeerUnreachable


class MemoryNetwork:
    """Listeners by (host, port); each connection is a fresh memory stream pair whose
    server side is handled in the listener's own nursery."""

    def __init__(self) -> None:
        self._listeners: dict[tuple[str, int], tuple[ConnectionHandler, trio.Nursery]] = {}
        self.down: set[tuple[str, int]] = set()

    async def open_tcp_stream(self, host: str, port: int) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        entry = self._listeners.get((host, port))
        if entry is None or (host, port) in self.down:
            raise PeerUnreachable(f"nothing listens on {host}:{port}")
        handler, nursery = entry
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(handler, server)
        return client

    async def serve_tcp(
        self,
        handler: ConnectionHandler,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if (host, port) in self._listeners:
            raise ListenFailed(f"{host}:{port} is in use")
        async with trio.open_nursery() as nursery:
            self._listeners[(host, port)] = (handler, nursery)
            try:
                task_status.started(port)
                await trio.sleep_forever()
            finally:
                del self._listeners[(host, port)]
