"""The core's view of its log: what storage holds plus what is not yet persisted.

``RaftLog`` joins the durable prefix (read through ``Storage``) and an *unstable*
suffix: entries appended since the last Ready (and possibly a snapshot restored
since then) that the driver has not yet confirmed as persisted. ``advance`` moves
entries from unstable to stable. The log also tracks ``committed`` (known to be on a
quorum) and ``applied`` (handed to the state machine and confirmed by ``advance``).

Invariants: ``first_index() - 1 <= applied <= committed <= last_index()``;
``unstable_offset == last persisted index + 1`` unless a truncation moved it lower.
"""

from __future__ import annotations

from collections.abc import Sequence

from p2pledger.raft.errors import LogCompacted, LogUnavailable, RaftStorageError
from p2pledger.raft.messages import Entry, SnapshotMeta
from p2pledger.raft.storage import Storage, limit_size

__all__ = ["RaftLog"]


class RaftLog:
    """Storage plus the unstable suffix; committed and applied indexes."""

    __slots__ = ("_snapshot", "_unstable", "applied", "committed", "offset", "storage")

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.offset = storage.last_index() + 1  # index of the first unstable entry
        self._unstable: list[Entry] = []
        self._snapshot: SnapshotMeta | None = None  # restored, not yet persisted
        self.committed = storage.first_index() - 1
        self.applied = self.committed

    # --- shape ----------------------------------------------------------------------

    def snapshot_meta(self) -> SnapshotMeta:
        """The latest point the log starts after (restored or from storage)."""
        return self._snapshot if self._snapshot is not None else self.storage.snapshot()

    def first_index(self) -> int:
        if self._snapshot is not None:
            return self._snapshot.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        return self.offset + len(self._unstable) - 1

    def term(self, index: int) -> int | None:
        """The term at ``index``, or None if it is compacted or beyond the end."""
        if index >= self.offset:
            n = index - self.offset
            return self._unstable[n].term if n < len(self._unstable) else None
        if self._snapshot is not None:
            return self._snapshot.term if index == self._snapshot.index else None
        try:
            return self.storage.term(index)
        except (LogCompacted, LogUnavailable):
            return None

    def last_term(self) -> int:
        term = self.term(self.last_index())
        if term is None:  # pragma: no cover - the last index always has a term
            raise RaftStorageError("storage has no term for its last index")
        return term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a candidate with this last entry is at least as up to date as us."""
        ours = self.last_term()
        return last_term > ours or (last_term == ours and last_index >= self.last_index())

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """The index of the first of ``entries`` that we lack or hold with another
        term; 0 if we hold them all."""
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index at or below ``index`` whose term is at most ``term``, and
        that term; (index, 0) if we no longer know the term there."""
        while True:
            t = self.term(index)
            if t is None:
                return index, 0
            if t <= term:
                return index, t
            index -= 1

    # --- reading ----------------------------------------------------------------------

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> Sequence[Entry]:
        """Entries ``[lo, hi)`` within ``max_bytes`` (at least one). Raise LogCompacted
        if ``lo`` is below the first index."""
        if lo < self.first_index():
            raise LogCompacted(f"index {lo} is compacted")
        hi = min(hi, self.last_index() + 1)
        if lo >= hi:
            return ()
        if hi <= self.offset:
            return self.storage.entries(lo, hi, max_bytes)
        if lo >= self.offset:
            return limit_size(self._unstable[lo - self.offset : hi - self.offset], max_bytes)
        stored = self.storage.entries(lo, self.offset, max_bytes)
        if len(stored) < self.offset - lo:
            return stored
        return limit_size([*stored, *self._unstable[: hi - self.offset]], max_bytes)

    def unstable_entries(self) -> tuple[Entry, ...]:
        return tuple(self._unstable)

    def unstable_snapshot(self) -> SnapshotMeta | None:
        return self._snapshot

    def has_next_committed(self) -> bool:
        return self.committed > self.applied

    def next_committed(self, max_bytes: int | None) -> Sequence[Entry]:
        """The next committed entries to apply, within ``max_bytes`` (at least one)."""
        if self.committed <= self.applied:
            return ()
        return self.slice(self.applied + 1, self.committed + 1, max_bytes)

    # --- changing ---------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append ``entries``, replacing any entries at or after the first one's index."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.committed:
            raise RaftStorageError(f"entry {first} would overwrite committed {self.committed}")
        end = self.offset + len(self._unstable)
        if first == end:
            self._unstable.extend(entries)
        elif first <= self.offset:
            self.offset = first
            self._unstable = list(entries)
        elif first < end:
            del self._unstable[first - self.offset :]
            self._unstable.extend(entries)
        else:
            raise RaftStorageError(f"entry {first} leaves a gap after {end - 1}")

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise RaftStorageError(
                    f"commit {index} is beyond the last index {self.last_index()}"
                )
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to ``index`` if that entry is from ``term`` (the current-term rule)."""
        if index > self.committed and self.term(index) == term:
            self.committed = index
            return True
        return False

    def applied_to(self, index: int) -> None:
        if not self.applied <= index <= self.committed:
            raise RaftStorageError(f"applied {index} outside [{self.applied}, {self.committed}]")
        self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        """The driver persisted entries up to ``(index, term)``."""
        n = index - self.offset
        if 0 <= n < len(self._unstable) and self._unstable[n].term == term:
            del self._unstable[: n + 1]
            self.offset = index + 1

    def stable_snapshot_to(self, index: int) -> None:
        if self._snapshot is not None and self._snapshot.index == index:
            self._snapshot = None

    def restore(self, snapshot: SnapshotMeta) -> None:
        """Drop the whole log; it now starts after ``snapshot``."""
        self.committed = snapshot.index
        self.applied = snapshot.index
        self.offset = snapshot.index + 1
        self._unstable = []
        self._snapshot = snapshot
