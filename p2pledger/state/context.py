"""What the state machine knows about the block it applies, besides its transactions.

Time comes in here as the block's agreed time (the header's ``time_ms``), never from a
clock, and the membership in force comes in as ``network``; that is what keeps
``apply_block`` a pure function of its arguments. ``chain_id`` is the block's chain,
which membership updates must name.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pledger.chain.block import HASH_SIZE
from p2pledger.membership import Network

__all__ = ["BlockContext"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockContext:
    """The block being applied: its chain, height and time, the membership in force,
    and the state root of its parent (32 zero bytes for the child of genesis)."""

    chain_id: bytes
    height: int
    time_ms: int
    network: Network
    prev_state_root: bytes

    def __post_init__(self) -> None:
        if self.height < 1:
            raise ValueError(f"blocks applied to state have height >= 1, not {self.height}")
        if self.time_ms < 0:
            raise ValueError("time_ms must be non-negative")
        if len(self.chain_id) != HASH_SIZE:
            raise ValueError(f"chain_id must be {HASH_SIZE} bytes")
        if len(self.prev_state_root) != HASH_SIZE:
            raise ValueError(f"prev_state_root must be {HASH_SIZE} bytes")
