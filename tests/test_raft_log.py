"""Raft's log and hard state on LMDB behave exactly like the reference MemoryStorage,
survive a reopen, and never forget a vote or an acknowledged entry across SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pledger.raft import (
    ConfState,
    Entry,
    HardState,
    LogCompacted,
    LogUnavailable,
    MemoryStorage,
    SnapshotMeta,
)
from p2pledger.raft.errors import RaftError
from p2pledger.store import LedgerStore
from p2pledger.store.raft_log import RaftLog
from tests.procs import LINE_TIMEOUT, Lines, start_module, stop

GENESIS = ConfState(voters=frozenset({"a", "b", "c"}))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LedgerStore]:
    with LedgerStore.open(tmp_path / "n", create=True) as s:
        yield s


def entries(first: int, last: int, term: int, size: int = 10) -> list[Entry]:
    return [Entry(term=term, index=i, data=bytes([i % 256]) * size) for i in range(first, last + 1)]


def same_reads(a: RaftLog, b: MemoryStorage) -> None:
    assert a.initial_state() == b.initial_state()
    assert a.snapshot() == b.snapshot()
    assert (a.first_index(), a.last_index()) == (b.first_index(), b.last_index())
    for i in range(a.snapshot().index, a.last_index() + 1):
        assert a.term(i) == b.term(i)
    lo, hi = a.first_index(), a.last_index() + 1
    assert list(a.entries(lo, hi)) == list(b.entries(lo, hi))
    assert list(a.entries(lo, hi, max_bytes=100)) == list(b.entries(lo, hi, max_bytes=100))


def test_fresh_log_starts_at_the_genesis_configuration(store: LedgerStore) -> None:
    log = RaftLog(store, initial_conf=GENESIS)
    assert log.snapshot() == SnapshotMeta(conf=GENESIS)
    assert (log.first_index(), log.last_index()) == (1, 0)
    assert log.initial_state() == HardState()
    with pytest.raises(LogUnavailable):
        log.term(1)


def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    with LedgerStore.open(tmp_path / "n", create=True) as store:
        log = RaftLog(store, initial_conf=GENESIS)
        log.save(entries=entries(1, 20, term=1), hard_state=HardState(term=2, vote="b", commit=9))
        log.compact(5)
    with LedgerStore.open(tmp_path / "n") as store:
        again = RaftLog(store, initial_conf=ConfState(voters=frozenset({"x"})))
        assert again.initial_state() == HardState(term=2, vote="b", commit=9)
        assert again.snapshot().index == 5 and again.snapshot().conf == GENESIS
        assert (again.first_index(), again.last_index()) == (6, 20)
        assert list(again.entries(6, 21)) == entries(6, 20, term=1)
        with pytest.raises(LogCompacted):
            again.entries(5, 7)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 6), st.integers(1, 8)),
        st.tuples(st.just("hard"), st.integers(0, 5), st.integers(0, 30)),
        st.tuples(st.just("compact"), st.integers(0, 10), st.integers(0, 0)),
        st.tuples(st.just("snapshot"), st.integers(1, 12), st.integers(0, 0)),
    ),
    max_size=25,
)


@settings(derandomize=True, database=None, max_examples=60, deadline=None)
@given(ops)
def test_behaves_like_memory_storage(
    tmp_path_factory: pytest.TempPathFactory, script: list
) -> None:  # type: ignore[type-arg]
    with LedgerStore.open(tmp_path_factory.mktemp("r") / "n", create=True) as store:
        log, mem = RaftLog(store, initial_conf=GENESIS), MemoryStorage(GENESIS)
        term = 1
        for op, x, y in script:
            try:
                if op == "append":
                    # overwrite from somewhere in the log (or just past it)
                    first = max(mem.first_index(), mem.last_index() + 1 - x)
                    term += 1
                    new = entries(first, first + y - 1, term=term)
                    mem.save(entries=new)
                    log.save(entries=new)
                elif op == "hard":
                    hs = HardState(term=term + x, vote=None if x == 0 else "a", commit=y)
                    mem.save(hard_state=hs)
                    log.save(hard_state=hs)
                elif op == "compact":
                    index = mem.first_index() + x
                    expect = mem.compact(index) if index <= mem.last_index() else None
                    if expect is None:
                        with pytest.raises(RaftError):
                            log.compact(index)
                    else:
                        assert log.compact(index) == expect
                else:
                    snap = SnapshotMeta(index=mem.last_index() + x, term=term, conf=GENESIS)
                    mem.save(snapshot=snap)
                    log.save(snapshot=snap)
            except RaftError:
                continue
            same_reads(log, mem)


def test_a_gap_is_refused_and_changes_nothing(store: LedgerStore) -> None:
    log = RaftLog(store, initial_conf=GENESIS)
    log.save(entries=entries(1, 3, term=1))
    with pytest.raises(RaftError, match="gap"):
        log.save(entries=entries(5, 6, term=1))
    assert log.last_index() == 3
    assert RaftLog(store, initial_conf=GENESIS).last_index() == 3


def kept_or_superseded(log: RaftLog, index: int, term: int) -> bool:
    """The acknowledged entry (index, term) is still there, or a leader of a later term
    replaced it: an acknowledgement is not a commit, and Raft (§5.3) lets a newer leader
    truncate uncommitted entries, perhaps in a Ready the kill cut off before its ack."""
    if index <= log.last_index() and log.term(index) == term:
        return True
    newer_leader = log.initial_state().term > term
    return newer_leader and (index > log.last_index() or log.term(index) > term)


def test_killed_core_never_forgets_a_vote_or_an_acknowledged_entry(tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    data = tmp_path / "n"
    promised: dict[int, str] = {}  # term -> the vote we were told is durable
    acked = (0, 0)  # (index, entry term) of the last acknowledged append
    for round_ in range(5):
        proc = start_module(
            "tests.raft_log_writer", str(data), "--seed", str(seed + round_), "--steps", "400"
        )
        try:
            lines = Lines(proc)
            deadline = time.monotonic() + LINE_TIMEOUT
            first = lines.next(deadline)
            assert first is not None and first.startswith("state "), stop(proc)
            _, term, vote, _ = first.split()
            # What the restarted core reads back covers everything promised before.
            if promised:
                top = max(promised)
                assert int(term) >= top, f"forgot term {top} (seed {seed})"
                if int(term) == top:
                    assert vote == promised[top], f"forgot the vote of term {top} (seed {seed})"
            seen: list[str] = []
            for _ in range(rng.randrange(1, 60)):  # kill it at a random point
                line = lines.next(deadline)
                if line is None:
                    break
                seen.append(line)
            os.kill(proc.pid, signal.SIGKILL)
            # It ran on while we read: every promise it printed before the kill counts,
            # so read them all, up to the end of its output, before judging the store.
            seen += lines.drain(deadline)
        finally:
            stop(proc)
        for line in seen:
            kind, a, b = line.split()
            if kind == "vote":
                promised[int(a)] = b
            elif kind == "ack":
                acked = (int(a), int(b))
        if acked[0]:
            with LedgerStore.open(data) as store:
                log = RaftLog(store, initial_conf=GENESIS)
                assert kept_or_superseded(log, *acked), f"lost acked entry {acked} (seed {seed})"
    assert promised or acked[0], f"the writer made no promises (seed {seed})"
