"""Offline audit: re-verify a whole ledger from genesis, sharing nothing with the node
that wrote it but the rules.

Every block is checked against its parent (height, hash chain, Merkle roots, the
proposer's membership and signature) and against the membership in force at its
height (replayed from genesis through every membership update), every transaction
signature is re-verified,
every block is re-executed against a fresh state to check its verdicts and state
root, no transaction id commits twice, and the store's indexes agree with the
blocks. The audit stops at the first bad block and says which and why.

Signature checks run on a thread pool (libsodium releases the GIL), so an audit uses
every core the machine has.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from p2pledger.chain import Block, Transaction, network_of_genesis
from p2pledger.errors import InvalidBlock, InvalidTransaction
from p2pledger.replay import commit_block
from p2pledger.state import MemoryState
from p2pledger.store import LedgerStore

__all__ = ["AuditReport", "audit_blocks", "audit_data_dir"]


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What an audit found. ``error`` is None when the whole ledger checks out."""

    chain_name: str
    chain_id: bytes
    height: int
    blocks: int
    transactions: int
    valid: int
    invalid: int
    tip_hash: bytes
    state_root: bytes
    seconds: float
    error: InvalidBlock | None
    #: The membership version in force after the last block checked.
    membership_version: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def audit_blocks(
    blocks: Iterable[Block],
    *,
    workers: int | None = None,
    store: LedgerStore | None = None,
) -> AuditReport:
    """Audit a chain given as blocks from genesis; with ``store``, check its indexes too."""
    started = time.perf_counter()
    it = iter(blocks)
    genesis = next(it, None)
    if genesis is None:
        raise InvalidBlock("empty_ledger", "the ledger has no genesis block", 0)
    network = network_of_genesis(genesis)
    state = MemoryState()
    parent = genesis
    committed: dict[bytes, int] = {}
    n_blocks, n_txs, n_valid = 1, 0, 0
    error: InvalidBlock | None = None
    ways = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=ways) as pool:
        for block in it:
            try:
                _check_unique(block, committed)
                verified = _verify_signatures(pool, block.txs, ways)
                outcome = commit_block(
                    state,
                    block,
                    parent=parent.header,
                    parent_hash=parent.hash,
                    network=network,
                    verified_tx_ids=verified,
                )
                if store is not None:
                    _check_indexes(store, block)
            except InvalidBlock as exc:
                error = exc
                break
            state.apply(outcome.writes)
            if outcome.network is not None:
                network = outcome.network
            parent = block
            n_blocks += 1
            n_txs += len(block.txs)
            n_valid += sum(r.valid for r in block.results)
    return AuditReport(
        chain_name=network.chain_name,
        chain_id=genesis.hash,
        height=parent.height,
        blocks=n_blocks,
        transactions=n_txs,
        valid=n_valid,
        invalid=n_txs - n_valid,
        tip_hash=parent.hash,
        state_root=parent.header.state_root,
        seconds=time.perf_counter() - started,
        error=error,
        membership_version=network.version,
    )


def audit_data_dir(data_dir: Path, *, workers: int | None = None) -> AuditReport:
    """Audit the ledger in a member's data directory (opened read-only)."""
    with LedgerStore.open(data_dir, readonly=True) as store:
        report = audit_blocks(store.blocks(0), workers=workers, store=store)
        tip = store.tip()
        if report.ok and tip is not None and tip[0] != report.height:
            error = InvalidBlock("tip_mismatch", f"the store's tip is {tip[0]}", report.height)
            report = _with_error(report, error)
        return report


def _with_error(report: AuditReport, error: InvalidBlock) -> AuditReport:
    return replace(report, error=error)


def _verify_signatures(pool: ThreadPoolExecutor, txs: Sequence[bytes], ways: int) -> set[bytes]:
    """Ids of the transactions whose signatures verify; the rest are left to
    validation, which re-checks them and reports the first bad one precisely."""
    if not txs:
        return set()
    size = max(1, -(-len(txs) // ways))
    chunks = [txs[i : i + size] for i in range(0, len(txs), size)]
    verified: set[bytes] = set()
    for ids in pool.map(_verify_chunk, chunks):
        verified.update(ids)
    return verified


def _verify_chunk(chunk: Sequence[bytes]) -> list[bytes]:
    ok = []
    for raw in chunk:
        try:
            tx = Transaction.decode(raw)
            tx.verify_signature()
        except InvalidTransaction:
            continue
        ok.append(tx.id)
    return ok


def _check_unique(block: Block, committed: dict[bytes, int]) -> None:
    for raw in block.txs:
        tx_id = hashlib.sha256(raw).digest()
        earlier = committed.setdefault(tx_id, block.height)
        if earlier != block.height:
            raise InvalidBlock(
                "duplicate_tx",
                f"transaction {tx_id.hex()} was already committed at height {earlier}",
                block.height,
            )


def _check_indexes(store: LedgerStore, block: Block) -> None:
    if store.height_of(block.hash) != block.height:
        raise InvalidBlock("index_mismatch", "the hash index does not point here", block.height)
    for index, raw in enumerate(block.txs):
        tx_id = hashlib.sha256(raw).digest()
        if store.tx_location(tx_id) != (block.height, index):
            raise InvalidBlock(
                "index_mismatch",
                f"the transaction index does not point to transaction {index}",
                block.height,
            )
