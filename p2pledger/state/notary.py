"""Notary: anchor a document's SHA-256 digest once, and read back who did it and when.

The first anchoring wins for good: anchoring a digest again is invalid
("already_anchored") and leaves the first record, and so its time, as it was. The
time recorded is the block's agreed time (the header's ``time_ms``, signed by the
leader and checked never to go backwards), not the client's claimed time, so the
record says "this digest existed by then" with the chain's authority.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from p2pledger.chain.tx import Transaction
from p2pledger.codec import Value
from p2pledger.crypto import PublicKey
from p2pledger.errors import MalformedKey
from p2pledger.state import args as a
from p2pledger.state import keys
from p2pledger.state.context import BlockContext
from p2pledger.state.errors import CorruptState, Rejected
from p2pledger.state.view import Overlay, StateView, Writes, decode_stored

__all__ = ["ANCHOR_OP", "AnchorRecord", "anchor", "apply_anchor"]

ANCHOR_OP: Final = "notary.anchor"
_ANCHOR_ARGS: Final = frozenset({"digest", "description"})
_RECORD_KEYS: Final = frozenset({"digest", "signer", "tx_id", "height", "time", "description"})


@dataclass(frozen=True, slots=True, kw_only=True)
class AnchorRecord:
    """The first anchoring of ``digest``: by whom, in which transaction and block, when."""

    digest: bytes
    signer: PublicKey
    tx_id: bytes
    height: int
    time_ms: int
    description: str

    def to_value(self) -> Value:
        return {  # (in canonical key order, which spares the encoder a sort)
            "time": self.time_ms,
            "tx_id": self.tx_id,
            "digest": self.digest,
            "height": self.height,
            "signer": self.signer.raw,
            "description": self.description,
        }

    @classmethod
    def decode(cls, raw: bytes) -> AnchorRecord:
        v = decode_stored(raw, "anchor")
        if not isinstance(v, dict) or v.keys() != _RECORD_KEYS:
            raise CorruptState(f"stored anchor is not a map of {sorted(_RECORD_KEYS)}")
        try:
            return cls(
                digest=_bytes32(v["digest"]),
                signer=PublicKey(v["signer"]),
                tx_id=_bytes32(v["tx_id"]),
                height=_uint(v["height"]),
                time_ms=_uint(v["time"]),
                description=_str(v["description"]),
            )
        except (MalformedKey, TypeError) as exc:
            raise CorruptState(f"stored anchor is malformed: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest.hex(),
            "signer": self.signer.hex,
            "tx_id": self.tx_id.hex(),
            "height": self.height,
            "time_ms": self.time_ms,
            "description": self.description,
        }


def _bytes32(value: Any) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise TypeError("expected 32 bytes")
    return value


def _uint(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError("expected a non-negative integer")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def apply_anchor(tx: Transaction, ctx: BlockContext, state: Overlay) -> Writes:
    """``notary.anchor {digest, description}``: record a digest's first anchoring."""
    a.exact_keys(tx.args, _ANCHOR_ARGS)
    digest = a.digest(tx.args, "digest")
    description = a.text(tx.args, "description", a.MAX_TEXT)
    key = keys.anchor_key(digest)
    first = state.load(key, AnchorRecord.decode)
    if first is not None:
        raise Rejected("already_anchored", f"anchored at height {first.height}")
    record = AnchorRecord(
        digest=digest,
        signer=tx.signer,
        tx_id=tx.id,
        height=ctx.height,
        time_ms=ctx.time_ms,
        description=description,
    )
    return {key: record}


def anchor(view: StateView, digest: bytes) -> AnchorRecord | None:
    """The record of ``digest``'s first anchoring, or None if it was never anchored."""
    return Overlay(view).load(keys.anchor_key(digest), AnchorRecord.decode)
