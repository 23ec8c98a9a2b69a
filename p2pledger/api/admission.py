"""The stateless entry checks of a submitted transaction, with the API's reason codes.

Why here: the reason codes are part of the API contract (``errors.ENTRY_REASONS``),
and every ``LedgerService`` should give the same code for the same fault. A service
calls ``check_entry`` and then adds what needs its own state: "already_committed"
(the transaction index) and "already_pending" (the mempool).

The checks run cheapest first, which fixes the code a transaction with several faults
gets: size ("too_large"), encoding ("malformed"), chain ("wrong_chain"), signer
("unknown_signer": a user key of the membership in force, or for a ``config.update``
an admin key of it), then the Ed25519 signature ("bad_signature"). Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Container

from p2pledger.api.errors import TxRejected
from p2pledger.chain import Transaction
from p2pledger.chain.tx import MAX_TX_SIZE, TX_LIMITS
from p2pledger.codec import CodecLimits
from p2pledger.errors import InvalidTransaction
from p2pledger.membership import CONFIG_UPDATE_OP, Network

__all__ = ["check_entry", "check_signature", "check_unsigned"]


@functools.lru_cache(maxsize=8)
def _limits(max_tx_bytes: int) -> CodecLimits:
    """The transaction codec limits with this member's size cap (one per cap)."""
    return dataclasses.replace(TX_LIMITS, max_size=max_tx_bytes)


def check_entry(
    raw: bytes,
    *,
    chain_id: bytes,
    network: Network,
    max_tx_bytes: int = MAX_TX_SIZE,
    former_signers: Container[bytes] = frozenset(),
) -> Transaction:
    """Decode and check ``raw``; return the transaction or raise ``TxRejected``.

    ``former_signers`` are keys that could sign under an earlier membership: a member
    passes their transactions on (gossip) because another member accepted them before a
    revocation; they are then ordered and recorded invalid, never silently lost. A
    client's new submission gets no such allowance."""
    tx = check_unsigned(
        raw,
        chain_id=chain_id,
        network=network,
        max_tx_bytes=max_tx_bytes,
        former_signers=former_signers,
    )
    check_signature(tx)
    return tx


def check_unsigned(
    raw: bytes,
    *,
    chain_id: bytes,
    network: Network,
    max_tx_bytes: int = MAX_TX_SIZE,
    former_signers: Container[bytes] = frozenset(),
) -> Transaction:
    """Every check of ``check_entry`` but the signature's (``check_signature``), which
    a batch runs after all of these: a thread verifying one signature after another
    hands the GIL to its neighbours far less often than one that alternates."""
    if len(raw) > max_tx_bytes:
        raise TxRejected("too_large", f"the transaction is {len(raw)} bytes, over {max_tx_bytes}")
    try:
        tx = Transaction.decode(raw, limits=_limits(max_tx_bytes))
    except InvalidTransaction as exc:
        raise TxRejected("malformed", str(exc)) from exc
    if tx.chain_id != chain_id:
        raise TxRejected(
            "wrong_chain",
            f"the transaction is for chain {tx.chain_id.hex()[:16]}…, "
            f"this ledger is {chain_id.hex()[:16]}…",
        )
    if tx.signer.raw in former_signers:
        pass  # ordered, and recorded invalid if it no longer may sign
    elif tx.op == CONFIG_UPDATE_OP:
        if not network.is_admin(tx.signer):
            raise TxRejected(
                "unknown_signer",
                f"{tx.signer.hex} is not an admin key of membership version {network.version}; "
                "a config.update is signed by an admin key",
            )
    elif not network.is_user(tx.signer):
        raise TxRejected("unknown_signer", f"{tx.signer.hex} is not a registered user key")
    return tx


def check_signature(tx: Transaction) -> None:
    """Raise ``TxRejected("bad_signature")`` unless the signer signed ``tx``."""
    try:
        tx.verify_signature()
    except InvalidTransaction as exc:
        raise TxRejected("bad_signature", str(exc)) from exc
