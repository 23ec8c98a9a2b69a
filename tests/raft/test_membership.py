"""Learners, single-server membership changes, and compaction with catch-up."""

from __future__ import annotations

import pytest

from p2pledger.raft import (
    AppendRequest,
    ConfChange,
    ConfChangeOp,
    ConfChangePending,
    ConfState,
    EntryKind,
    InvalidConfChange,
    InvalidTransfer,
    Message,
    ProgressState,
    Role,
    SnapshotMeta,
    SnapshotRequest,
    VoteRequest,
)
from tests.raft.cluster import Cluster


def change(op: ConfChangeOp, node: str) -> ConfChange:
    return ConfChange(op=op, node=node, context=b"signed by admins")


def pending_catch_up(c: Cluster, member: str) -> SnapshotMeta | None:
    return c.members[member].catch_up


def conf_of(c: Cluster, member: str) -> ConfState:
    return c.members[member].n.status().conf


# --- learners --------------------------------------------------------------------------


def test_learner_receives_entries_but_never_votes_or_counts() -> None:
    c = Cluster(learners=("n4",))
    c.elect("n1")
    assert not any(isinstance(m, VoteRequest) and m.recipient == "n4" for m in c.inflight)
    c.propose("n1", b"a")
    c.stabilize()
    assert c.applied_data("n4") == [b"a"]
    # Two voters down: the leader and the learner are not a quorum of {n1, n2, n3}.
    c.isolate("n2")
    c.isolate("n3")
    c.blocked -= {("n1", "n4"), ("n4", "n1")}
    e = c.propose("n1", b"b")
    c.stabilize()
    assert c.members["n4"].n.last_index >= e.index
    assert c.members["n1"].n.commit < e.index


def test_commit_does_not_wait_for_a_learner() -> None:
    c = Cluster(learners=("n4",))
    c.elect("n1")
    c.isolate("n4")
    e = c.propose("n1", b"a")
    c.stabilize()
    assert c.members["n1"].n.commit >= e.index


def test_transfer_to_a_learner_is_refused() -> None:
    c = Cluster(learners=("n4",))
    c.elect("n1")
    with pytest.raises(InvalidTransfer):
        c.members["n1"].n.transfer_leadership("n4")


# --- membership changes -------------------------------------------------------------------


def test_add_learner_then_promote_to_voter() -> None:
    c = Cluster(spares=("n4",))
    c.elect("n1")
    c.propose("n1", b"before")
    c.stabilize()
    c.members["n1"].n.propose_conf_change(change(ConfChangeOp.ADD_LEARNER, "n4"))
    c.stabilize()
    assert conf_of(c, "n4").learners == {"n4"}
    assert c.applied_data("n4") == [b"before"]  # caught up from the start of the log
    c.members["n1"].n.propose_conf_change(change(ConfChangeOp.ADD_VOTER, "n4"))
    c.stabilize()
    for m in c.members:
        assert conf_of(c, m) == ConfState(voters=frozenset({"n1", "n2", "n3", "n4"}))
    # A quorum of 4 voters is 3: with n2 and n3 gone, n1 and n4 cannot commit.
    c.isolate("n2")
    c.isolate("n3")
    c.blocked -= {("n1", "n4"), ("n4", "n1")}
    e = c.propose("n1", b"needs three")
    c.stabilize()
    assert c.members["n1"].n.commit < e.index
    applied = [m.applied[-1] for m in c.members.values() if m.applied]
    assert all(a.kind is not EntryKind.CONF_CHANGE or a.index < e.index for a in applied)


def test_a_second_change_is_refused_while_one_is_pending() -> None:
    c = Cluster(spares=("n4", "n5"))
    c.elect("n1")
    leader = c.members["n1"].n
    assert not leader.conf_change_pending
    leader.propose_conf_change(change(ConfChangeOp.ADD_LEARNER, "n4"))
    assert leader.conf_change_pending and leader.conf.learners == {"n4"}
    before = leader.status()
    with pytest.raises(ConfChangePending):
        leader.propose_conf_change(change(ConfChangeOp.ADD_LEARNER, "n5"))
    assert leader.status() == before
    c.stabilize()
    assert not leader.conf_change_pending
    leader.propose_conf_change(change(ConfChangeOp.ADD_LEARNER, "n5"))
    c.stabilize()
    assert conf_of(c, "n2").learners == {"n4", "n5"}


def test_a_new_leader_accepts_no_change_before_committing_in_its_term() -> None:
    c = Cluster()
    c.elect("n1")
    c.members["n1"].n.transfer_leadership("n2")
    c.flush("n1")
    # Deliver the whole election, but hold back every append from the new leader.
    for _ in range(10):
        c.deliver_all(drop=lambda m: m.sender == "n2" and isinstance(m, AppendRequest))
    leader = c.members["n2"].n
    assert leader.role is Role.LEADER
    before = leader.status()
    assert leader.conf_change_pending
    with pytest.raises(ConfChangePending):
        leader.propose_conf_change(change(ConfChangeOp.REMOVE, "n3"))
    assert leader.status() == before
    c.tick_all(2)
    leader.propose_conf_change(change(ConfChangeOp.REMOVE, "n3"))
    c.stabilize()
    assert conf_of(c, "n1").voters == {"n1", "n2"}


def test_invalid_changes_are_refused() -> None:
    c = Cluster()
    c.elect("n1")
    leader = c.members["n1"].n
    with pytest.raises(InvalidConfChange):
        leader.propose_conf_change(change(ConfChangeOp.ADD_VOTER, "n2"))
    with pytest.raises(InvalidConfChange):
        leader.propose_conf_change(change(ConfChangeOp.REMOVE, "n9"))


def test_removing_a_follower_shrinks_the_quorum() -> None:
    c = Cluster()
    c.elect("n1")
    c.members["n1"].n.propose_conf_change(change(ConfChangeOp.REMOVE, "n3"))
    c.stabilize()
    assert conf_of(c, "n2").voters == {"n1", "n2"}
    c.crash("n3")
    e = c.propose("n1", b"two voters")
    c.stabilize()
    assert c.members["n2"].n.commit >= e.index
    assert "n3" not in c.members["n1"].n.status().progress


def test_removing_the_leader_hands_over_and_steps_down() -> None:
    c = Cluster()
    c.elect("n1")
    c.members["n1"].n.propose_conf_change(change(ConfChangeOp.REMOVE, "n1"))
    c.stabilize()
    assert c.members["n1"].n.role is Role.FOLLOWER
    new = c.leader()
    assert new in {"n2", "n3"}
    assert c.members[new].n.status().conf.voters == {"n2", "n3"}
    c.propose(new, b"after")
    c.stabilize()
    assert c.applied_data("n2") == [b"after"]
    # The removed member stays quiet: it is not a voter in its own configuration.
    c.tick("n1", 100)
    assert c.members["n1"].n.role is Role.FOLLOWER


def test_an_uncommitted_change_is_undone_when_truncated() -> None:
    c = Cluster(("n1", "n2", "n3", "n4", "n5"), seed=2)
    c.elect("n1")
    c.partition({"n1", "n2"}, {"n3", "n4", "n5"})
    c.members["n1"].n.propose_conf_change(change(ConfChangeOp.REMOVE, "n5"))
    c.stabilize()
    assert conf_of(c, "n2").voters == {"n1", "n2", "n3", "n4"}  # in force once appended
    c.tick_all(40)
    new = c.leader()
    assert new in {"n3", "n4", "n5"}
    c.propose(new, b"majority side")
    c.heal()
    c.tick_all(5)
    for m in c.members:
        assert conf_of(c, m).voters == {"n1", "n2", "n3", "n4", "n5"}
        assert c.applied_data(m) == [b"majority side"]


# --- compaction and catch-up ---------------------------------------------------------------


def test_lagging_follower_gets_a_snapshot_request_and_catches_up_from_the_ledger() -> None:
    c = Cluster()
    c.elect("n1")
    c.crash("n3")
    for n in range(10):
        c.propose("n1", b"%d" % n)
    c.stabilize()
    for m in ("n1", "n2"):
        c.members[m].storage.compact(c.members[m].n.applied)
    c.restart("n3")
    c.tick_all(2)
    assert any(isinstance(m, SnapshotRequest) for m in c.inflight) or c.members["n3"].catch_up
    c.stabilize()
    meta = c.members["n3"].catch_up
    assert meta is not None and meta.index == 11
    status = c.members["n1"].n.status()
    assert status.progress["n3"].state is ProgressState.SNAPSHOT
    assert c.complete_catch_up("n3")
    assert c.members["n3"].storage.snapshot() == meta
    c.stabilize()
    c.propose("n1", b"after")
    c.stabilize()
    assert c.applied_data("n3") == [b"%d" % n for n in range(10)] + [b"after"]
    assert c.members["n1"].n.status().progress["n3"].state is ProgressState.REPLICATE
    # And it survives a restart from the restored storage.
    c.restart("n3")
    assert c.members["n3"].n.applied == c.members["n1"].n.applied


def test_a_follower_never_caught_up_is_probed_again() -> None:
    c = Cluster(snapshot_retry_ticks=5)
    c.elect("n1")
    c.crash("n3")
    for n in range(3):
        c.propose("n1", b"%d" % n)
    c.stabilize()
    c.members["n1"].storage.compact(4)
    c.restart("n3")
    c.tick_all(2)
    assert c.members["n1"].n.status().progress["n3"].state is ProgressState.SNAPSHOT
    c.members["n3"].catch_up = None  # the daemon's catch-up failed
    sent: list[Message] = []
    c.sent_log = sent
    c.tick_all(8)
    assert sum(1 for m in sent if isinstance(m, SnapshotRequest)) == 1  # asked again
    assert pending_catch_up(c, "n3") is not None
    assert c.complete_catch_up("n3")
    c.stabilize()
    assert c.applied_data("n3") == [b"0", b"1", b"2"]


def test_restore_of_a_point_already_held_only_advances_commit() -> None:
    c = Cluster()
    c.elect("n1")
    for n in range(3):
        c.propose("n1", b"%d" % n)
    c.stabilize()
    node = c.members["n2"].n
    status = c.members["n1"].n.status()
    meta = SnapshotMeta(index=status.commit, term=1, conf=status.conf)
    assert not node.restore(meta)  # already committed there
    assert node.status().first_index == 1
