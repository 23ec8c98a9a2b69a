"""The deterministic application state machine: apply one committed block to state.

How it works. ``apply_block`` opens an ``Overlay`` on the committed state and takes
the transactions in order. For each, it checks the signer is a user key of the
membership in force (that is how a revoked key stops working from a height on), or,
for ``config.update``, an admin key of it; finds the operation's handler, and runs
it. A handler reads through the overlay, so
it sees the writes of earlier transactions of the block, and either raises
``Rejected(reason)`` or returns its writes, which are then staged. A rejected
transaction is recorded as ``TxResult(False, reason)`` and changes nothing. At the
end the overlay yields the block's net writes, and ``root`` chains them into the new
state root. When a ``config.update`` was valid, ``ApplyOutcome.network`` is the
membership in force from the next block on (at most one update commits per block).

Pure: no I/O, no clock, no randomness; the result is a function of the committed
state, the transactions and the ``BlockContext``. Only ``Rejected`` is caught: any
other exception (``CorruptState``, a bug) propagates, and the caller must not
persist anything from a block whose apply raised.

The order of checks, and so which reason a transaction with several faults gets,
is part of the protocol: ``unknown_signer``, ``unknown_op``, then the operation's
own checks in the order its handler documents (arguments first, then authority,
then balances; ``config`` documents those of a membership update).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from p2pledger.chain.block import VALID, TxResult
from p2pledger.chain.tx import Transaction
from p2pledger.membership import Network
from p2pledger.state import keys
from p2pledger.state.config import (
    CONFIG_REASONS,
    CONFIG_UPDATE_OP,
    apply_config_update,
    decode_network,
)
from p2pledger.state.context import BlockContext
from p2pledger.state.errors import Rejected
from p2pledger.state.funds import ISSUE_OP, TRANSFER_OP, apply_issue, apply_transfer
from p2pledger.state.notary import ANCHOR_OP, apply_anchor
from p2pledger.state.root import next_state_root
from p2pledger.state.view import Overlay, StateView, Writes

__all__ = ["OPERATIONS", "REASONS", "ApplyOutcome", "Handler", "apply_block"]

#: An operation: validate ``tx`` against the state so far, return its writes or raise
#: ``Rejected``.
Handler = Callable[[Transaction, BlockContext, Overlay], Writes]

OPERATIONS: Final[Mapping[str, Handler]] = MappingProxyType(
    {
        ISSUE_OP: apply_issue,
        TRANSFER_OP: apply_transfer,
        ANCHOR_OP: apply_anchor,
        CONFIG_UPDATE_OP: apply_config_update,
    }
)

#: Every reason code a transaction can be rejected with, for metrics and docs.
REASONS: Final = (
    "unknown_signer",
    "unknown_op",
    "bad_args",
    "unknown_fund",
    "unauthorized_issuer",
    "not_account_owner",
    "overdraft",
    "amount_overflow",
    "too_fragmented",
    "duplicate_tx",
    "already_anchored",
    *CONFIG_REASONS,
)


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    """What applying a block produced: a verdict per transaction, in order; the net
    writes to persist in the same store transaction as the block (None deletes); the
    state root that goes into the block's header; and, when the block carries a valid
    membership update, ``network``: the membership in force from the next block (None
    when the block leaves it as it was)."""

    results: tuple[TxResult, ...]
    writes: Mapping[bytes, bytes | None]
    state_root: bytes
    network: Network | None = None


def apply_block(view: StateView, txs: Sequence[Transaction], ctx: BlockContext) -> ApplyOutcome:
    """Apply ``txs`` in order on top of ``view``; ``view`` itself is not modified."""
    state = Overlay(view)
    results = tuple(_apply_tx(tx, ctx, state) for tx in txs)
    writes = state.net_writes()
    stored = writes.get(keys.NETWORK_KEY)
    return ApplyOutcome(
        results=results,
        writes=MappingProxyType(writes),
        state_root=next_state_root(ctx.prev_state_root, ctx.height, writes),
        network=None if stored is None else decode_network(stored),
    )


def _apply_tx(tx: Transaction, ctx: BlockContext, state: Overlay) -> TxResult:
    if tx.op == CONFIG_UPDATE_OP:
        if not ctx.network.is_admin(tx.signer):
            return TxResult(False, "unknown_signer")
    elif not ctx.network.is_user(tx.signer):
        return TxResult(False, "unknown_signer")
    handler = OPERATIONS.get(tx.op)
    if handler is None:
        return TxResult(False, "unknown_op")
    try:
        writes = handler(tx, ctx, state)
    except Rejected as rejected:
        return TxResult(False, rejected.reason)
    state.commit(writes)
    return VALID
