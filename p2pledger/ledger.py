"""A member's ledger: the block store and the application state, kept in step.

``Ledger`` is what the node (and the demo, and tests) use to grow a chain: the
proposer's ``propose`` executes transactions and seals a block; ``commit`` checks a
block (its own or a peer's), re-executes it and writes block, transaction index and
state changes in one durable LMDB transaction. Synchronous: the trio runtime calls it
through ``trio.to_thread.run_sync``.

The membership in force follows the ledger: ``network`` is the founding network
until a block commits a membership update, and from then on the network that update
put in force (it is kept in the state, so it survives a restart). Every block is
checked against the membership in force at its parent: a block's header carries its
version, its proposer must be a voter of it, its signers users (or admins) of it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from p2pledger.chain import Block, Header, Transaction, genesis_block, network_of_genesis
from p2pledger.crypto import SigningKey
from p2pledger.errors import StoreError
from p2pledger.membership import Network
from p2pledger.replay import commit_block, propose_block
from p2pledger.state import (
    ApplyOutcome,
    ConfigRecord,
    StateView,
    config_records,
    founding_record,
    network_in_force,
)
from p2pledger.state.keys import CONFIG_VERSION_PREFIX
from p2pledger.store import LedgerStore

__all__ = ["Ledger", "NotPipelinable", "config_history_of", "network_of_store"]

_NOTHING: Final[frozenset[bytes]] = frozenset()

#: How many of its own proposals' executions a ledger keeps until they commit.
_EXECUTED_KEEP: Final = 8


@dataclass(frozen=True, slots=True)
class _Executed:
    """A proposal's execution: valid for its block only on top of this parent, under
    this membership (the state after a parent is fixed by the parent's hash)."""

    parent_hash: bytes
    network: Network
    txs: dict[bytes, Transaction]
    outcome: ApplyOutcome
    header: Header


class NotPipelinable(Exception):
    """The block to build on is neither the tip nor a pending proposal of this ledger
    descending from it without a membership change (build on the tip instead)."""


class Ledger:
    """A chain on disk with its state: genesis, then blocks that passed every check."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        tip = store.tip()
        if tip is None:
            raise StoreError(f"{store.data_dir} holds no genesis block; run: p2pledger init")
        self._founding = network_of_genesis(store.block(0))
        self._network = network_of_store(store, self._founding)
        self._tip = store.block(tip[0])
        # block hash -> this member's execution of it, from execute_proposal
        self._executed: OrderedDict[bytes, _Executed] = OrderedDict()

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
        """The membership in force at the tip: the next block is checked against it."""
        return self._network

    @property
    def founding_network(self) -> Network:
        """The network of the genesis block (membership version 0)."""
        return self._founding

    def config_history(self) -> list[ConfigRecord]:
        """Every membership version from 0 (the founding network) to the one in force."""
        return config_history_of(self.store, self._founding)

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
        block, _ = self.execute_proposal(txs, key=key, time_ms=time_ms, term=term)
        return block

    def execute_proposal(
        self,
        txs: Sequence[Transaction],
        *,
        key: SigningKey,
        time_ms: int,
        term: int,
        after: bytes | None = None,
    ) -> tuple[Block, ApplyOutcome]:
        """``propose``, with what the block would do: its outcome's ``network`` is not
        None when the block carries a valid membership update (so the proposer can
        propose it as a Raft configuration change). Nothing is stored; the execution
        is kept, so that ``commit`` of this very block on this very parent need not
        execute it again.

        ``after`` (a block hash) builds on a block this ledger proposed and has not
        committed yet, executing on the state that block and its pending ancestors
        would leave: they must descend from the tip and change no membership, else
        NotPipelinable. None, or the tip's hash, builds on the tip."""
        parent = self._tip.header
        parent_hash = self._tip.hash
        network = self._network
        layers: list[Mapping[bytes, bytes | None]] = []
        if after is not None and after != parent_hash:
            chain: list[_Executed] = []
            at = after
            while at != parent_hash:
                entry = self._executed.get(at)
                if (
                    entry is None
                    or entry.network is not network
                    or entry.outcome.network is not None
                ):
                    raise NotPipelinable(f"block {at.hex()[:16]} is not a pending proposal")
                chain.append(entry)
                at = entry.parent_hash
            layers = [e.outcome.writes for e in chain]
            parent, parent_hash = chain[0].header, after

        def run(get: Callable[[bytes], bytes | None]) -> tuple[Block, ApplyOutcome]:
            view: StateView = _GetterView(get)
            if layers:
                view = _PendingView(view, layers)
            return propose_block(
                view,
                txs,
                parent=parent,
                parent_hash=parent_hash,
                network=network,
                time_ms=time_ms,
                term=term,
                proposer=key,
            )

        block, outcome = self.store.with_state(run)
        self._executed[block.hash] = _Executed(
            parent_hash, network, {t.id: t for t in txs}, outcome, block.header
        )
        while len(self._executed) > _EXECUTED_KEEP:
            self._executed.popitem(last=False)
        return block, outcome

    def commit(
        self,
        block: Block,
        *,
        verified_tx_ids: Container[bytes] = _NOTHING,
        raft_index: int | None = None,
        known: Callable[[bytes], Transaction | None] | None = None,
    ) -> ApplyOutcome:
        """Check, re-execute and durably store ``block`` as the new tip (with the index
        of the Raft entry that carried it, when it came through Raft). When the block
        carries a membership update, ``network`` is the new one from now on, and the
        outcome's ``network`` says so.

        ``known`` gives already decoded transactions by id (see ``validate_block``).
        A block this ledger proposed itself (``execute_proposal``) on the current tip
        and membership is not executed again: that execution is its outcome. Any other
        block, or one whose parent or membership is no longer the one it was executed
        on, is executed in full."""
        parent_hash = self._tip.hash
        mine = self._executed.pop(block.hash, None)
        if mine is not None and (
            mine.parent_hash != parent_hash or mine.network is not self._network
        ):
            mine = None
        if mine is not None:
            own = mine.txs
            if known is None:
                known = own.get
            else:
                other = known

                def known_either(tx_id: bytes) -> Transaction | None:
                    tx = own.get(tx_id)
                    return tx if tx is not None else other(tx_id)

                known = known_either
        parent = self._tip.header
        network = self._network
        executed = mine.outcome if mine is not None else None
        outcome = self.store.with_state(
            lambda get: commit_block(
                _GetterView(get),
                block,
                parent=parent,
                parent_hash=parent_hash,
                network=network,
                verified_tx_ids=verified_tx_ids,
                known=known,
                executed=executed,
            )
        )
        self.store.append_block(block, state_writes=outcome.writes, raft_index=raft_index)
        self._tip = block
        if outcome.network is not None:
            self._network = outcome.network
        return outcome


def network_of_store(store: LedgerStore, founding: Network | None = None) -> Network:
    """The membership in force at the tip of ``store`` (which may be read-only):
    the last update's network, else the genesis block's (``founding``, if known)."""
    current = network_in_force(_StoreView(store))
    if current is not None:
        return current
    return founding if founding is not None else network_of_genesis(store.block(0))


def config_history_of(store: LedgerStore, founding: Network | None = None) -> list[ConfigRecord]:
    """Every membership version of the ledger in ``store``, from version 0."""
    first = founding if founding is not None else network_of_genesis(store.block(0))
    return [founding_record(first), *config_records(store.state_items(CONFIG_VERSION_PREFIX))]


class _StoreView:
    """The committed state in the store, as the state machine reads it."""

    __slots__ = ("_store",)

    def __init__(self, store: LedgerStore) -> None:
        self._store = store

    def get(self, key: bytes) -> bytes | None:
        return self._store.state_get(key)


class _GetterView:
    """The committed state through one snapshot's getter (``LedgerStore.with_state``)."""

    __slots__ = ("get",)

    def __init__(self, get: Callable[[bytes], bytes | None]) -> None:
        self.get = get


class _PendingView:
    """The state pending blocks would leave: their writes (newest first) over a view."""

    __slots__ = ("_layers", "_view")

    def __init__(self, view: StateView, layers: list[Mapping[bytes, bytes | None]]) -> None:
        self._view = view
        self._layers = layers

    def get(self, key: bytes) -> bytes | None:
        for writes in self._layers:
            if key in writes:
                return writes[key]
        return self._view.get(key)
