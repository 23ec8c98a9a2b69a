"""A bounded memory of recently seen transaction ids, so gossip forwards each
transaction at most once per link and ignores echoes."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["SeenCache"]


class SeenCache:
    """The last ``capacity`` ids seen; the oldest are forgotten first."""

    __slots__ = ("_ids", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._ids: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, tx_id: bytes) -> bool:
        """Remember ``tx_id``; True if it is new."""
        if tx_id in self._ids:
            self._ids.move_to_end(tx_id)
            return False
        self._ids[tx_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True
