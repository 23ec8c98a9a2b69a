"""The core's behaviour, one feature at a time, on a hand-driven cluster."""

from __future__ import annotations

import random

import pytest

from p2pledger.raft import (
    AppendRequest,
    AppendResponse,
    Config,
    ConfState,
    EntryKind,
    Heartbeat,
    MemoryStorage,
    MisdirectedMessage,
    NotLeader,
    NotVoter,
    RaftConfigError,
    RaftUsageError,
    RawNode,
    Role,
    TransferInProgress,
    VoteRequest,
)
from tests.raft.cluster import Cluster


def test_campaign_elects_a_leader_which_commits_a_noop() -> None:
    c = Cluster()
    c.elect("n1")
    assert [c.members[m].n.role for m in ("n2", "n3")] == [Role.FOLLOWER, Role.FOLLOWER]
    assert {c.members[m].n.lead for m in c.members} == {"n1"}
    for m in c.members.values():
        assert [(e.term, e.index, e.kind) for e in m.applied] == [(1, 1, EntryKind.NOOP)]
        assert m.storage.initial_state().term == 1


def test_ticks_alone_elect_exactly_one_leader_within_two_timeouts() -> None:
    c = Cluster(("n1", "n2", "n3", "n4", "n5"), seed=7)
    ticks = 0
    while c.leader() is None and ticks < 60:
        c.tick_all()
        ticks += 1
    assert c.leader() is not None
    assert ticks <= 2 * 20 + 5
    leaders = [m for m in c.members.values() if m.n.role is Role.LEADER]
    assert len(leaders) == 1


def test_entries_commit_on_a_majority_only() -> None:
    c = Cluster(("n1", "n2", "n3", "n4", "n5"))
    c.elect("n1")
    c.isolate("n4")
    c.isolate("n5")
    c.blocked -= {("n1", "n2"), ("n2", "n1")}
    c.isolate("n3")
    e = c.propose("n1", b"tx")
    c.stabilize()
    assert c.members["n1"].n.commit < e.index  # n1 + n2 are not a majority of 5
    c.blocked -= {("n1", "n3"), ("n3", "n1")}
    c.tick_all(2)
    assert c.members["n1"].n.commit >= e.index
    assert c.applied_data("n3") == [b"tx"]
    assert c.applied_data("n4") == []


def test_restart_recovers_hard_state_and_log() -> None:
    c = Cluster()
    c.elect("n1")
    for n in range(5):
        c.propose("n1", b"%d" % n)
    c.stabilize()
    before = {m: c.members[m].storage.initial_state() for m in c.members}
    for m in c.members:
        c.crash(m)
    for m in c.members:
        c.restart(m)
        node = c.members[m].n
        assert (node.term, node.commit, node.applied) == (1, 6, 6)
        assert node.status().vote == before[m].vote
    # No entry is applied twice after the restart, and the cluster moves on.
    c.tick_all(45)
    leader = c.leader()
    assert leader is not None
    c.propose(leader, b"after")
    c.stabilize()
    for m in c.members:
        assert c.applied_data(m) == [b"0", b"1", b"2", b"3", b"4", b"after"]


def test_unpersisted_entries_are_lost_by_a_crash_and_not_applied() -> None:
    c = Cluster()
    c.elect("n1")
    c.crash_after_persist.add("n1")  # persists, then dies before sending
    c.propose("n1", b"persisted-not-sent")
    assert not c.members["n1"].up
    assert c.members["n1"].storage.last_index() == 2
    c.inflight.clear()
    c.tick_all(45)
    assert c.leader() in {"n2", "n3"}
    c.restart("n1")
    c.tick_all(3)
    # The new leader never had the entry, so n1's copy was overwritten.
    assert c.applied_data("n1") == []
    assert c.members["n1"].n.term_at(2) == c.members[c.leader() or ""].n.term


def test_failed_calls_change_nothing() -> None:
    c = Cluster()
    c.elect("n1")
    follower = c.members["n2"].n
    before = follower.status()
    with pytest.raises(NotLeader) as info:
        follower.propose(b"x")
    assert info.value.leader == "n1"
    with pytest.raises(MisdirectedMessage):
        follower.step(Heartbeat(term=9, sender="n1", recipient="n3", commit=0))
    with pytest.raises(NotLeader):
        follower.transfer_leadership("n3")
    assert follower.status() == before
    assert not follower.has_ready()
    c.members["n1"].n.propose(b"y")
    rd = c.members["n1"].n.ready()
    with pytest.raises(RaftUsageError):
        c.members["n1"].n.ready()
    with pytest.raises(RaftUsageError):
        c.members["n1"].n.advance(type(rd)())
    c.members["n1"].storage.save(entries=rd.entries, hard_state=rd.hard_state)
    c.members["n1"].n.advance(rd)


def test_config_is_validated() -> None:
    storage = MemoryStorage(ConfState(voters=frozenset({"a"})))
    with pytest.raises(RaftConfigError):
        Config(id="a", storage=storage, rng=random.Random(0), election_tick=1)
    with pytest.raises(RaftConfigError):
        Config(id="", storage=storage, rng=random.Random(0))


def test_single_voter_commits_alone() -> None:
    storage = MemoryStorage(ConfState(voters=frozenset({"solo"})))
    node = RawNode(Config(id="solo", storage=storage, rng=random.Random(1)))
    node.campaign()
    assert node.role is Role.LEADER
    node.propose(b"block")
    rd = node.ready()
    assert [e.data for e in rd.committed_entries] == [b"", b"block"]
    assert [e.index for e in rd.entries] == [1, 2]
    assert rd.hard_state is not None and rd.hard_state.commit == 2 and rd.must_sync
    storage.save(entries=rd.entries, hard_state=rd.hard_state)
    node.advance(rd)
    assert not node.has_ready()


def test_non_voter_cannot_campaign() -> None:
    c = Cluster(learners=("n4",))
    with pytest.raises(NotVoter):
        c.members["n4"].n.campaign()
    c.tick("n4", 100)
    assert c.members["n4"].n.role is Role.FOLLOWER
    assert not c.inflight


# --- PreVote and CheckQuorum ---------------------------------------------------------------


def test_prevote_keeps_a_partitioned_member_term_steady() -> None:
    c = Cluster(seed=3)
    c.elect("n1")
    c.isolate("n3")
    c.tick_all(100)
    assert c.members["n3"].n.term == 1  # it kept failing PreVote, never bumped its term
    assert c.members["n3"].n.role is Role.PRE_CANDIDATE
    c.heal()
    c.tick_all(5)
    assert c.leader() == "n1" and c.members["n1"].n.term == 1
    assert c.members["n3"].n.lead == "n1"


def test_without_prevote_a_rejoining_member_disrupts_the_leader() -> None:
    c = Cluster(seed=3, pre_vote=False, check_quorum=False)
    c.elect("n1")
    c.isolate("n3")
    c.tick_all(100)
    assert c.members["n3"].n.term > 3
    c.heal()
    c.tick_all(25)
    assert c.members["n1"].n.term > 3  # the old leader was deposed by the higher term


def test_checkquorum_leader_steps_down_when_isolated() -> None:
    c = Cluster(seed=5)
    c.elect("n1")
    c.isolate("n1")
    c.tick_all(10)
    assert c.members["n1"].n.status().role is Role.LEADER
    c.tick_all(10)
    assert c.members["n1"].n.status().role is Role.FOLLOWER
    c.tick_all(40)
    assert c.leader() in {"n2", "n3"}


def test_lease_ignores_vote_requests_while_the_leader_is_heard() -> None:
    c = Cluster()
    c.elect("n1")
    n2 = c.members["n2"].n
    n2.step(VoteRequest(term=5, sender="n3", recipient="n2", last_index=9, last_term=1))
    assert n2.term == 1 and n2.status().vote == "n1"
    c.flush("n2")
    assert not c.inflight  # not even a refusal


# --- replication -----------------------------------------------------------------------


def test_pipelining_keeps_several_appends_in_flight_bounded_by_count() -> None:
    c = Cluster(max_msg_bytes=1, max_inflight_msgs=4)  # one entry per append
    c.elect("n1")
    for n in range(10):
        c.propose("n1", b"%d" % n)
    to_n2 = [m for m in c.inflight if isinstance(m, AppendRequest) and m.recipient == "n2"]
    assert len(to_n2) == 4  # pipelined up to the inflight bound, not one at a time
    assert c.members["n1"].n.status().progress["n2"].inflight == 4
    c.stabilize()
    assert c.applied_data("n2") == [b"%d" % n for n in range(10)]


def test_pipelining_is_bounded_by_bytes() -> None:
    c = Cluster(max_msg_bytes=1)
    c.elect("n1")
    raft = c.members["n1"].n._raft
    for pr in raft.prs.values():
        pr.inflights.max_bytes = 3000
    for _ in range(10):
        c.propose("n1", b"x" * 1000)
    to_n2 = [m for m in c.inflight if isinstance(m, AppendRequest) and m.recipient == "n2"]
    assert len(to_n2) == 3  # 3 x 1016 bytes reach the 3000-byte bound
    c.stabilize()
    assert len(c.applied_data("n2")) == 10


def test_fast_backtracking_skips_a_term_per_round_trip() -> None:
    c = Cluster(seed=1)
    c.elect("n1")
    c.propose("n1", b"committed")
    c.stabilize()
    # n1 is cut off and keeps 30 entries of term 1 that nobody else sees.
    c.isolate("n1")
    for n in range(30):
        c.members["n1"].n.propose(b"lost%d" % n)
    c.flush("n1")
    c.inflight.clear()
    c.tick_all(40)
    new = c.leader()
    assert new in {"n2", "n3"}
    for n in range(20):
        c.propose(new, b"new%d" % n)
    c.stabilize()
    assert c.members["n1"].n.role is not Role.LEADER  # CheckQuorum deposed it
    # A leader of a later term starts probing n1 at its own last index (23).
    other = ({"n2", "n3"} - {new}).pop()
    c.members[new].n.transfer_leadership(other)
    c.stabilize()
    new = other
    assert c.leader() == new
    c.heal()
    rejections = 0
    c.tick_all(1, stabilize=False)
    for _ in range(30):
        rejections += sum(
            1 for m in c.inflight if isinstance(m, AppendResponse) and m.reject and m.sender == "n1"
        )
        c.deliver_all()
        c.flush_all()
    assert rejections == 1  # not one per divergent entry (20)
    assert c.applied_data("n1") == c.applied_data(new)
    assert b"lost0" not in c.applied_data("n1")


def test_heartbeat_response_recovers_a_follower_whose_appends_were_dropped() -> None:
    c = Cluster()
    c.elect("n1")
    c.blocked.add(("n1", "n3"))
    for n in range(5):
        c.propose("n1", b"%d" % n)
    c.stabilize()
    assert c.members["n1"].n.status().progress["n3"].inflight == 5
    c.blocked.clear()
    assert c.applied_data("n3") == []
    c.tick_all(3)
    assert c.applied_data("n3") == [b"%d" % n for n in range(5)]


# --- leader transfer ---------------------------------------------------------------------


def test_leader_transfer_to_a_lagging_voter() -> None:
    c = Cluster()
    c.elect("n1")
    c.isolate("n3")
    c.propose("n1", b"a")
    c.stabilize()
    c.heal()
    c.members["n1"].n.transfer_leadership("n3")
    with pytest.raises(TransferInProgress):
        c.members["n1"].n.propose(b"refused")
    c.stabilize()
    assert c.leader() == "n3"
    assert c.members["n1"].n.role is Role.FOLLOWER
    c.propose("n3", b"b")
    c.stabilize()
    assert c.applied_data("n1") == [b"a", b"b"]


def test_leader_transfer_to_an_unreachable_voter_is_abandoned() -> None:
    c = Cluster()
    c.elect("n1")
    c.isolate("n3")
    c.members["n1"].n.transfer_leadership("n3")
    c.tick_all(10)
    assert c.members["n1"].n.status().lead_transferee is None
    c.propose("n1", b"accepted again")
    c.stabilize()
    assert c.applied_data("n2") == [b"accepted again"]
