"""Inclusion receipts: offline proof that a transaction is in the chain, and its verdict.

A receipt is a JSON document holding the transaction's signed bytes, the block
header's exact bytes and the proposer's signature over them, and two RFC 6962 audit
paths: one from the transaction to the header's ``tx_root``, one from its verdict to
``results_root``. Anyone holding the network description can check it with nothing
but SHA-256 and Ed25519; the ``verify`` section spells out the steps so that tools
sharing no code with p2pledger (openssl, hashlib) can do it too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from p2pledger import codec
from p2pledger.chain import merkle
from p2pledger.chain.block import Block, Header, TxResult
from p2pledger.chain.tx import Transaction
from p2pledger.crypto import PublicKey
from p2pledger.errors import (
    BadSignature,
    ChainError,
    CodecError,
    InvalidBlock,
    InvalidTransaction,
    MalformedKey,
    ProofError,
)
from p2pledger.membership import Network

__all__ = ["RECEIPT_VERSION", "VerifiedReceipt", "make_receipt", "verify_receipt"]

RECEIPT_VERSION: Final = 1

_STEPS: Final = [
    "block.hash == SHA-256(block.header)",
    "Ed25519-verify(block.proposer_key, message=block.header, signature=block.sig)",
    "the proposer key is a voting member's node key in the network description",
    "tx.id == SHA-256(tx.raw); Ed25519-verify(tx.signer, message=tx.body, signature=tx.sig)",
    "RFC 6962: fold tx.raw with inclusion.audit_path at inclusion.index of "
    "inclusion.tree_size; equals block.header_fields.tx_root",
    "RFC 6962: fold result.leaf with result.audit_path at the same index; "
    "equals block.header_fields.results_root",
]


def make_receipt(block: Block, index: int) -> dict[str, Any]:
    """The receipt of transaction ``index`` of ``block``, as a JSON-ready dict."""
    if not 0 <= index < len(block.txs):
        raise ProofError(f"block {block.height} has no transaction {index}")
    tx = Transaction.decode(block.txs[index])
    result = block.results[index]
    result_leaves = [r.encode() for r in block.results]
    return {
        "version": RECEIPT_VERSION,
        "chain_id": block.header.chain_id.hex(),
        "tx": {
            "id": tx.id.hex(),
            "raw": tx.raw.hex(),
            "body": tx.body.hex(),
            "sig": tx.sig.hex(),
            "signer": tx.signer.hex,
            "op": tx.op,
            "time_ms": tx.time_ms,
        },
        "block": {
            "height": block.height,
            "hash": block.hash.hex(),
            "header": block.header_bytes.hex(),
            "header_fields": block.header.to_json(),
            "sig": block.sig.hex(),
            "proposer_key": block.header.proposer.hex(),
            "proposer_key_pem": PublicKey(block.header.proposer).to_pem(),
        },
        "inclusion": {
            "index": index,
            "tree_size": len(block.txs),
            "leaf_hash": merkle.leaf_hash(tx.raw).hex(),
            "audit_path": [h.hex() for h in merkle.inclusion_proof(index, block.txs)],
        },
        "result": {
            "valid": result.valid,
            "reason": result.reason,
            "leaf": result_leaves[index].hex(),
            "audit_path": [h.hex() for h in merkle.inclusion_proof(index, result_leaves)],
        },
        "verify": _STEPS,
    }


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """What a receipt proves, once every check has passed."""

    tx: Transaction
    header: Header
    block_hash: bytes
    index: int
    result: TxResult
    proposer: str


def verify_receipt(receipt: Any, network: Network, chain_id: bytes) -> VerifiedReceipt:
    """Check every claim of ``receipt``; raise ProofError naming the first that fails.

    ``network`` is the membership in force at the receipt's height and ``chain_id``
    the chain's id (the genesis hash), both computed by the verifier, not read from
    the receipt.
    """
    try:
        return _verify(receipt, network, chain_id)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"the receipt is malformed: {exc!r}") from exc
    except ProofError:
        raise
    except (ChainError, CodecError, MalformedKey) as exc:
        raise ProofError(str(exc)) from exc


def _verify(receipt: Any, network: Network, chain_id: bytes) -> VerifiedReceipt:
    if receipt["version"] != RECEIPT_VERSION:
        raise ProofError(f"unknown receipt version {receipt['version']!r}")
    b, t, inc, res = receipt["block"], receipt["tx"], receipt["inclusion"], receipt["result"]
    header_bytes = bytes.fromhex(b["header"])
    header = Header.decode(header_bytes)
    block_hash = hashlib.sha256(header_bytes).digest()
    if block_hash.hex() != b["hash"]:
        raise ProofError("block.hash is not the SHA-256 of the header")
    if header.chain_id != chain_id:
        raise ProofError("the block belongs to another chain than this network's")
    member = network.member_by_node_key(header.proposer)
    if member is None or not network.is_voter(header.proposer):
        raise ProofError("the block's proposer is not a voting member of this network")
    try:
        PublicKey(header.proposer).verify(header_bytes, bytes.fromhex(b["sig"]))
    except BadSignature as exc:
        raise ProofError(f"the header signature does not verify: {exc}") from exc
    tx = Transaction.decode(bytes.fromhex(t["raw"]))
    if tx.id.hex() != t["id"]:
        raise ProofError("tx.id is not the SHA-256 of tx.raw")
    if tx.chain_id != chain_id:
        raise ProofError("the transaction is for another chain")
    try:
        tx.verify_signature()
    except InvalidTransaction as exc:
        raise ProofError(str(exc)) from exc
    index, size = inc["index"], inc["tree_size"]
    if not isinstance(index, int) or not isinstance(size, int) or size != header.tx_count:
        raise ProofError("inclusion.tree_size does not match the header's tx_count")
    path = [bytes.fromhex(h) for h in inc["audit_path"]]
    merkle.verify(index, size, tx.raw, path, header.tx_root)
    leaf = bytes.fromhex(res["leaf"])
    try:
        result = TxResult.from_value(codec.decode(leaf))
    except (InvalidBlock, CodecError) as exc:
        raise ProofError(f"result.leaf is not a verdict: {exc}") from exc
    if (result.valid, result.reason) != (res["valid"], res["reason"]):
        raise ProofError("result.valid/reason do not match result.leaf")
    rpath = [bytes.fromhex(h) for h in res["audit_path"]]
    merkle.verify(index, size, leaf, rpath, header.results_root)
    return VerifiedReceipt(tx, header, block_hash, index, result, member.name)
