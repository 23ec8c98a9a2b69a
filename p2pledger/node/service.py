"""The node seen by the HTTP API: ``LedgerService`` on top of a running ``Node``.

Reads that touch LMDB run in worker threads; ``status`` and ``healthy`` read only
what the node holds in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from p2pledger.api.errors import MempoolFull as ApiMempoolFull
from p2pledger.api.errors import TxRejected
from p2pledger.api.service import NodeStatus, PeerStatus, TxStatus
from p2pledger.chain import Block
from p2pledger.chain.receipt import make_receipt
from p2pledger.errors import NotFound
from p2pledger.gossip import MempoolFull
from p2pledger.membership import Network
from p2pledger.membership import Role as MemberRole
from p2pledger.node.reconfig import StandingKind
from p2pledger.raft import Role
from p2pledger.state import AnchorRecord, ConfigRecord, Lot, anchor, balance, provenance

if TYPE_CHECKING:
    from p2pledger.ledger import Ledger
    from p2pledger.node.runtime import Node

__all__ = ["NodeService"]


class NodeService:
    """Implements ``p2pledger.api.service.LedgerService`` for a ``Node``."""

    def __init__(self, node: Node) -> None:
        self._node = node

    @property
    def _ledger(self) -> Ledger:
        ledger = self._node.ledger
        if ledger is None:
            raise NotFound("the ledger is not open yet")
        return ledger

    async def submit(self, raw: bytes) -> bytes:
        try:
            return await self._node.submit(raw)
        except MempoolFull as exc:
            raise ApiMempoolFull(exc.retry_after_s) from exc

    async def submit_many(self, raws: Sequence[bytes]) -> list[bytes | TxRejected | ApiMempoolFull]:
        out: list[bytes | TxRejected | ApiMempoolFull] = []
        for outcome in await self._node.submit_many(raws):
            if isinstance(outcome, MempoolFull):
                out.append(ApiMempoolFull(outcome.retry_after_s))
            else:
                assert isinstance(outcome, bytes | TxRejected)
                out.append(outcome)
        return out

    async def wait_committed(self, tx_id: bytes) -> TxStatus:
        await self._node.wait_committed(tx_id)
        return await self.tx_status(tx_id)

    async def wait_all_committed(self, tx_ids: Sequence[bytes]) -> None:
        await self._node.wait_all_committed(tx_ids)

    async def tx_status(self, tx_id: bytes) -> TxStatus:
        (status,) = await self.tx_statuses([tx_id])
        return status

    async def tx_statuses(self, tx_ids: Sequence[bytes]) -> list[TxStatus]:
        store = self._ledger.store
        recent = self._node.recent_results
        if all(t in recent for t in tx_ids):  # (the usual answer to a client's wait)
            return [
                TxStatus.committed(t, height=h, index=i, result=r)
                for t in tx_ids
                for h, i, r in (recent[t],)
            ]

        def read() -> list[TxStatus | None]:
            out: list[TxStatus | None] = []
            blocks: dict[int, Block] = {}
            for tx_id in tx_ids:
                where = store.tx_location(tx_id)
                if where is None:
                    out.append(None)
                    continue
                height, index = where
                if height not in blocks:
                    blocks[height] = store.block(height)
                out.append(
                    TxStatus.committed(
                        tx_id, height=height, index=index, result=blocks[height].results[index]
                    )
                )
            return out

        found = await trio.to_thread.run_sync(read)
        mempool = self._node.mempool
        return [
            status
            if status is not None
            else TxStatus.pending(tx_id)
            if tx_id in mempool
            else TxStatus.unknown(tx_id)
            for tx_id, status in zip(tx_ids, found, strict=True)
        ]

    async def block(self, height: int | None) -> Block:
        store = self._ledger.store

        def read() -> Block:
            if height is None:
                tip = store.tip()
                if tip is None:
                    raise NotFound("the ledger is empty")
                return store.block(tip[0])
            return store.block(height)

        return await trio.to_thread.run_sync(read)

    async def receipt(self, tx_id: bytes) -> dict[str, Any]:
        store = self._ledger.store

        def read() -> dict[str, Any]:
            where = store.tx_location(tx_id)
            if where is None:
                raise NotFound(f"transaction {tx_id.hex()} is not committed")
            return make_receipt(store.block(where[0]), where[1])

        return await trio.to_thread.run_sync(read)

    async def balance(self, fund: str, account: bytes) -> tuple[int, list[Lot]]:
        if self._ledger.network.fund(fund) is None:
            raise NotFound(f"there is no fund {fund!r}")
        view = self._ledger.state_view()

        def read() -> tuple[int, list[Lot]]:
            return balance(view, fund, account), provenance(view, fund, account)

        return await trio.to_thread.run_sync(read)

    async def anchor(self, digest: bytes) -> AnchorRecord | None:
        view = self._ledger.state_view()
        return await trio.to_thread.run_sync(anchor, view, digest)

    async def network(self) -> Network:
        return self._ledger.network

    async def config_history(self) -> list[ConfigRecord]:
        return await trio.to_thread.run_sync(self._ledger.config_history)

    def status(self) -> NodeStatus:
        node = self._node
        ordering = node.ordering
        stats = ordering.statistics() if ordering is not None else None
        standing = node.standing_kind
        if standing is StandingKind.JOINING:
            role = "joining"
        elif standing is StandingKind.REMOVED:
            role = "removed"
        elif node.role is MemberRole.OBSERVER:
            role = "observer"
        elif stats is None:
            role = "starting"
        else:
            role = (
                "candidate"
                if stats.role in (Role.CANDIDATE, Role.PRE_CANDIDATE)
                else (stats.role.value)
            )
        connected = node.peers.connected_peers() if node.peers is not None else frozenset()
        height = node.ledger.tip.height if node.ledger is not None else 0
        peers = tuple(
            PeerStatus(
                name=m.name,
                connected=m.name in connected,
                lag=height - node.peer_heights[m.name] if m.name in node.peer_heights else None,
            )
            for m in node.network.members
            if m.name != node.name
        )
        return NodeStatus(
            member=node.name,
            role=role,
            chain_name=node.network.chain_name,
            chain_id=node.chain_id,
            height=height,
            term=stats.term if stats is not None else 0,
            leader=stats.lead if stats is not None else None,
            peers=peers,
        )

    def healthy(self) -> bool:
        return self._node.healthy()

    def health_problem(self) -> str | None:
        """Why /health is 503 (None: healthy): "not yet a member", "removed from the
        membership", no leader in reach."""
        return self._node.health_problem()
