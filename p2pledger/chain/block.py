"""Block headers and blocks.

A block is the CBOR map ``{"header": bstr, "sig": bstr, "txs": [bstr], "results":
[[bool, text|null]]}``. ``header`` holds the deterministic encoding of the header
map and ``sig`` the proposer's Ed25519 signature over exactly those bytes; the block
hash is SHA-256 of the header bytes. ``txs`` are the transactions' signed encodings
and ``results`` each one's validity verdict (valid, or invalid with a reason), which
the header commits to through ``results_root``.

Two RFC 6962 roots cover the body: ``tx_root`` over the transactions' encodings and
``results_root`` over each verdict's encoding, so a receipt can prove both that a
transaction is in a block and how it was judged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from p2pledger import codec
from p2pledger.chain import merkle
from p2pledger.crypto import PublicKey, SigningKey
from p2pledger.errors import CodecError, InvalidBlock

__all__ = [
    "HASH_SIZE",
    "HEADER_TYPE",
    "ZERO_HASH",
    "Block",
    "Header",
    "TxResult",
    "build_block",
    "chain_id_after",
    "results_root",
    "tx_root",
]

HEADER_TYPE: Final = "p2pledger/header/1"
HASH_SIZE: Final = 32
ZERO_HASH: Final = bytes(HASH_SIZE)
#: Decoding limits for whole blocks: large, but bounded.
BLOCK_LIMITS: Final = codec.CodecLimits(max_size=64 * 1024 * 1024, max_depth=8)
_HEADER_KEYS: Final = frozenset(
    {
        "type",
        "chain",
        "height",
        "prev",
        "tx_root",
        "results_root",
        "state_root",
        "time",
        "proposer",
        "term",
        "membership_version",
        "tx_count",
    }
)


@dataclass(frozen=True, slots=True)
class TxResult:
    """A transaction's verdict at apply time: valid, or invalid with a reason."""

    valid: bool
    reason: str | None = None

    def to_value(self) -> list[Any]:
        return [self.valid, self.reason]

    def encode(self) -> bytes:
        return codec.encode(self.to_value())

    @classmethod
    def from_value(cls, value: Any) -> TxResult:
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not isinstance(value[0], bool)
            or not (value[1] is None or isinstance(value[1], str))
            or value[0] == (value[1] is not None)
        ):
            raise InvalidBlock("malformed_result", "a result is [true, null] or [false, reason]")
        return cls(valid=value[0], reason=value[1])


VALID: Final = TxResult(True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """A block header. ``chain`` is empty and ``proposer`` empty only at genesis."""

    chain_id: bytes
    height: int
    prev: bytes
    tx_root: bytes
    results_root: bytes
    state_root: bytes
    time_ms: int
    proposer: bytes
    term: int
    membership_version: int
    tx_count: int

    def to_value(self) -> dict[str, Any]:
        return {  # (in canonical key order, which spares the encoder a sort)
            "prev": self.prev,
            "term": self.term,
            "time": self.time_ms,
            "type": HEADER_TYPE,
            "chain": self.chain_id,
            "height": self.height,
            "tx_root": self.tx_root,
            "proposer": self.proposer,
            "tx_count": self.tx_count,
            "state_root": self.state_root,
            "results_root": self.results_root,
            "membership_version": self.membership_version,
        }

    def encode(self) -> bytes:
        return codec.encode(self.to_value())

    @classmethod
    def decode(cls, data: bytes) -> Header:
        try:
            v = codec.decode(data)
        except CodecError as exc:
            raise InvalidBlock("malformed_header", str(exc)) from exc
        if not isinstance(v, dict) or set(v) != _HEADER_KEYS or v["type"] != HEADER_TYPE:
            raise InvalidBlock("malformed_header", f"a header has exactly {sorted(_HEADER_KEYS)}")
        for name in ("chain", "prev", "tx_root", "results_root", "state_root", "proposer"):
            if not isinstance(v[name], bytes):
                raise InvalidBlock("malformed_header", f"{name!r} must be bytes")
        for name in ("prev", "tx_root", "results_root", "state_root"):
            if len(v[name]) != HASH_SIZE:
                raise InvalidBlock("malformed_header", f"{name!r} must be {HASH_SIZE} bytes")
        for name in ("height", "time", "term", "membership_version", "tx_count"):
            if not isinstance(v[name], int) or isinstance(v[name], bool) or v[name] < 0:
                raise InvalidBlock("malformed_header", f"{name!r} must be a non-negative int")
        return cls(
            chain_id=v["chain"],
            height=v["height"],
            prev=v["prev"],
            tx_root=v["tx_root"],
            results_root=v["results_root"],
            state_root=v["state_root"],
            time_ms=v["time"],
            proposer=v["proposer"],
            term=v["term"],
            membership_version=v["membership_version"],
            tx_count=v["tx_count"],
        )

    def to_json(self) -> dict[str, Any]:
        return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in self.to_value().items()}


@dataclass(frozen=True, slots=True)
class Block:
    """A block as stored and sent. ``header_bytes`` are the exact signed bytes."""

    header: Header
    header_bytes: bytes
    sig: bytes
    txs: tuple[bytes, ...]
    results: tuple[TxResult, ...]
    hash: bytes = field(init=False)
    #: The block's encoding, once known: a block is encoded to be proposed, sent and
    #: stored, and decoded blocks keep the bytes they came from (canonical, checked).
    _encoded: bytes | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", hashlib.sha256(self.header_bytes).digest())

    @property
    def height(self) -> int:
        return self.header.height

    @classmethod
    def seal(
        cls,
        header: Header,
        txs: Sequence[bytes],
        results: Sequence[TxResult],
        key: SigningKey | None,
    ) -> Block:
        """Encode ``header`` and sign it with the proposer's key (None: unsigned genesis)."""
        header_bytes = header.encode()
        sig = key.sign(header_bytes) if key is not None else b""
        return cls(header, header_bytes, sig, tuple(txs), tuple(results))

    def encode(self) -> bytes:
        if self._encoded is None:
            encoded = codec.encode(
                {  # (in canonical key order, which spares the encoder a sort)
                    "sig": self.sig,
                    "txs": list(self.txs),
                    "header": self.header_bytes,
                    "results": [r.to_value() for r in self.results],
                },
                limits=BLOCK_LIMITS,
            )
            object.__setattr__(self, "_encoded", encoded)
            return encoded
        return self._encoded

    @classmethod
    def decode(cls, data: bytes, *, limits: codec.CodecLimits = BLOCK_LIMITS) -> Block:
        """Parse a block's shape (signatures and roots are checked by validation)."""
        try:
            v = codec.decode(data, limits=limits)
        except CodecError as exc:
            raise InvalidBlock("malformed_block", str(exc)) from exc
        if not isinstance(v, dict) or set(v) != {"header", "sig", "txs", "results"}:
            raise InvalidBlock("malformed_block", "a block has header, sig, txs and results")
        header_bytes, sig, txs, results = v["header"], v["sig"], v["txs"], v["results"]
        if not isinstance(header_bytes, bytes) or not isinstance(sig, bytes):
            raise InvalidBlock("malformed_block", "header and sig must be bytes")
        if not isinstance(txs, list) or not all(isinstance(t, bytes) for t in txs):
            raise InvalidBlock("malformed_block", "txs must be a list of byte strings")
        if not isinstance(results, list):
            raise InvalidBlock("malformed_block", "results must be a list")
        header = Header.decode(header_bytes)
        block = cls(header, header_bytes, sig, tuple(txs), tuple(map(TxResult.from_value, results)))
        object.__setattr__(block, "_encoded", data)  # canonical: ``codec.decode`` checked
        return block

    def proposer_key(self) -> PublicKey:
        return PublicKey(self.header.proposer)

    def to_json(self, *, with_txs: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hash": self.hash.hex(),
            "header": self.header.to_json(),
            "header_bytes": self.header_bytes.hex(),
            "sig": self.sig.hex(),
            "tx_ids": [hashlib.sha256(t).hexdigest() for t in self.txs],
            "results": [{"valid": r.valid, "reason": r.reason} for r in self.results],
        }
        if with_txs:
            out["txs"] = [t.hex() for t in self.txs]
        return out


def chain_id_after(parent: Header, parent_hash: bytes) -> bytes:
    """The chain id a child of ``parent`` must carry (genesis has none of its own)."""
    return parent_hash if parent.height == 0 else parent.chain_id


def build_block(
    *,
    parent: Header,
    parent_hash: bytes,
    txs: Sequence[bytes],
    results: Sequence[TxResult],
    state_root: bytes,
    time_ms: int,
    term: int,
    membership_version: int,
    proposer: SigningKey,
) -> Block:
    """Make and sign the block that follows ``parent`` (the proposer's side)."""
    header = Header(
        chain_id=chain_id_after(parent, parent_hash),
        height=parent.height + 1,
        prev=parent_hash,
        tx_root=tx_root(txs),
        results_root=results_root(results),
        state_root=state_root,
        time_ms=max(time_ms, parent.time_ms),
        proposer=proposer.public_key.raw,
        term=term,
        membership_version=membership_version,
        tx_count=len(txs),
    )
    return Block.seal(header, txs, results, proposer)


def tx_root(txs: Sequence[bytes]) -> bytes:
    """RFC 6962 root over the transactions' signed encodings."""
    return merkle.root(txs)


def results_root(results: Sequence[TxResult]) -> bytes:
    """RFC 6962 root over the verdicts' encodings."""
    encodings = {r: r.encode() for r in set(results)}  # a block has few distinct verdicts
    return merkle.root([encodings[r] for r in results])
