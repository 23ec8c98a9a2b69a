"""A peer's bounded send queue: one lane for consensus, one for gossip (pure).

Each lane is bounded in messages and in bytes on its own, so gossip can never fill
the room consensus traffic needs. ``offer`` never blocks: it says whether the message
fit, and the peer manager decides what a refusal means (gossip is shed and counted; a
full consensus lane disconnects the peer). ``take_batch`` drains consensus first,
then gossip, up to a byte budget, so small messages are written together.
"""

from __future__ import annotations

from collections import deque

from p2pledger.wire.messages import Lane

__all__ = ["SendQueue"]

_LANES = (Lane.CONSENSUS, Lane.GOSSIP)


class SendQueue:
    """Encoded messages waiting to be written to one peer."""

    __slots__ = ("_bytes", "_items", "max_bytes", "max_messages")

    def __init__(self, *, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("queue bounds must be positive")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: dict[Lane, deque[bytes]] = {lane: deque() for lane in _LANES}
        self._bytes: dict[Lane, int] = dict.fromkeys(_LANES, 0)

    def offer(self, lane: Lane, payload: bytes) -> bool:
        """Queue ``payload`` unless its lane is full; True when queued."""
        items = self._items[lane]
        if len(items) >= self.max_messages or self._bytes[lane] + len(payload) > self.max_bytes:
            return False
        items.append(payload)
        self._bytes[lane] += len(payload)
        return True

    def take_batch(
        self, max_bytes: int, max_messages: int | None = None
    ) -> list[tuple[Lane, bytes]]:
        """Remove messages, consensus first, until ``max_bytes`` (at least one message if
        any) or ``max_messages``."""
        out: list[tuple[Lane, bytes]] = []
        total = 0
        limit = len(self) if max_messages is None else max_messages
        for lane in _LANES:
            items = self._items[lane]
            while items and len(out) < limit and (not out or total + len(items[0]) <= max_bytes):
                payload = items.popleft()
                self._bytes[lane] -= len(payload)
                total += len(payload)
                out.append((lane, payload))
            if items:
                break
        return out

    def clear(self) -> int:
        """Drop everything; return how many messages were dropped."""
        dropped = len(self)
        for lane in _LANES:
            self._items[lane].clear()
            self._bytes[lane] = 0
        return dropped

    def depth(self, lane: Lane) -> tuple[int, int]:
        """(messages, bytes) queued in ``lane``."""
        return len(self._items[lane]), self._bytes[lane]

    def __len__(self) -> int:
        return sum(len(items) for items in self._items.values())
