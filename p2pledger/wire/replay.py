"""A bounded memory of recently seen peer ephemeral keys, to refuse replayed handshakes.

Fresh ephemeral keys on both sides already make a replayed transcript fail (the
replayer cannot derive the new session keys); refusing a repeated key as well gives
the precise reason ``replayed_transcript`` and costs no X25519 or signature work. The
cache is shared by every connection of one node and forgets the oldest keys first.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["ReplayCache"]


class ReplayCache:
    """Remembers up to ``capacity`` keys (least recently seen forgotten first)."""

    __slots__ = ("_seen", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        self.capacity = capacity
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def check_and_remember(self, key: bytes) -> bool:
        """Remember ``key``; return True if it was already remembered (a replay)."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        if self.capacity:
            self._seen[key] = None
            if len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._seen)
