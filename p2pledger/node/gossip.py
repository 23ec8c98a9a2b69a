"""Transaction gossip: push new transactions to every member, batched.

Members form a full mesh, so the member that accepts a transaction pushes it to
every other member once and nobody relays: in steady state each transaction crosses
each link at most once. The seen-cache drops echoes. A member that was disconnected
gets the whole mempool pushed to it when it reconnects, which makes up for gossip
shed under load or lost with a connection.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
import trio

from p2pledger.node.protocol import GOSSIP_TXS
from p2pledger.wire import Message, PeerManager

__all__ = ["Gossip"]


class Gossip:
    """Batches outgoing transactions and re-pushes the mempool to reconnected peers."""

    def __init__(
        self,
        peers: PeerManager,
        *,
        pending: Callable[[], list[bytes]],
        interval_s: float,
        batch_txs: int,
        batch_bytes: int,
    ) -> None:
        self._peers = peers
        self._pending = pending
        self._interval = interval_s
        self._batch_txs = batch_txs
        self._batch_bytes = batch_bytes
        self._outbox: list[bytes] = []
        self._ready = trio.Event()
        self._log = structlog.get_logger("p2pledger.gossip")

    def push(self, raw: bytes) -> None:
        """Queue a newly accepted transaction for every peer."""
        self._outbox.append(raw)
        self._ready.set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._resync)
            while True:
                await self._ready.wait()
                await trio.sleep(self._interval)  # let a batch gather
                self._ready = trio.Event()
                outbox, self._outbox = self._outbox, []
                for batch in self._batches(outbox):
                    self._peers.broadcast_nowait(Message(type=GOSSIP_TXS, body={"txs": batch}))

    def _batches(self, txs: list[bytes]) -> list[list[bytes]]:
        out: list[list[bytes]] = []
        batch: list[bytes] = []
        size = 0
        for raw in txs:
            if batch and (len(batch) >= self._batch_txs or size + len(raw) > self._batch_bytes):
                out.append(batch)
                batch, size = [], 0
            batch.append(raw)
            size += len(raw)
        if batch:
            out.append(batch)
        return out

    async def _resync(self) -> None:
        """Push the mempool to each peer that (re)connects. A reconnection is a new
        session, so a peer that dropped and came back between two looks (a fast
        reconnect) is resynced too."""
        known: dict[str, bytes | None] = {}
        while True:
            sessions = {p: self._peers.session_with(p) for p in self._peers.connected_peers()}
            for peer, session in sessions.items():
                if session is None or known.get(peer) == session:
                    continue
                pending = self._pending()
                for batch in self._batches(pending):
                    self._peers.send_nowait(peer, Message(type=GOSSIP_TXS, body={"txs": batch}))
                if pending:
                    self._log.info("gossip.resync", peer=peer, transactions=len(pending))
            known = sessions
            await trio.sleep(self._interval * 50)
