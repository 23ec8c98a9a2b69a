"""RFC 6962 Merkle tree hashes and inclusion proofs (audit paths).

Leaf hash ``SHA-256(0x00 || d)``, interior node ``SHA-256(0x01 || left || right)``,
the empty tree hashes to ``SHA-256("")``; the tree splits at the largest power of two
smaller than its size (RFC 6962 §2.1). A third party can check a proof with nothing
but SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from p2pledger.errors import ProofError

__all__ = ["inclusion_proof", "leaf_hash", "node_hash", "root", "root_from_proof", "verify"]


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of ``leaves`` (each a leaf's data, not its hash)."""
    return root_of_hashes([leaf_hash(d) for d in leaves])


def root_of_hashes(level: Sequence[bytes]) -> bytes:
    """The tree hash given the leaf hashes, built bottom-up in O(n)."""
    if not level:
        return hashlib.sha256(b"").digest()
    nodes = list(level)
    # Pairing left to right and carrying an odd last node up unchanged yields the
    # same tree as RFC 6962's split at the largest power of two below n.
    while len(nodes) > 1:
        paired = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
        if len(nodes) % 2:
            paired.append(nodes[-1])
        nodes = paired
    return nodes[0]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path PATH(m, D[n]) of RFC 6962 §2.1.1 for leaf ``index``."""
    if not 0 <= index < len(leaves):
        raise ProofError(f"leaf {index} is outside a tree of {len(leaves)} leaves")
    return _path(index, [leaf_hash(d) for d in leaves])


def _path(m: int, hashes: Sequence[bytes]) -> list[bytes]:
    n = len(hashes)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, hashes[:k]), root_of_hashes(hashes[k:])]
    return [*_path(m - k, hashes[k:]), root_of_hashes(hashes[:k])]


def root_from_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from a leaf's data and its audit path (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is outside a tree of {size} leaves")
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in proof:
        if len(p) != 32:
            raise ProofError("a proof element is not a 32-byte hash")
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    return r


def verify(index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected: bytes) -> None:
    """Raise ProofError unless ``proof`` shows ``leaf`` at ``index`` under ``expected``."""
    if root_from_proof(index, size, leaf, proof) != expected:
        raise ProofError(f"leaf {index} of {size} does not hash to the expected root")


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)
