"""Received messages waiting for the node, fair across peers.

Each peer has its own bounded share (messages and bytes). A peer's reader waits when
its share is full, which stops reading that peer's socket only; ``get`` takes one
message from each peer with something waiting in turn (round-robin), so a flooding
member cannot delay the others' messages behind its own.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import trio

__all__ = ["FairInbox"]

T = TypeVar("T")


class _Share(Generic[T]):
    __slots__ = ("bytes", "items", "space")

    def __init__(self) -> None:
        self.items: deque[tuple[T, int]] = deque()
        self.bytes = 0
        self.space = trio.Event()


class FairInbox(Generic[T]):
    """Per-peer bounded queues drained round-robin."""

    def __init__(self, *, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("inbox bounds must be positive")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._shares: dict[str, _Share[T]] = {}
        self._ready: deque[str] = deque()
        self._nonempty = trio.Event()

    def _full(self, share: _Share[T], size: int) -> bool:
        if not share.items:
            return False  # one message always fits, however large
        return len(share.items) >= self.max_messages or share.bytes + size > self.max_bytes

    async def put(self, peer: str, item: T, size: int) -> None:
        """Add ``item`` from ``peer``, waiting while that peer's share is full."""
        share = self._shares.setdefault(peer, _Share())
        while self._full(share, size):
            await share.space.wait()
        if not share.items:
            self._ready.append(peer)
        share.items.append((item, size))
        share.bytes += size
        self._nonempty.set()
        self._nonempty = trio.Event()

    def get_nowait(self) -> T:
        """The next message in round-robin order; trio.WouldBlock if there is none."""
        if not self._ready:
            raise trio.WouldBlock
        peer = self._ready.popleft()
        share = self._shares[peer]
        item, size = share.items.popleft()
        share.bytes -= size
        if share.items:
            self._ready.append(peer)
        share.space.set()  # wakes every waiting putter; they re-check under the new event
        share.space = trio.Event()
        return item

    async def get(self) -> T:
        """Wait for and return the next message."""
        while not self._ready:
            await self._nonempty.wait()
        return self.get_nowait()

    def __len__(self) -> int:
        return sum(len(s.items) for s in self._shares.values())
