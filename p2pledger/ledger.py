"""A member's ledger: the block store and the application state, kept in step.

``Ledger`` is what the node (and the demo, and tests) use to grow a chain: the
proposer's ``propose`` executes transactions and seals a block; ``commit`` checks a
block (its own or a peer's), re-executes it and writes block, transaction index and
state changes in one durable LMDB transaction. Synchronous: the trio runtime calls it
through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from pathlib import Path
from typing import Final

from p2pledger.chain import Block, Transaction, genesis_block, network_of_genesis
from p2pledger.crypto import SigningKey
from p2pledger.errors import StoreError
from p2pledger.membership import Network
from p2pledger.replay import commit_block, propose_block
from p2pledger.state import ApplyOutcome, StateView
from p2pledger.store import LedgerStore

__all__ = ["Ledger"]

_NOTHING: Final[frozenset[bytes]] = frozenset()


class Ledger:
    """A chain on disk with its state: genesis, then blocks that passed every check."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        tip = store.tip()
        if tip is None:
            raise StoreError(f"{store.data_dir} holds no genesis block; run: p2pledger init")
        self._network = network_of_genesis(store.block(0))
        self._tip = store.block(tip[0])

    @classmethod
    def create(cls, data_dir: Path, network: Network) -> Ledger:
        """Make a new data directory holding the genesis block of ``network``."""
        genesis = genesis_block(network)
        store = LedgerStore.open(data_dir, create=True, expected_chain_id=genesis.hash)
        try:
            if store.tip() is None:
                store.append_block(genesis)
            return cls(store)
        except BaseException:
            store.close()
            raise

    @classmethod
    def open(cls, data_dir: Path, *, chain_id: bytes | None = None) -> Ledger:
        store = LedgerStore.open(data_dir, expected_chain_id=chain_id)
        try:
            return cls(store)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def network(self) -> Network:
        """The membership in force at the tip."""
        return self._network

    @property
    def chain_id(self) -> bytes:
        chain_id = self.store.chain_id()
        assert chain_id is not None  # a ledger always holds its genesis
        return chain_id

    def state_view(self) -> StateView:
        """The committed state, for queries (balances, provenance, anchors)."""
        return _StoreView(self.store)

    @property
    def tip(self) -> Block:
        return self._tip

    def propose(
        self, txs: Sequence[Transaction], *, key: SigningKey, time_ms: int, term: int
    ) -> Block:
        """Seal the next block holding ``txs`` (not yet stored: ``commit`` stores it)."""
        block, _ = propose_block(
            _StoreView(self.store),
            txs,
            parent=self._tip.header,
            parent_hash=self._tip.hash,
            network=self._network,
            time_ms=time_ms,
            term=term,
            proposer=key,
        )
        return block

    def commit(
        self,
        block: Block,
        *,
        verified_tx_ids: Container[bytes] = _NOTHING,
        raft_index: int | None = None,
    ) -> ApplyOutcome:
        """Check, re-execute and durably store ``block`` as the new tip (with the index
        of the Raft entry that carried it, when it came through Raft)."""
        outcome = commit_block(
            _StoreView(self.store),
            block,
            parent=self._tip.header,
            parent_hash=self._tip.hash,
            network=self._network,
            verified_tx_ids=verified_tx_ids,
        )
        self.store.append_block(block, state_writes=outcome.writes, raft_index=raft_index)
        self._tip = block
        return outcome


class _StoreView:
    """The committed state in the store, as the state machine reads it."""

    __slots__ = ("_store",)

    def __init__(self, store: LedgerStore) -> None:
        self._store = store

    def get(self, key: bytes) -> bytes | None:
        return self._store.state_get(key)
