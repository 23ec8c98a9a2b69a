"""The small pure pieces: quorum arithmetic, inflight bookkeeping, the log."""

from __future__ import annotations

import pytest

from p2pledger.raft import ConfState, Entry, LogCompacted, MemoryStorage, SnapshotMeta
from p2pledger.raft.log import RaftLog
from p2pledger.raft.progress import Inflights, Progress, ProgressState
from p2pledger.raft.quorum import VoteResult, committed_index, majority, vote_result

CONF = ConfState(voters=frozenset({"a", "b", "c"}))


def test_majority_and_committed_index() -> None:
    assert [majority([str(v) for v in range(n)]) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]
    match = {"a": 7, "b": 5, "c": 2, "d": 9, "e": 1}
    assert committed_index(["a", "b", "c"], match.__getitem__) == 5
    assert committed_index(["a", "b", "c", "d"], match.__getitem__) == 5
    assert committed_index(["a", "b", "c", "d", "e"], match.__getitem__) == 5
    assert committed_index([], match.__getitem__) == 0


@pytest.mark.parametrize(
    ("votes", "result"),
    [
        ({"a": True}, VoteResult.PENDING),
        ({"a": True, "b": True}, VoteResult.WON),
        ({"a": True, "b": False}, VoteResult.PENDING),
        ({"a": True, "b": False, "c": False}, VoteResult.LOST),
        ({"a": True, "x": True}, VoteResult.PENDING),  # a non-voter's vote does not count
    ],
)
def test_vote_result(votes: dict[str, bool], result: VoteResult) -> None:
    assert vote_result(["a", "b", "c"], votes) is result


def test_inflights_bound_by_count_and_bytes() -> None:
    inf = Inflights(max_count=3, max_bytes=100)
    inf.add(5, 10)
    inf.add(7, 10)
    assert not inf.full()
    inf.add(9, 90)
    assert inf.full() and inf.bytes == 110
    inf.free_le(7)
    assert len(inf) == 1 and inf.bytes == 90 and not inf.full()
    inf.free_first_one()
    assert len(inf) == 0 and inf.bytes == 0


def test_progress_probe_backs_off_with_the_hint_and_ignores_stale_rejections() -> None:
    pr = Progress(next_index=11, is_learner=False, max_inflight=4, max_inflight_bytes=1 << 20)
    pr.probe_sent = True
    assert not pr.maybe_decr_to(7, 3)  # not the probe we sent (next - 1 == 10)
    assert pr.maybe_decr_to(10, 3)
    assert pr.next == 4 and not pr.probe_sent
    assert pr.maybe_update(6) and pr.match == 6 and pr.next == 7
    pr.become_replicate()
    assert pr.state is ProgressState.REPLICATE and pr.next == 7
    assert not pr.maybe_decr_to(5, 0)  # at or below match: stale
    assert pr.maybe_decr_to(9, 0) and pr.next == 7


def entries(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(term=t, index=start + n, data=b"%d" % n) for n, t in enumerate(terms)]


def test_log_joins_stable_and_unstable_entries() -> None:
    storage = MemoryStorage(CONF)
    storage.append(entries(1, 1, 2))
    log = RaftLog(storage)
    log.append(entries(2, 3, start=4))
    assert [e.index for e in log.slice(2, 6)] == [2, 3, 4, 5]
    assert log.unstable_entries() == tuple(entries(2, 3, start=4))
    # A conflicting append below the unstable offset replaces stable entries too.
    log.append(entries(4, start=3))
    assert log.last_index() == 3 and log.term(3) == 4 and log.offset == 3
    # The driver persisted an older version of index 3: do not drop the new one.
    log.stable_to(3, 2)
    assert log.unstable_entries() == tuple(entries(4, start=3))
    storage.append(log.unstable_entries())
    log.stable_to(3, 4)
    assert log.unstable_entries() == () and log.offset == 4


def test_find_conflict_by_term_skips_whole_terms() -> None:
    storage = MemoryStorage(CONF)
    storage.append(entries(1, 1, 3, 3, 3, 5, 5))
    log = RaftLog(storage)
    assert log.find_conflict_by_term(7, 4) == (5, 3)
    assert log.find_conflict_by_term(7, 2) == (2, 1)
    assert log.find_conflict_by_term(7, 9) == (7, 5)
    assert log.find_conflict_by_term(7, 0) == (0, 0)


def test_log_after_restore_starts_after_the_snapshot() -> None:
    storage = MemoryStorage(CONF)
    storage.append(entries(1, 1, 1))
    log = RaftLog(storage)
    meta = SnapshotMeta(index=10, term=3, conf=CONF)
    log.restore(meta)
    assert (log.first_index(), log.last_index(), log.term(10), log.committed) == (11, 10, 3, 10)
    assert log.term(3) is None
    with pytest.raises(LogCompacted):
        log.slice(5, 11)
    log.stable_snapshot_to(10)
    assert log.unstable_snapshot() is None
