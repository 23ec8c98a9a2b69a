"""The narrow read interface the core has onto durable Raft state, and an in-memory
implementation of it.

The core only ever *reads* storage (``Storage``); the driver writes it after each
``Ready`` (persist ``snapshot``, then ``entries``, then ``hard_state``, atomically,
before sending that Ready's messages). The log in storage starts right after a
snapshot point (``snapshot()``: index, term and configuration of the last discarded
entry; index 0, term 0 and the genesis configuration for a fresh log).

``MemoryStorage`` is the reference implementation: the simulation and tests use it,
and the LMDB binding must behave the same way (``tests/raft/test_storage.py`` is
written against this contract).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from p2pledger.raft.conf import ConfState
from p2pledger.raft.errors import LogCompacted, LogUnavailable, RaftStorageError
from p2pledger.raft.messages import Entry, EntryKind, HardState, SnapshotMeta

__all__ = ["MemoryStorage", "Storage", "fold_conf", "limit_size"]


class Storage(Protocol):
    """What the core reads. Implementations must not change under the core except
    through the driver's writes after a Ready."""

    def initial_state(self) -> HardState:
        """The last persisted term, vote and commit index."""
        ...

    def snapshot(self) -> SnapshotMeta:
        """The compaction point: the log holds only entries after ``snapshot().index``."""
        ...

    def first_index(self) -> int:
        """The index of the first entry held (``snapshot().index + 1``)."""
        ...

    def last_index(self) -> int:
        """The index of the last entry held (``snapshot().index`` if none)."""
        ...

    def term(self, index: int) -> int:
        """The term of the entry at ``index``, for ``snapshot().index <= index <=
        last_index()``; raise LogCompacted below that range, LogUnavailable above."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> Sequence[Entry]:
        """Entries ``[lo, hi)``, stopping before ``max_bytes`` (counting ``Entry.size``)
        is exceeded but always returning at least one entry if ``lo < hi``. Raise
        LogCompacted if ``lo < first_index()``, LogUnavailable if ``hi > last_index()+1``."""
        ...


def limit_size(entries: Sequence[Entry], max_bytes: int | None) -> Sequence[Entry]:
    """The longest prefix of ``entries`` within ``max_bytes`` (at least one entry)."""
    if max_bytes is None or len(entries) <= 1:
        return entries
    total = 0
    for n, e in enumerate(entries):
        total += e.size
        if total > max_bytes and n > 0:
            return entries[:n]
    return entries


class MemoryStorage:
    """``Storage`` in memory, plus the writes a driver makes after each Ready."""

    def __init__(self, conf: ConfState | None = None) -> None:
        self._snapshot = SnapshotMeta(conf=conf or ConfState())
        self._hard_state = HardState()
        self._entries: list[Entry] = []  # self._entries[0].index == snapshot.index + 1

    # --- Storage ------------------------------------------------------------------

    def initial_state(self) -> HardState:
        return self._hard_state

    def snapshot(self) -> SnapshotMeta:
        return self._snapshot

    def first_index(self) -> int:
        return self._snapshot.index + 1

    def last_index(self) -> int:
        return self._snapshot.index + len(self._entries)

    def term(self, index: int) -> int:
        offset = self._snapshot.index
        if index < offset:
            raise LogCompacted(f"index {index} is compacted (first index {offset + 1})")
        if index == offset:
            return self._snapshot.term
        if index > offset + len(self._entries):
            raise LogUnavailable(f"index {index} is beyond the last index {self.last_index()}")
        return self._entries[index - offset - 1].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> Sequence[Entry]:
        offset = self._snapshot.index + 1
        if lo < offset:
            raise LogCompacted(f"index {lo} is compacted (first index {offset})")
        if hi > offset + len(self._entries):
            raise LogUnavailable(f"index {hi - 1} is beyond the last index {self.last_index()}")
        if lo >= hi:
            return ()
        return limit_size(self._entries[lo - offset : hi - offset], max_bytes)

    # --- writes (the driver's side) -------------------------------------------------

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def append(self, entries: Sequence[Entry]) -> None:
        """Append ``entries``, first discarding any held entry at or after the first
        new index (a new leader overwrote them)."""
        if not entries:
            return
        offset = self._snapshot.index + 1
        first = entries[0].index
        if first > self.last_index() + 1:
            raise RaftStorageError(
                f"entry {first} leaves a gap after the last index {self.last_index()}"
            )
        if entries[-1].index < offset:
            return
        if first < offset:
            entries = entries[offset - first :]
            first = offset
        del self._entries[first - offset :]
        self._entries.extend(entries)

    def apply_snapshot(self, snapshot: SnapshotMeta) -> None:
        """Reset the log to start after ``snapshot`` (the ledger was caught up to it)."""
        if snapshot.index <= self._snapshot.index:
            raise RaftStorageError(
                f"snapshot {snapshot.index} is not newer than {self._snapshot.index}"
            )
        self._snapshot = snapshot
        self._entries = []

    def compact(self, index: int) -> SnapshotMeta:
        """Discard entries up to ``index``, which the driver must already have applied.
        Return the new compaction point (its configuration folds in the changes)."""
        if index <= self._snapshot.index:
            raise LogCompacted(f"index {index} is already compacted")
        if index > self.last_index():
            raise LogUnavailable(f"index {index} is beyond the last index {self.last_index()}")
        n = index - self._snapshot.index
        conf = fold_conf(self._snapshot.conf, self._entries[:n])
        self._snapshot = SnapshotMeta(index=index, term=self._entries[n - 1].term, conf=conf)
        del self._entries[:n]
        return self._snapshot

    def save(
        self,
        *,
        snapshot: SnapshotMeta | None = None,
        entries: Sequence[Entry] = (),
        hard_state: HardState | None = None,
    ) -> None:
        """Persist one Ready's durable part in the contract's order."""
        if snapshot is not None:
            self.apply_snapshot(snapshot)
        self.append(entries)
        if hard_state is not None:
            self.set_hard_state(hard_state)


def fold_conf(conf: ConfState, entries: Iterable[Entry]) -> ConfState:
    """The configuration after the membership changes among ``entries``."""
    for e in entries:
        if e.kind is EntryKind.CONF_CHANGE:
            conf = e.conf_change().apply(conf)
    return conf
