"""Known hard cases, scripted step by step, with the safety checker watching."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from p2pledger.raft import (
    AppendRequest,
    ConfChange,
    ConfChangeOp,
    ConfChangePending,
    Message,
    Role,
)
from p2pledger.raft.log import RaftLog
from tests.raft.checker import SafetyViolation
from tests.raft.cluster import Cluster

FIVE = ("n1", "n2", "n3", "n4", "n5")


def carries(m: Message, index: int) -> bool:
    return isinstance(m, AppendRequest) and any(e.index == index for e in m.entries)


def accepts(c: Cluster, m: Message) -> bool:
    to = c.members[m.recipient]
    assert isinstance(m, AppendRequest)
    return to.up and to.n.term_at(m.prev_index) == m.prev_term


def win(c: Cluster, member: str, drop: Callable[[Message], bool] | None = None) -> None:
    """Campaign until ``member`` leads (a first try may only teach it the term)."""
    for _ in range(3):
        c.members[member].n.campaign()
        c.flush(member)
        for _ in range(30):
            c.deliver_all(drop=drop)
        if c.members[member].n.role is Role.LEADER:
            return
    raise AssertionError(f"{member} did not win")


def figure8(c: Cluster, *, current_term_rule: bool = True) -> None:
    """The Raft paper's Figure 8, with no-op entries: a leader must not count replicas
    of an entry from an earlier term towards its commit index."""
    # (a) n1 leads term 1 and gets entry A (index 2) onto n2 only.
    c.elect("n1")
    c.partition({"n1", "n2"}, {"n3", "n4", "n5"})
    a = c.propose("n1", b"A")
    c.stabilize()
    assert a.index == 2 and c.members["n1"].n.commit == 1
    # (b) n1 crashes; n5 wins term 2 with n3 and n4 and takes entry B that no one sees.
    c.crash("n1")
    c.partition({"n3", "n4", "n5"}, {"n2"})
    win(c, "n5", drop=lambda m: isinstance(m, AppendRequest))
    c.isolate("n5")
    c.propose("n5", b"B")
    c.stabilize()
    c.crash("n5")
    assert c.members["n3"].n.last_index == 1
    # (c) n1 restarts and wins term 3 with n2, n3, n4; it gets A onto n3, so A is on a
    # majority (n1, n2, n3). Every append carrying n1's term-3 no-op is lost.
    c.heal()
    c.restart("n1")
    noop = c.members["n1"].n.last_index + 1

    def lose_noop(m: Message) -> bool:  # only where it would be accepted
        return carries(m, noop) and accepts(c, m)

    win(c, "n1", drop=lose_noop)
    leader = c.members["n1"].n
    assert leader.role is Role.LEADER and leader.term == 3
    for _ in range(10):
        c.deliver_all(drop=lose_noop)
    assert c.members["n3"].n.term_at(2) == 1  # A is on n1, n2 and n3
    if current_term_rule:
        assert leader.commit == 1  # ...and still not committed: it is from term 1
    # (d) n1 crashes; n5 (last term 2) wins term 4 with n2, n3, n4 and overwrites A.
    c.crash("n1")
    c.inflight.clear()
    c.restart("n5")
    win(c, "n5")
    c.restart("n1")
    c.tick_all(3)


def test_figure8_a_leader_does_not_commit_entries_of_earlier_terms_by_counting() -> None:
    c = Cluster(FIVE, pre_vote=False, check_quorum=False, max_msg_bytes=1)
    figure8(c)
    for member in c.members:
        assert c.applied_data(member) == [b"B"]  # A was never committed, B was


def test_figure8_without_the_current_term_rule_breaks_safety(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A negative control: the checker must catch the bug Figure 8 is about.
    def commit_by_counting(self: RaftLog, index: int, term: int) -> bool:
        if index > self.committed:
            self.committed = index
            return True
        return False

    monkeypatch.setattr(RaftLog, "maybe_commit", commit_by_counting)
    c = Cluster(FIVE, pre_vote=False, check_quorum=False, max_msg_bytes=1)
    with pytest.raises(SafetyViolation, match="Leader Completeness"):
        figure8(c, current_term_rule=False)


def test_partitioned_leader_loses_its_uncommitted_entries() -> None:
    c = Cluster(FIVE, seed=11)
    c.elect("n1")
    c.propose("n1", b"committed")
    c.stabilize()
    c.partition({"n1", "n2"}, {"n3", "n4", "n5"})
    lost = c.propose("n1", b"lost")
    c.stabilize()
    assert c.members["n2"].n.term_at(lost.index) == lost.term  # replicated, not committed
    c.tick_all(40)
    new = c.leader()
    assert new in {"n3", "n4", "n5"}
    c.propose(new, b"kept")
    c.stabilize()
    assert c.members["n1"].n.role is not Role.LEADER  # CheckQuorum: it lost its quorum
    c.heal()
    c.tick_all(3)
    for member in c.members:
        assert c.applied_data(member) == [b"committed", b"kept"]
        assert c.members[member].n.term_at(lost.index) != lost.term


def test_member_down_through_several_terms_catches_up() -> None:
    c = Cluster(FIVE, seed=4)
    c.elect("n1")
    c.crash("n5")
    expected = []
    for n, leader in enumerate(("n2", "n3", "n4", "n1", "n2")):
        current = c.leader()
        assert current is not None
        c.members[current].n.transfer_leadership(leader)
        c.stabilize()
        assert c.leader() == leader
        for k in range(3):
            data = b"%d.%d" % (n, k)
            expected.append(data)
            c.propose(leader, data)
        c.stabilize()
    assert c.members["n2"].n.term >= 6
    c.restart("n5")
    c.tick_all(3)
    assert c.applied_data("n5") == expected
    assert c.members["n5"].n.term == c.members["n2"].n.term


def test_prevote_stops_a_one_way_partitioned_member_from_disrupting() -> None:
    # n3 can still send, but hears nothing from the leader: it times out and asks
    # for pre-votes, which members that hear the leader refuse.
    c = Cluster(seed=9)
    c.elect("n1")
    c.blocked.add(("n1", "n3"))
    c.tick_all(60)
    assert c.leader() == "n1" and c.members["n1"].n.term == 1
    assert c.members["n3"].n.term == 1
    c.heal()
    c.propose("n1", b"x")
    c.tick_all(2)
    assert c.applied_data("n3") == [b"x"]


def test_without_prevote_a_one_way_partitioned_member_disrupts() -> None:
    c = Cluster(seed=9, pre_vote=False)
    c.elect("n1")
    c.blocked.add(("n1", "n3"))
    c.tick_all(60)
    # Lease (CheckQuorum) protects n1 and n2 from the vote requests, but n3's term
    # still climbs; once it can hear again it forces a new election.
    assert c.members["n3"].n.term > 1
    c.heal()
    c.tick_all(30)
    assert c.members["n1"].n.term > 1


def test_conf_change_racing_with_a_leader_change_is_committed_by_the_new_leader() -> None:
    c = Cluster(FIVE, seed=6, spares=("n6",))
    c.elect("n1")
    # n1 appends "add n6 as learner" and gets it only onto n2, then hands leadership
    # to n2 before the change commits.
    c.blocked = {("n1", m) for m in ("n3", "n4", "n5", "n6")}
    c.members["n1"].n.propose_conf_change(ConfChange(op=ConfChangeOp.ADD_LEARNER, node="n6"))
    c.stabilize()
    assert c.members["n2"].n.status().conf.learners == {"n6"}
    assert c.members["n1"].n.commit < c.members["n1"].n.last_index
    c.members["n1"].n.transfer_leadership("n2")
    c.flush("n1")
    for _ in range(10):
        c.deliver_all(drop=lambda m: isinstance(m, AppendRequest) and m.sender == "n2")
    leader = c.members["n2"].n
    assert leader.role is Role.LEADER
    # Until its no-op commits (and with it the inherited change), no second change.
    with pytest.raises(ConfChangePending):
        leader.propose_conf_change(ConfChange(op=ConfChangeOp.ADD_VOTER, node="n6"))
    c.heal()
    c.tick_all(2)
    assert c.members["n3"].n.status().conf.learners == {"n6"}
    leader.propose_conf_change(ConfChange(op=ConfChangeOp.ADD_VOTER, node="n6"))
    c.stabilize()
    for member in c.members:
        assert c.members[member].n.status().conf.voters == {"n1", "n2", "n3", "n4", "n5", "n6"}
        assert c.members[member].n.lead == "n2"
