"""Chain validation: is this block a valid successor of that one?

``validate_block`` checks one block against its parent's header and the membership
in force, and raises ``InvalidBlock`` whose ``reason`` is a stable code naming the
first rule broken (``height_gap``, ``wrong_prev_hash``, ``wrong_tx_root``,
``bad_header_signature``, ``proposer_not_voter``, ``duplicate_tx`` ...). Pure: the
caller supplies the parent and the membership; nothing is read or remembered.

``network`` is the membership in force after the parent: the founding network until
a block commits a membership update, then the one it put in force (the caller carries
it forward from ``ApplyOutcome.network``). The header's ``membership_version`` must be
its version and the proposer one of its voters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Container
from typing import Final

from p2pledger.chain.block import Block, Header, chain_id_after, results_root, tx_root
from p2pledger.chain.tx import MAX_TX_SIZE, Transaction
from p2pledger.errors import BadSignature, InvalidBlock, InvalidTransaction, MalformedKey
from p2pledger.membership import Network

__all__ = ["REASONS", "validate_block"]

#: Every reason code ``validate_block`` can give, for metrics and documentation.
REASONS: Final = (
    "wrong_chain",
    "height_gap",
    "wrong_prev_hash",
    "time_regression",
    "wrong_membership_version",
    "tx_count_mismatch",
    "oversize",
    "wrong_tx_root",
    "wrong_results_root",
    "proposer_not_voter",
    "bad_header_signature",
    "invalid_tx",
    "duplicate_tx",
)

_NOTHING: Final[frozenset[bytes]] = frozenset()


def validate_block(
    block: Block,
    *,
    parent: Header,
    parent_hash: bytes,
    network: Network,
    verified_tx_ids: Container[bytes] = _NOTHING,
    known: Callable[[bytes], Transaction | None] | None = None,
) -> list[Transaction]:
    """Check ``block`` as the successor of ``parent``; return its decoded transactions.

    ``verified_tx_ids`` holds ids whose signatures this node has already checked (from
    gossip); every other transaction's signature is verified here. ``known`` gives,
    by id, a transaction this node already decoded (its mempool): one whose raw bytes
    are the block's is used as it is instead of being decoded again (decoding is a
    pure function of the bytes, so the result is the same).
    """
    h = block.header
    height = h.height

    def fail(reason: str, detail: str) -> InvalidBlock:
        return InvalidBlock(reason, detail, height)

    chain_id = chain_id_after(parent, parent_hash)
    if h.chain_id != chain_id:
        raise fail("wrong_chain", f"chain id {h.chain_id.hex()[:16]} is not {chain_id.hex()[:16]}")
    if height != parent.height + 1:
        raise fail("height_gap", f"expected height {parent.height + 1}")
    if h.prev != parent_hash:
        raise fail("wrong_prev_hash", f"prev {h.prev.hex()[:16]} is not {parent_hash.hex()[:16]}")
    if h.time_ms < parent.time_ms:
        raise fail("time_regression", f"time {h.time_ms} is before the parent's {parent.time_ms}")
    if h.membership_version != network.version:
        raise fail(
            "wrong_membership_version",
            f"header says {h.membership_version}, membership in force is {network.version}",
        )
    if not h.tx_count == len(block.txs) == len(block.results):
        raise fail(
            "tx_count_mismatch",
            f"header says {h.tx_count}, body has {len(block.txs)} txs "
            f"and {len(block.results)} results",
        )
    limits = network.limits
    body_bytes = sum(len(t) for t in block.txs)
    if h.tx_count > limits.max_transactions or body_bytes > limits.max_bytes:
        raise fail(
            "oversize",
            f"{h.tx_count} txs / {body_bytes} bytes exceed the limits "
            f"{limits.max_transactions} txs / {limits.max_bytes} bytes",
        )
    if tx_root(block.txs) != h.tx_root:
        raise fail("wrong_tx_root", "the transactions do not hash to the header's tx_root")
    if results_root(block.results) != h.results_root:
        raise fail("wrong_results_root", "the verdicts do not hash to the header's results_root")
    if not network.is_voter(h.proposer):
        raise fail("proposer_not_voter", f"proposer {h.proposer.hex()[:16]} is not a voting member")
    try:
        block.proposer_key().verify(block.header_bytes, block.sig)
    except (BadSignature, MalformedKey) as exc:
        raise fail("bad_header_signature", str(exc)) from exc
    txs: list[Transaction] = []
    seen: set[bytes] = set()
    for index, raw in enumerate(block.txs):
        try:
            tx = None
            if known is not None and len(raw) <= MAX_TX_SIZE:
                tx = known(hashlib.sha256(raw).digest())
                if tx is not None and tx.raw != raw:
                    tx = None
            if tx is None:
                tx = Transaction.decode(raw)
            if tx.chain_id != chain_id:
                raise InvalidTransaction("transaction is for another chain")
            if tx.id not in verified_tx_ids:
                tx.verify_signature()
        except InvalidTransaction as exc:
            raise fail("invalid_tx", f"transaction {index}: {exc}") from exc
        if tx.id in seen:
            raise fail("duplicate_tx", f"transaction {tx.id.hex()} appears twice")
        seen.add(tx.id)
        txs.append(tx)
    return txs
