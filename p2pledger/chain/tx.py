"""Signed transactions.

A transaction is the CBOR map ``{"body": bstr, "sig": bstr}``: ``body`` holds the
deterministic encoding of ``{"type", "chain", "signer", "nonce", "time", "op",
"args"}`` and ``sig`` is the signer's Ed25519 signature over exactly those bytes,
as in COSE_Sign1. Keeping the signed bytes as they travelled means no one re-encodes
to verify, and any Ed25519 tool can check a signature from a receipt. The id is the
SHA-256 of the whole signed encoding.

Decoding checks shape and canonical form; verifying the signature is a separate,
explicit step (it is the expensive part, and callers batch or cache it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

from p2pledger import codec
from p2pledger.crypto import PublicKey, SigningKey
from p2pledger.errors import BadSignature, CodecError, InvalidTransaction, MalformedKey

__all__ = ["MAX_TX_SIZE", "TX_LIMITS", "TX_TYPE", "Transaction"]

TX_TYPE: Final = "p2pledger/tx/1"
MAX_TX_SIZE: Final = 64 * 1024
TX_LIMITS: Final = codec.CodecLimits(max_size=MAX_TX_SIZE, max_depth=8)
_BODY_KEYS: Final = frozenset({"type", "chain", "signer", "nonce", "time", "op", "args"})


@dataclass(frozen=True, slots=True)
class Transaction:
    """A decoded, well-formed transaction; ``raw`` is its exact signed encoding."""

    raw: bytes
    body: bytes
    sig: bytes
    chain_id: bytes
    signer: PublicKey
    nonce: int
    time_ms: int
    op: str
    args: dict[str, Any]
    id: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", hashlib.sha256(self.raw).digest())

    @classmethod
    def create(
        cls,
        key: SigningKey,
        *,
        chain_id: bytes,
        op: str,
        args: dict[str, Any],
        nonce: int,
        time_ms: int,
    ) -> Transaction:
        """Build and sign a transaction with a user key."""
        body = codec.encode(
            {  # (in canonical key order, which spares the encoder a sort)
                "op": op,
                "args": args,
                "time": time_ms,
                "type": TX_TYPE,
                "chain": chain_id,
                "nonce": nonce,
                "signer": key.public_key.raw,
            },
            limits=TX_LIMITS,
        )
        raw = codec.encode({"sig": key.sign(body), "body": body}, limits=TX_LIMITS)
        return cls.decode(raw)

    @classmethod
    def decode(cls, raw: bytes, *, limits: codec.CodecLimits = TX_LIMITS) -> Transaction:
        """Parse a signed transaction; raise InvalidTransaction naming what is wrong.

        The signature is not checked here: call ``verify_signature``.
        """
        try:
            env = codec.decode(raw, limits=limits)
        except CodecError as exc:
            raise InvalidTransaction(f"transaction encoding: {exc}") from exc
        if not isinstance(env, dict) or set(env) != {"body", "sig"}:
            raise InvalidTransaction("a transaction is a map of exactly 'body' and 'sig'")
        body, sig = env["body"], env["sig"]
        if not isinstance(body, bytes) or not isinstance(sig, bytes) or len(sig) != 64:
            raise InvalidTransaction("'body' must be bytes and 'sig' 64 bytes")
        try:
            b = codec.decode(body, limits=limits)
        except CodecError as exc:
            raise InvalidTransaction(f"transaction body encoding: {exc}") from exc
        if not isinstance(b, dict) or set(b) != _BODY_KEYS:
            raise InvalidTransaction(
                f"a transaction body has exactly the keys {sorted(_BODY_KEYS)}"
            )
        if b["type"] != TX_TYPE:
            raise InvalidTransaction(f"unknown transaction type {b['type']!r}")
        chain, signer, op, args = b["chain"], b["signer"], b["op"], b["args"]
        if not isinstance(chain, bytes) or len(chain) != 32:
            raise InvalidTransaction("'chain' must be a 32-byte chain id")
        if not isinstance(op, str) or not op or not isinstance(args, dict):
            raise InvalidTransaction("'op' must be a non-empty string and 'args' a map")
        for name in ("nonce", "time"):
            if not isinstance(b[name], int) or isinstance(b[name], bool) or b[name] < 0:
                raise InvalidTransaction(f"'{name}' must be a non-negative integer")
        if not isinstance(signer, bytes):
            raise InvalidTransaction("'signer' must be a 32-byte public key")
        try:
            signer_key = PublicKey(signer)
        except MalformedKey as exc:
            raise InvalidTransaction(f"'signer': {exc}") from exc
        return cls(
            raw=raw,
            body=body,
            sig=sig,
            chain_id=chain,
            signer=signer_key,
            nonce=b["nonce"],
            time_ms=b["time"],
            op=op,
            args=args,
        )

    def verify_signature(self) -> None:
        """Raise InvalidTransaction unless the signer signed this body."""
        try:
            self.signer.verify(self.body, self.sig)
        except BadSignature as exc:
            raise InvalidTransaction(f"transaction {self.id.hex()[:16]}: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly view for the CLI and receipts (bytes as hex)."""
        return {
            "id": self.id.hex(),
            "chain_id": self.chain_id.hex(),
            "signer": self.signer.hex,
            "nonce": self.nonce,
            "time_ms": self.time_ms,
            "op": self.op,
            "args": _jsonable(self.args),
            "body": self.body.hex(),
            "sig": self.sig.hex(),
            "raw": self.raw.hex(),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
