"""The leader's view of each follower: how much of the log it holds and how to send
it more.

A follower's ``Progress`` is in one of three states:

- ``PROBE``: the leader does not know where the logs agree. It sends one append at a
  time (at most one per heartbeat interval while unanswered) and backs ``next`` off
  on each rejection, a whole term at a time using the follower's hint.
- ``REPLICATE``: the logs agree up to ``match``. The leader streams appends without
  waiting (pipelining), advancing ``next`` optimistically; ``Inflights`` bounds the
  unacknowledged appends by count and by bytes.
- ``SNAPSHOT``: the follower needs entries the leader has compacted away. The
  leader sent a ``SnapshotRequest`` and waits for the follower to be caught up by
  the daemon (or for ``snapshot_retry_ticks`` to pass, then probes again).
"""

from __future__ import annotations

import enum
from collections import deque

__all__ = ["Inflights", "Progress", "ProgressState"]


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """The appends sent to one follower and not yet acknowledged, by last index."""

    __slots__ = ("_bytes", "_items", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._items: deque[tuple[int, int]] = deque()
        self._bytes = 0

    def add(self, last_index: int, size: int) -> None:
        self._items.append((last_index, size))
        self._bytes += size

    def free_le(self, index: int) -> None:
        """Forget the appends whose last entry is at or below ``index``."""
        items = self._items
        while items and items[0][0] <= index:
            self._bytes -= items.popleft()[1]

    def free_first_one(self) -> None:
        if self._items:
            self._bytes -= self._items.popleft()[1]

    def full(self) -> bool:
        return len(self._items) >= self.max_count or self._bytes >= self.max_bytes

    def reset(self) -> None:
        self._items.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes


class Progress:
    """Replication state of one member, kept by the leader."""

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "sent_commit",
        "snapshot_elapsed",
        "state",
    )

    def __init__(
        self, *, next_index: int, is_learner: bool, max_inflight: int, max_inflight_bytes: int
    ) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_elapsed = 0
        self.recent_active = False
        self.sent_commit = 0  # the highest commit index sent in an append
        self.is_learner = is_learner
        self.inflights = Inflights(max_inflight, max_inflight_bytes)

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_elapsed = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = index

    def maybe_update(self, index: int) -> bool:
        """The follower holds our log up to ``index``; True if ``match`` advanced."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decr_to(self, rejected: int, hint: int) -> bool:
        """An append at ``prev_index == rejected`` was refused; move ``next`` back using
        the follower's hint. False if the refusal is stale (out of order)."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        # A hint below ``match`` means the member no longer has entries it acknowledged
        # (its disk was wiped or restored from an old copy): replicate to it again from
        # where it really is.
        self.match = min(self.match, hint)
        self.next = max(min(rejected, hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def __repr__(self) -> str:
        return (
            f"Progress({self.state.value} match={self.match} next={self.next}"
            f" inflight={len(self.inflights)}{' learner' if self.is_learner else ''})"
        )
