"""The records a fund keeps in state, and the provenance answers built from them.

How provenance is stored. An account's units are a FIFO queue of lots; each lot
knows its amount, the issue it came from, and ``via``: the (transfer id, piece
index) that delivered it, or nothing if it came straight from the issue. A transfer
records the pieces it moved, and for each piece the ``via`` it had in the sender's
account. Following ``via`` links back through transfer records yields a lot's full
path of transfers, oldest first, down to its issue.

Why links, not a path copied into every lot: a transfer then costs the same however
many hops its units made before, and every record has a bounded size. (Merging lots
that share an origin and path bounds nothing here: every transfer appends its own,
unique, id, so no two lots ever share a path.) What is bounded is the work of one
transfer: it may consume at most ``MAX_LOTS_PER_TRANSFER`` lots (see ``funds``).

Every record is a CBOR map; ``from_value`` checks the shape and raises
``CorruptState`` when stored bytes are not what this code writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from p2pledger.codec import Value
from p2pledger.state.errors import CorruptState
from p2pledger.state.view import decode_stored

__all__ = [
    "EMPTY_ACCOUNT",
    "MAX_AMOUNT",
    "AccountHead",
    "FundTotals",
    "Hop",
    "HopRef",
    "IssueRecord",
    "Lot",
    "Piece",
    "StoredLot",
    "TransferRecord",
]

#: No balance or fund supply may exceed this (a signed 64-bit integer).
MAX_AMOUNT: Final = 2**63 - 1
_ID_SIZE: Final = 32


def _fields(value: Any, keys: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.keys() != keys:
        raise CorruptState(f"stored {what} is not a map of {sorted(keys)}")
    return value


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CorruptState(f"stored {what} is not a non-negative integer")
    return value


def _id(value: Any, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != _ID_SIZE:
        raise CorruptState(f"stored {what} is not {_ID_SIZE} bytes")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise CorruptState(f"stored {what} is not a string")
    return value


# --- stored records ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FundTotals:
    """Per-fund totals: the units ever issued (there is no burn, so also the supply)."""

    issued: int

    def to_value(self) -> Value:
        return {"issued": self.issued}

    @classmethod
    def decode(cls, raw: bytes) -> FundTotals:
        v = _fields(decode_stored(raw, "fund totals"), frozenset({"issued"}), "fund totals")
        return cls(_int(v["issued"], "issued"))


@dataclass(frozen=True, slots=True)
class AccountHead:
    """An account's balance and its live lots: sequence numbers ``first .. next-1``."""

    balance: int
    first: int
    next: int

    def to_value(self) -> Value:
        return {
            "next": self.next,
            "first": self.first,
            "balance": self.balance,
        }  # (canonical order)

    @classmethod
    def decode(cls, raw: bytes) -> AccountHead:
        keys = frozenset({"balance", "first", "next"})
        v = _fields(decode_stored(raw, "account"), keys, "account")
        head = cls(
            _int(v["balance"], "balance"), _int(v["first"], "first"), _int(v["next"], "next")
        )
        if head.first > head.next:
            raise CorruptState("stored account has first > next")
        return head


EMPTY_ACCOUNT: Final = AccountHead(0, 0, 0)


@dataclass(frozen=True, slots=True)
class HopRef:
    """A pointer to one piece of one transfer: the transfer's id and the piece index."""

    tx_id: bytes
    index: int

    def to_value(self) -> Value:
        return [self.tx_id, self.index]

    @classmethod
    def from_value(cls, value: Any) -> HopRef | None:
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != 2:
            raise CorruptState("stored hop reference is not [tx id, index]")
        return cls(_id(value[0], "hop tx id"), _int(value[1], "hop index"))


def _ref_value(ref: HopRef | None) -> Value:
    return None if ref is None else ref.to_value()


@dataclass(frozen=True, slots=True)
class StoredLot:
    """One lot in an account: units of one issue that arrived by one path."""

    amount: int
    origin: bytes
    origin_height: int
    via: HopRef | None

    def to_value(self) -> Value:
        return {  # (in canonical key order, which spares the encoder a sort)
            "via": _ref_value(self.via),
            "amount": self.amount,
            "origin": self.origin,
            "origin_height": self.origin_height,
        }

    @classmethod
    def decode(cls, raw: bytes) -> StoredLot:
        keys = frozenset({"amount", "origin", "origin_height", "via"})
        v = _fields(decode_stored(raw, "lot"), keys, "lot")
        return cls(
            amount=_int(v["amount"], "lot amount"),
            origin=_id(v["origin"], "lot origin"),
            origin_height=_int(v["origin_height"], "lot origin height"),
            via=HopRef.from_value(v["via"]),
        )


@dataclass(frozen=True, slots=True)
class Piece:
    """Part of a transfer: units of one sender lot, with that lot's origin and ``via``."""

    amount: int
    origin: bytes
    via: HopRef | None

    def to_value(self) -> Value:
        return [self.amount, self.origin, _ref_value(self.via)]

    @classmethod
    def from_value(cls, value: Any) -> Piece:
        if not isinstance(value, list) or len(value) != 3:
            raise CorruptState("stored piece is not [amount, origin, via]")
        return cls(
            _int(value[0], "piece amount"),
            _id(value[1], "piece origin"),
            HopRef.from_value(value[2]),
        )


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """A committed transfer: when, between whom, and the pieces it moved, in order."""

    height: int
    sender: bytes
    recipient: bytes
    amount: int
    pieces: tuple[Piece, ...]

    def to_value(self) -> Value:
        return {
            "height": self.height,
            "from": self.sender,
            "to": self.recipient,
            "amount": self.amount,
            "pieces": [p.to_value() for p in self.pieces],
        }

    @classmethod
    def decode(cls, raw: bytes) -> TransferRecord:
        keys = frozenset({"height", "from", "to", "amount", "pieces"})
        v = _fields(decode_stored(raw, "transfer"), keys, "transfer")
        if not isinstance(v["pieces"], list):
            raise CorruptState("stored transfer pieces are not a list")
        return cls(
            height=_int(v["height"], "transfer height"),
            sender=_id(v["from"], "transfer sender"),
            recipient=_id(v["to"], "transfer recipient"),
            amount=_int(v["amount"], "transfer amount"),
            pieces=tuple(Piece.from_value(p) for p in v["pieces"]),
        )


@dataclass(frozen=True, slots=True)
class IssueRecord:
    """A committed issue: the origin every lot traces back to."""

    height: int
    time_ms: int
    issuer: bytes
    recipient: bytes
    amount: int
    memo: str

    def to_value(self) -> Value:
        return {
            "height": self.height,
            "time": self.time_ms,
            "issuer": self.issuer,
            "to": self.recipient,
            "amount": self.amount,
            "memo": self.memo,
        }

    @classmethod
    def decode(cls, raw: bytes) -> IssueRecord:
        keys = frozenset({"height", "time", "issuer", "to", "amount", "memo"})
        v = _fields(decode_stored(raw, "issue"), keys, "issue")
        return cls(
            height=_int(v["height"], "issue height"),
            time_ms=_int(v["time"], "issue time"),
            issuer=_id(v["issuer"], "issuer"),
            recipient=_id(v["to"], "issue recipient"),
            amount=_int(v["amount"], "issue amount"),
            memo=_text(v["memo"], "issue memo"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "time_ms": self.time_ms,
            "issuer": self.issuer.hex(),
            "to": self.recipient.hex(),
            "amount": self.amount,
            "memo": self.memo,
        }


# --- provenance answers --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hop:
    """One transfer on a lot's path, and the height of the block that committed it."""

    tx_id: bytes
    height: int


@dataclass(frozen=True, slots=True)
class Lot:
    """Units an account holds, the issue they came from, and every transfer since.

    ``path`` is oldest first: its last hop is the transfer that delivered the units to
    this account; it is empty when the issue itself credited this account.
    """

    amount: int
    origin: bytes
    origin_height: int
    path: tuple[Hop, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "origin": self.origin.hex(),
            "origin_height": self.origin_height,
            "path": [{"tx_id": h.tx_id.hex(), "height": h.height} for h in self.path],
        }
