"""Funds: issuing units, transferring them with provenance, and reading them back.

``issue`` and ``transfer`` are operations: they read through the block's overlay,
raise ``Rejected`` on the first rule broken, and otherwise return the writes to
stage. They never write half-way: nothing is staged until they return. Their checks
come in this order, which fixes the reason a transaction with several faults gets:
arguments ("bad_args"), the fund ("unknown_fund"), authority ("unauthorized_issuer",
"not_account_owner"), amounts ("overdraft", "amount_overflow"), replay
("duplicate_tx"), then fragmentation ("too_fragmented").

A transfer consumes the sender's lots oldest first, splitting the last one it
touches, and appends one lot per piece to the recipient, each pointing back at the
piece of this transfer that delivered it (see ``records`` for why links). At most
``MAX_LOTS_PER_TRANSFER`` lots may be consumed, so one transaction's work is bounded
however fragmented an account is; an owner of a very fragmented account moves its
balance in several transfers ("too_fragmented").

The supply of a fund is capped at ``MAX_AMOUNT``; since units are only created by
issues, no balance can exceed it either. The transfer check for overflow is kept as a
guard against a state built by other means.
"""

from __future__ import annotations

from typing import Final

from p2pledger.chain.tx import Transaction
from p2pledger.membership import Fund
from p2pledger.state import args as a
from p2pledger.state import keys
from p2pledger.state.context import BlockContext
from p2pledger.state.errors import CorruptState, Rejected
from p2pledger.state.records import (
    EMPTY_ACCOUNT,
    MAX_AMOUNT,
    AccountHead,
    FundTotals,
    Hop,
    HopRef,
    IssueRecord,
    Lot,
    Piece,
    StoredLot,
    TransferRecord,
)
from p2pledger.state.view import Overlay, StateView, Writes

__all__ = [
    "ISSUE_OP",
    "MAX_LOTS_PER_TRANSFER",
    "TRANSFER_OP",
    "apply_issue",
    "apply_transfer",
    "balance",
    "fund_supply",
    "issue_record",
    "provenance",
    "transfer_record",
]

ISSUE_OP: Final = "fund.issue"
TRANSFER_OP: Final = "fund.transfer"
#: The most sender lots one transfer may consume.
MAX_LOTS_PER_TRANSFER: Final = 256

_ISSUE_ARGS: Final = frozenset({"fund", "to", "amount", "memo"})
_TRANSFER_ARGS: Final = frozenset({"fund", "from", "to", "amount", "memo"})


# --- operations ----------------------------------------------------------------------


def apply_issue(tx: Transaction, ctx: BlockContext, state: Overlay) -> Writes:
    """``fund.issue {fund, to, amount, memo}``: an issuer creates units in an account."""
    a.exact_keys(tx.args, _ISSUE_ARGS)
    name = a.text(tx.args, "fund")
    to = a.account(tx.args, "to")
    amount = a.positive_int(tx.args, "amount")
    memo = a.text(tx.args, "memo", a.MAX_TEXT)
    fund = _fund(ctx, name)
    if tx.signer not in fund.issuers:
        raise Rejected("unauthorized_issuer", f"{tx.signer.short} may not issue {name!r}")
    totals = state.load(keys.supply_key(name), FundTotals.decode) or FundTotals(0)
    if totals.issued + amount > MAX_AMOUNT:
        raise Rejected("amount_overflow", f"the supply of {name!r} would exceed {MAX_AMOUNT}")
    head = _head(state, name, to)
    if head.balance + amount > MAX_AMOUNT:
        raise Rejected("amount_overflow", f"the balance would exceed {MAX_AMOUNT}")
    record_key = keys.issue_key(name, tx.id)
    if state.load(record_key, IssueRecord.decode) is not None:
        raise Rejected("duplicate_tx", "this issue is already applied")
    lot = StoredLot(amount=amount, origin=tx.id, origin_height=ctx.height, via=None)
    return {
        keys.supply_key(name): FundTotals(totals.issued + amount),
        keys.lot_key(name, to, head.next): lot,
        keys.account_key(name, to): AccountHead(head.balance + amount, head.first, head.next + 1),
        record_key: IssueRecord(
            height=ctx.height,
            time_ms=ctx.time_ms,
            issuer=tx.signer.raw,
            recipient=to,
            amount=amount,
            memo=memo,
        ),
    }


def apply_transfer(tx: Transaction, ctx: BlockContext, state: Overlay) -> Writes:
    """``fund.transfer {fund, from, to, amount, memo}``: an owner moves units on."""
    a.exact_keys(tx.args, _TRANSFER_ARGS)
    name = a.text(tx.args, "fund")
    sender = a.account(tx.args, "from")
    to = a.account(tx.args, "to")
    amount = a.positive_int(tx.args, "amount")
    a.text(tx.args, "memo", a.MAX_TEXT)
    if sender == to:
        raise Rejected("bad_args", "'from' and 'to' are the same account")
    _fund(ctx, name)
    if tx.signer.raw != sender:
        raise Rejected("not_account_owner", f"{tx.signer.short} does not own {sender.hex()}")
    out = _head(state, name, sender)
    if amount > out.balance:
        raise Rejected("overdraft", f"balance {out.balance} is less than {amount}")
    into = _head(state, name, to)
    if into.balance + amount > MAX_AMOUNT:
        raise Rejected("amount_overflow", f"the balance would exceed {MAX_AMOUNT}")
    record_key = keys.transfer_key(name, tx.id)
    if state.load(record_key, TransferRecord.decode) is not None:
        raise Rejected("duplicate_tx", "this transfer is already applied")

    writes: Writes = {}
    taken: list[StoredLot] = []  # the sender's lots, or the part of one, that move
    remaining, seq = amount, out.first
    while remaining:
        if len(taken) == MAX_LOTS_PER_TRANSFER:
            raise Rejected(
                "too_fragmented",
                f"more than {MAX_LOTS_PER_TRANSFER} lots needed; transfer less at a time",
            )
        lot_key = keys.lot_key(name, sender, seq)
        lot = None if seq >= out.next else state.load(lot_key, StoredLot.decode)
        if lot is None:
            raise CorruptState(f"account {sender.hex()} of {name!r} lacks lot {seq}")
        take = min(lot.amount, remaining)
        if take == lot.amount:
            writes[lot_key] = None
            seq += 1
        else:
            writes[lot_key] = StoredLot(lot.amount - take, lot.origin, lot.origin_height, lot.via)
        taken.append(StoredLot(take, lot.origin, lot.origin_height, lot.via))
        remaining -= take
    left = out.balance - amount
    if left == 0 and seq != out.next:
        raise CorruptState(f"account {sender.hex()} of {name!r} has lots beyond its balance")
    writes[keys.account_key(name, sender)] = AccountHead(left, seq, out.next) if left else None

    for index, part in enumerate(taken):
        writes[keys.lot_key(name, to, into.next + index)] = StoredLot(
            part.amount, part.origin, part.origin_height, HopRef(tx.id, index)
        )
    writes[keys.account_key(name, to)] = AccountHead(
        into.balance + amount, into.first, into.next + len(taken)
    )
    writes[record_key] = TransferRecord(
        height=ctx.height,
        sender=sender,
        recipient=to,
        amount=amount,
        pieces=tuple(Piece(p.amount, p.origin, p.via) for p in taken),
    )
    return writes


def _fund(ctx: BlockContext, name: str) -> Fund:
    fund = ctx.network.fund(name)
    if fund is None:
        raise Rejected(
            "unknown_fund", f"no fund {name!r} in membership version {ctx.network.version}"
        )
    return fund


def _head(state: Overlay, name: str, account: bytes) -> AccountHead:
    return state.load(keys.account_key(name, account), AccountHead.decode) or EMPTY_ACCOUNT


# --- queries -------------------------------------------------------------------------


def balance(view: StateView, fund: str, account: bytes) -> int:
    """The units ``account`` holds in ``fund`` (0 for an account never credited)."""
    return _head(Overlay(view), fund, account).balance


def fund_supply(view: StateView, fund: str) -> int:
    """The units ever issued into ``fund``: always the sum of its balances."""
    totals = Overlay(view).load(keys.supply_key(fund), FundTotals.decode)
    return 0 if totals is None else totals.issued


def issue_record(view: StateView, fund: str, tx_id: bytes) -> IssueRecord | None:
    """The issue with id ``tx_id`` in ``fund``, if there is one."""
    return Overlay(view).load(keys.issue_key(fund, tx_id), IssueRecord.decode)


def transfer_record(view: StateView, fund: str, tx_id: bytes) -> TransferRecord | None:
    """The transfer with id ``tx_id`` in ``fund``, if there is one."""
    return Overlay(view).load(keys.transfer_key(fund, tx_id), TransferRecord.decode)


def provenance(view: StateView, fund: str, account: bytes) -> list[Lot]:
    """Where the units of ``account`` came from: its lots in spending order (oldest
    first), each with its issue and its full path of transfers, oldest first.

    The amounts add up to ``balance(view, fund, account)``.
    """
    state = Overlay(view)  # caches transfer records that several lots share
    head = _head(state, fund, account)
    lots: list[Lot] = []
    for seq in range(head.first, head.next):
        lot = state.load(keys.lot_key(fund, account, seq), StoredLot.decode)
        if lot is None:
            raise CorruptState(f"account {account.hex()} of {fund!r} lacks lot {seq}")
        lots.append(Lot(lot.amount, lot.origin, lot.origin_height, _path(state, fund, lot)))
    return lots


def _path(state: Overlay, fund: str, lot: StoredLot) -> tuple[Hop, ...]:
    hops: list[Hop] = []
    seen: set[bytes] = set()
    ref = lot.via
    while ref is not None:
        record = state.load(keys.transfer_key(fund, ref.tx_id), TransferRecord.decode)
        if record is None or ref.index >= len(record.pieces) or ref.tx_id in seen:
            raise CorruptState(f"broken provenance link to {ref.tx_id.hex()}:{ref.index}")
        seen.add(ref.tx_id)
        hops.append(Hop(ref.tx_id, record.height))
        ref = record.pieces[ref.index].via
    hops.reverse()
    return tuple(hops)
