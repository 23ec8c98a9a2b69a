"""The Storage contract, written against MemoryStorage (the LMDB binding must pass
the same checks)."""

from __future__ import annotations

import pytest

from p2pledger.raft import (
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    LogCompacted,
    LogUnavailable,
    MemoryStorage,
    RaftStorageError,
    SnapshotMeta,
)

GENESIS = ConfState(voters=frozenset({"a", "b", "c"}))


def entries(terms: list[int], start: int = 1, size: int = 0) -> list[Entry]:
    return [Entry(term=t, index=start + n, data=b"x" * size) for n, t in enumerate(terms)]


def test_fresh_storage_starts_after_the_genesis_point() -> None:
    s = MemoryStorage(GENESIS)
    assert s.initial_state() == HardState()
    assert s.snapshot() == SnapshotMeta(conf=GENESIS)
    assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
    assert list(s.entries(1, 1)) == []
    with pytest.raises(LogUnavailable):
        s.term(1)


def test_append_overwrites_the_suffix_and_refuses_gaps() -> None:
    s = MemoryStorage(GENESIS)
    s.append(entries([1, 1, 2, 2]))
    s.append(entries([3, 3], start=3))
    assert [s.term(i) for i in range(1, 5)] == [1, 1, 3, 3]
    with pytest.raises(RaftStorageError):
        s.append(entries([3], start=7))
    assert s.last_index() == 4


def test_entries_respects_bounds_and_byte_limit() -> None:
    s = MemoryStorage(GENESIS)
    s.append(entries([1] * 10, size=100))
    assert len(s.entries(1, 11)) == 10
    assert len(s.entries(1, 11, max_bytes=250)) == 2  # 116 bytes per entry
    assert len(s.entries(1, 11, max_bytes=1)) == 1  # always at least one
    with pytest.raises(LogUnavailable):
        s.entries(5, 12)


def test_compact_keeps_the_configuration_of_the_compaction_point() -> None:
    s = MemoryStorage(GENESIS)
    add = ConfChange(op=ConfChangeOp.ADD_LEARNER, node="d").encode()
    s.append([*entries([1, 1]), Entry(term=2, index=3, kind=EntryKind.CONF_CHANGE, data=add)])
    s.append(entries([2, 2], start=4))
    meta = s.compact(4)
    assert meta == SnapshotMeta(
        index=4, term=2, conf=ConfState(voters=GENESIS.voters, learners=frozenset({"d"}))
    )
    assert (s.first_index(), s.last_index(), s.term(4)) == (5, 5, 2)
    with pytest.raises(LogCompacted):
        s.term(3)
    with pytest.raises(LogCompacted):
        s.entries(4, 6)
    with pytest.raises(LogCompacted):
        s.compact(4)
    # An append that starts below the compaction point keeps only what is after it.
    s.append(entries([2, 2, 3], start=4))
    assert (s.last_index(), s.term(6)) == (6, 3)


def test_apply_snapshot_drops_the_log() -> None:
    s = MemoryStorage(GENESIS)
    s.append(entries([1, 1, 1]))
    meta = SnapshotMeta(index=10, term=4, conf=GENESIS)
    s.save(snapshot=meta, hard_state=HardState(term=4, commit=10))
    assert (s.first_index(), s.last_index(), s.term(10)) == (11, 10, 4)
    assert s.initial_state().commit == 10
    with pytest.raises(RaftStorageError):
        s.apply_snapshot(SnapshotMeta(index=9, term=4, conf=GENESIS))
