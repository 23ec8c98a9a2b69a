"""The state root in each block header: a hash chain over the blocks' write-sets.

    writes_digest = SHA-256(CBOR([[key, value or null], ...] sorted by key))
    state_root(h) = SHA-256("p2pledger/state-root/1" || state_root(h-1)
                            || height as 8 bytes big-endian || writes_digest)

with ``state_root(0)``, the genesis header's, equal to 32 zero bytes. ``writes`` are
the block's *net* writes (keys whose bytes changed; ``null`` deletes), encoded with
the deterministic CBOR of ``p2pledger.codec``.

What it commits to: the full history of state changes. Two members with equal roots
at height ``h`` applied identical net writes at every height up to ``h``, so, from the
same genesis, they hold byte-identical state; the first block where they diverge
gives different roots at once. It costs one hash over the block's writes, however
large the state, which is what thousands of transactions a second need.

What it is not: a Merkle root of the current state. It cannot prove one balance or
one anchor to a third party without the whole history (proofs of state are a later
feature: a sparse Merkle tree or similar over current state would replace or sit
beside this).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Final

from p2pledger import codec
from p2pledger.chain.block import HASH_SIZE, ZERO_HASH

__all__ = ["GENESIS_STATE_ROOT", "ROOT_DOMAIN", "next_state_root", "writes_digest"]

ROOT_DOMAIN: Final = b"p2pledger/state-root/1"
#: The state root of the genesis block, the ``prev`` root of block 1.
GENESIS_STATE_ROOT: Final = ZERO_HASH
#: A write-set is as large as its block's effects; bounded by the block limits.
_WRITES_LIMITS: Final = codec.CodecLimits(max_size=1 << 30, max_depth=4)


def writes_digest(writes: Mapping[bytes, bytes | None]) -> bytes:
    """SHA-256 of the deterministic CBOR of ``writes`` as ``[[key, value], ...]``."""
    pairs = [[key, writes[key]] for key in sorted(writes)]
    return hashlib.sha256(codec.encode(pairs, limits=_WRITES_LIMITS)).digest()


def next_state_root(prev_root: bytes, height: int, writes: Mapping[bytes, bytes | None]) -> bytes:
    """The state root of block ``height`` whose net writes are ``writes``."""
    if len(prev_root) != HASH_SIZE:
        raise ValueError(f"a state root is {HASH_SIZE} bytes")
    return hashlib.sha256(
        ROOT_DOMAIN + prev_root + struct.pack(">Q", height) + writes_digest(writes)
    ).digest()
