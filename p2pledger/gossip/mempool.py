"""The bounded pool of verified transactions waiting to be ordered.

Bounded in transactions and in bytes, both configurable; a full pool refuses new
transactions (the API answers 503 with Retry-After) rather than dropping old ones,
so an accepted transaction is never dropped silently: it stays until it commits.
Order is arrival order, which is the order the leader cuts them into blocks.
Every transaction in the pool has had its signature verified once, on entry; the
pool's ids are what the node passes to validation as already verified.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from p2pledger.chain import Transaction
from p2pledger.errors import RemoteError

__all__ = ["Mempool", "MempoolFull", "MempoolStatistics"]


class MempoolFull(RemoteError):
    """The pool is at its limit; the client should retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class MempoolStatistics:
    transactions: int
    bytes: int
    max_transactions: int
    max_bytes: int


class Mempool:
    """Pending transactions by id, in arrival order, within count and byte limits."""

    __slots__ = ("_bytes", "_txs", "max_bytes", "max_transactions", "retry_after_s")

    def __init__(
        self, *, max_transactions: int, max_bytes: int, retry_after_s: float = 1.0
    ) -> None:
        if max_transactions < 1 or max_bytes < 1:
            raise ValueError("mempool limits must be positive")
        self.max_transactions = max_transactions
        self.max_bytes = max_bytes
        self.retry_after_s = retry_after_s
        self._txs: dict[bytes, Transaction] = {}  # insertion-ordered: arrival order
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._txs

    def get(self, tx_id: bytes) -> Transaction | None:
        return self._txs.get(tx_id)

    def add(self, tx: Transaction) -> bool:
        """Add a verified transaction; False if it is already pending.

        Raises MempoolFull, changing nothing, when either limit would be passed.
        """
        if tx.id in self._txs:
            return False
        size = len(tx.raw)
        if len(self._txs) >= self.max_transactions or self._bytes + size > self.max_bytes:
            raise MempoolFull(
                f"the mempool is full ({len(self._txs)} transactions, {self._bytes} bytes); "
                f"retry in {self.retry_after_s:g} s",
                self.retry_after_s,
            )
        self._txs[tx.id] = tx
        self._bytes += size
        return True

    def batch(
        self, *, max_transactions: int, max_bytes: int, skip: frozenset[bytes] = frozenset()
    ) -> list[Transaction]:
        """The oldest transactions that fit in a block, leaving them in the pool
        (they leave when their block commits); ``skip`` ids already in flight."""
        out: list[Transaction] = []
        size = 0
        for tx_id, tx in self._txs.items():
            if len(out) >= max_transactions:
                break
            if tx_id in skip:
                continue
            if size + len(tx.raw) > max_bytes:
                break
            out.append(tx)
            size += len(tx.raw)
        return out

    def remove(self, tx_ids: Iterable[bytes]) -> int:
        """Drop transactions that committed (or can never commit); return how many."""
        removed = 0
        for tx_id in tx_ids:
            tx = self._txs.pop(tx_id, None)
            if tx is not None:
                self._bytes -= len(tx.raw)
                removed += 1
        return removed

    def ids(self) -> list[bytes]:
        return list(self._txs)

    def statistics(self) -> MempoolStatistics:
        return MempoolStatistics(len(self._txs), self._bytes, self.max_transactions, self.max_bytes)
