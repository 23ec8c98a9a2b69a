"""A ``LedgerService`` for the API tests: a real Ledger in a directory, a dict mempool.

It makes the same entry checks a node must (``check_entry``, then committed and
pending ids), commits its pending transactions when told to (``commit_pending``), or
on every submit (``commit_on_submit``), and lets a test fill the mempool, flip health
and see who is waiting. Ledger calls run inline: it is a fake, and tests stay
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from p2pledger.api import MempoolFull, NodeStatus, PeerStatus, TxRejected, TxStatus, check_entry
from p2pledger.chain import Block, Transaction
from p2pledger.chain.receipt import make_receipt
from p2pledger.errors import NotFound
from p2pledger.ledger import Ledger
from p2pledger.membership import Network
from p2pledger.state import AnchorRecord, ConfigRecord, Lot, anchor, balance, provenance
from tests.factory import GENESIS_TIME_MS, TestNetwork


class FakeNode:
    """Member m0 of a ``TestNetwork``, which orders blocks all by itself."""

    def __init__(
        self,
        net: TestNetwork,
        data_dir: Path,
        *,
        mempool_max: int = 100,
        retry_after_s: float = 2.5,
        commit_on_submit: bool = False,
    ) -> None:
        self.net = net
        self.ledger = Ledger.create(data_dir, net.network)
        self.pending: dict[bytes, Transaction] = {}
        self.mempool_max = mempool_max
        self.retry_after_s = retry_after_s
        self.commit_on_submit = commit_on_submit
        self.is_healthy = True
        self.unhealthy_reason = "no leader in reach (the fake says so)"
        self.waiting = 0
        self._committed = trio.Event()

    def close(self) -> None:
        self.ledger.close()

    # --- what tests drive ---------------------------------------------------------

    def commit_pending(self) -> Block:
        """Order every pending transaction into the next block and commit it (proposed
        by m0, which the tests never remove)."""
        height = self.ledger.tip.height + 1
        block = self.ledger.propose(
            list(self.pending.values()),
            key=self.net.node_keys[0],
            time_ms=GENESIS_TIME_MS + height * 1000,
            term=1,
        )
        self.ledger.commit(block)
        self.pending.clear()
        self._committed.set()
        self._committed = trio.Event()
        return block

    # --- LedgerService ------------------------------------------------------------

    async def submit(self, raw: bytes) -> bytes:
        tx = check_entry(raw, chain_id=self.ledger.chain_id, network=self.ledger.network)
        if self.ledger.store.tx_location(tx.id) is not None:
            raise TxRejected("already_committed", f"{tx.id.hex()} is already in the ledger")
        if tx.id in self.pending:
            raise TxRejected("already_pending", f"{tx.id.hex()} is already pending")
        if len(self.pending) >= self.mempool_max:
            raise MempoolFull(self.retry_after_s)
        self.pending[tx.id] = tx
        if self.commit_on_submit:
            self.commit_pending()
        return tx.id

    async def submit_many(self, raws: Sequence[bytes]) -> list[bytes | TxRejected | MempoolFull]:
        out: list[bytes | TxRejected | MempoolFull] = []
        for raw in raws:
            try:
                out.append(await self.submit(raw))
            except (TxRejected, MempoolFull) as exc:
                out.append(exc)
        return out

    async def tx_statuses(self, tx_ids: Sequence[bytes]) -> list[TxStatus]:
        return [await self.tx_status(t) for t in tx_ids]

    async def wait_committed(self, tx_id: bytes) -> TxStatus:
        self.waiting += 1
        try:
            while True:
                status = await self.tx_status(tx_id)
                if status.result is not None:
                    return status
                await self._committed.wait()
        finally:
            self.waiting -= 1

    async def wait_all_committed(self, tx_ids: Sequence[bytes]) -> None:
        for tx_id in tx_ids:
            await self.wait_committed(tx_id)

    async def tx_status(self, tx_id: bytes) -> TxStatus:
        where = self.ledger.store.tx_location(tx_id)
        if where is not None:
            height, index = where
            result = self.ledger.store.block(height).results[index]
            return TxStatus.committed(tx_id, height=height, index=index, result=result)
        if tx_id in self.pending:
            return TxStatus.pending(tx_id)
        return TxStatus.unknown(tx_id)

    async def block(self, height: int | None) -> Block:
        if height is None:
            return self.ledger.tip
        return self.ledger.store.block(height)

    async def receipt(self, tx_id: bytes) -> dict[str, Any]:
        where = self.ledger.store.tx_location(tx_id)
        if where is None:
            raise NotFound(f"transaction {tx_id.hex()} is not committed")
        return make_receipt(self.ledger.store.block(where[0]), where[1])

    async def balance(self, fund: str, account: bytes) -> tuple[int, list[Lot]]:
        if self.ledger.network.fund(fund) is None:
            raise NotFound(f"there is no fund {fund!r}")
        view = self.ledger.state_view()
        return balance(view, fund, account), provenance(view, fund, account)

    async def anchor(self, digest: bytes) -> AnchorRecord | None:
        return anchor(self.ledger.state_view(), digest)

    async def network(self) -> Network:
        return self.ledger.network

    async def config_history(self) -> list[ConfigRecord]:
        return self.ledger.config_history()

    def status(self) -> NodeStatus:
        return NodeStatus(
            member="m0",
            role="leader",
            chain_name=self.ledger.network.chain_name,
            chain_id=self.ledger.chain_id,
            height=self.ledger.tip.height,
            term=1,
            leader="m0",
            peers=(
                PeerStatus(name="m1", connected=True, lag=0),
                PeerStatus(name="m2", connected=False),
            ),
        )

    def healthy(self) -> bool:
        return self.is_healthy

    def health_problem(self) -> str | None:
        return None if self.is_healthy else self.unhealthy_reason
