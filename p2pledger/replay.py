"""Check a block against the chain and re-execute it against the state: pure.

This is the one place where chain validation meets the application state machine.
Followers use it to commit a block, the audit uses it to replay a whole ledger, and
the proposer uses ``execute`` to fill in the verdicts and state root of a new block.
Everything is passed in; nothing is read from disk or the clock. ``network`` is the
membership in force for the block; when the block changes it, the outcome's
``network`` is the one to pass for the next block.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Final

from p2pledger.chain import (
    Block,
    Header,
    Transaction,
    build_block,
    chain_id_after,
    validate_block,
)
from p2pledger.crypto import SigningKey
from p2pledger.errors import InvalidBlock
from p2pledger.membership import Network
from p2pledger.state import ApplyOutcome, BlockContext, StateView, apply_block

__all__ = ["commit_block", "execute", "propose_block"]

_NOTHING: Final[frozenset[bytes]] = frozenset()


def execute(
    view: StateView,
    txs: Sequence[Transaction],
    *,
    parent: Header,
    parent_hash: bytes,
    time_ms: int,
    network: Network,
) -> ApplyOutcome:
    """Apply ``txs`` as the block after ``parent`` would; say what it would write (and,
    in ``ApplyOutcome.network``, the membership it puts in force, if it changes it)."""
    ctx = BlockContext(
        chain_id=chain_id_after(parent, parent_hash),
        height=parent.height + 1,
        time_ms=max(time_ms, parent.time_ms),
        network=network,
        prev_state_root=parent.state_root,
    )
    return apply_block(view, txs, ctx)


def propose_block(
    view: StateView,
    txs: Sequence[Transaction],
    *,
    parent: Header,
    parent_hash: bytes,
    network: Network,
    time_ms: int,
    term: int,
    proposer: SigningKey,
) -> tuple[Block, ApplyOutcome]:
    """Execute ``txs`` on top of ``parent`` and seal the block that records the result."""
    outcome = execute(
        view, txs, parent=parent, parent_hash=parent_hash, time_ms=time_ms, network=network
    )
    block = build_block(
        parent=parent,
        parent_hash=parent_hash,
        txs=[t.raw for t in txs],
        results=outcome.results,
        state_root=outcome.state_root,
        time_ms=time_ms,
        term=term,
        membership_version=network.version,
        proposer=proposer,
    )
    return block, outcome


def commit_block(
    view: StateView,
    block: Block,
    *,
    parent: Header,
    parent_hash: bytes,
    network: Network,
    verified_tx_ids: Container[bytes] = _NOTHING,
    known: Callable[[bytes], Transaction | None] | None = None,
    executed: ApplyOutcome | None = None,
) -> ApplyOutcome:
    """Validate ``block``, re-execute it, and check that the verdicts and state root
    it records are the ones this member computes; raise InvalidBlock otherwise.

    ``known`` is passed to ``validate_block``. ``executed`` is this member's own
    execution of exactly these transactions on this ``parent`` in this ``view`` (the
    proposer's, when it commits its own block): the caller vouches for that, and it
    is used instead of executing again (its verdicts and root are still compared)."""
    txs = validate_block(
        block,
        parent=parent,
        parent_hash=parent_hash,
        network=network,
        verified_tx_ids=verified_tx_ids,
        known=known,
    )
    outcome = executed
    if outcome is None:
        outcome = execute(
            view,
            txs,
            parent=parent,
            parent_hash=parent_hash,
            time_ms=block.header.time_ms,
            network=network,
        )
    if tuple(outcome.results) != block.results:
        bad = next(
            i for i, (a, b) in enumerate(zip(outcome.results, block.results, strict=True)) if a != b
        )
        raise InvalidBlock(
            "wrong_results",
            f"transaction {bad}: block says {block.results[bad]}, "
            f"re-execution gives {outcome.results[bad]}",
            block.height,
        )
    if outcome.state_root != block.header.state_root:
        raise InvalidBlock(
            "state_divergence",
            f"block says state root {block.header.state_root.hex()[:16]}, "
            f"this member computes {outcome.state_root.hex()[:16]}",
            block.height,
        )
    return outcome
