"""The pure rules that tie the membership in force to Raft and to this daemon."""

from __future__ import annotations

import dataclasses

import pytest

from p2pledger.chain import Transaction
from p2pledger.membership import CONFIG_UPDATE_OP, Member, Network, Role
from p2pledger.node.reconfig import (
    KeyNotInForce,
    StandingKind,
    TooManyConfChanges,
    conf_change_of,
    conf_of,
    hold_back,
    standing_of,
)
from p2pledger.raft import ConfChange, ConfChangeOp, ConfState
from tests.factory import GENESIS_TIME_MS, TestNetwork, seeded_key

NET = TestNetwork(n=4)


def network(*members: Member, version: int = 0) -> Network:
    return dataclasses.replace(NET.network, members=members, version=version)


M0, M1, M2, M3 = NET.network.members
OBSERVER = dataclasses.replace(M3, role=Role.OBSERVER)


def test_conf_of_maps_voters_and_observers() -> None:
    assert conf_of(network(M0, M1, OBSERVER)) == ConfState(
        voters=frozenset({"m0", "m1"}), learners=frozenset({"m3"})
    )


@pytest.mark.parametrize(
    ("old", "new", "want"),
    [
        ((M0, M1, M2), (M0, M1, M2, M3), ConfChange(op=ConfChangeOp.ADD_VOTER, node="m3")),
        ((M0, M1, M2), (M0, M1, M2, OBSERVER), ConfChange(op=ConfChangeOp.ADD_LEARNER, node="m3")),
        ((M0, M1, M2), (M0, M2), ConfChange(op=ConfChangeOp.REMOVE, node="m1")),
        ((M0, OBSERVER), (M0,), ConfChange(op=ConfChangeOp.REMOVE, node="m3")),
        ((M0, OBSERVER), (M0, M3), ConfChange(op=ConfChangeOp.ADD_VOTER, node="m3")),
        ((M0, M3), (M0, OBSERVER), ConfChange(op=ConfChangeOp.ADD_LEARNER, node="m3")),
    ],
)
def test_one_member_added_removed_or_re_roled_is_one_change(
    old: tuple[Member, ...], new: tuple[Member, ...], want: ConfChange
) -> None:
    before, after = network(*old), network(*new, version=1)
    change = conf_change_of(before, after)
    assert change == want
    assert change.apply(conf_of(before)) == conf_of(after)  # what Raft will hold


def test_updates_that_leave_the_configuration_alone_are_no_change() -> None:
    base = network(M0, M1, M2)
    rotated = dataclasses.replace(M1, node_key=seeded_key("new").public_key, address="x:1")
    revoked = dataclasses.replace(M2, users=())
    assert conf_change_of(base, network(M0, rotated, revoked, version=1)) is None
    assert conf_change_of(base, base) is None
    assert conf_change_of(network(M0, M1, M2), network(M2, M1, M0)) is None  # order is no change


def test_two_changes_at_once_are_refused() -> None:
    with pytest.raises(TooManyConfChanges, match="2 configuration changes"):
        conf_change_of(network(M0, M1, M2), network(M0, M2, M3, version=1))


def tx(nonce: int, op: str) -> Transaction:
    args = {"proposal": b"p", "approvals": []} if op == CONFIG_UPDATE_OP else {"x": nonce}
    return Transaction.create(
        NET.user_keys[0],
        chain_id=NET.chain_id,
        op=op,
        args=args,
        nonce=nonce,
        time_ms=GENESIS_TIME_MS,
    )


def test_a_block_carries_at_most_one_membership_update() -> None:
    a, u1, b, u2, c = (
        tx(1, "notary.anchor"),
        tx(2, CONFIG_UPDATE_OP),
        tx(3, "notary.anchor"),
        tx(4, CONFIG_UPDATE_OP),
        tx(5, "notary.anchor"),
    )
    take, held = hold_back([a, u1, b, u2, c], conf_change_pending=False)
    assert take == [a, u1, b, c] and held == [u2]


def test_no_membership_update_while_a_configuration_change_is_pending() -> None:
    a, u1, b = tx(1, "notary.anchor"), tx(2, CONFIG_UPDATE_OP), tx(3, "notary.anchor")
    take, held = hold_back([a, u1, b], conf_change_pending=True)
    assert take == [a, b] and held == [u1]
    assert hold_back([u1], conf_change_pending=True) == ([], [u1])
    assert hold_back([], conf_change_pending=False) == ([], [])


KEY, NEXT = NET.node_keys[1], seeded_key("node-1-next")


def test_a_named_member_speaks_with_the_key_the_membership_gives_it() -> None:
    base = network(M0, M1, M2)
    now = standing_of(base, "m1", key=KEY, next_key=NEXT, was_member=True)
    assert now.kind is StandingKind.MEMBER and now.identity is KEY and now.problem is None
    rotated = network(M0, dataclasses.replace(M1, node_key=NEXT.public_key), M2, version=1)
    after = standing_of(rotated, "m1", key=KEY, next_key=NEXT, was_member=True)
    assert after.kind is StandingKind.MEMBER and after.identity is NEXT


def test_a_key_that_is_neither_current_nor_next_is_an_error() -> None:
    with pytest.raises(KeyNotInForce, match="gives m1 the node key"):
        standing_of(network(M0, M1), "m1", key=NET.node_keys[0], next_key=None, was_member=True)
    with pytest.raises(KeyNotInForce, match="next_key_file"):
        standing_of(network(M0, M1), "m1", key=NEXT, next_key=NET.node_keys[2], was_member=True)


def test_not_named_is_joining_until_once_named_then_removed() -> None:
    base = network(M0, M1, M2)
    joining = standing_of(base, "m3", key=NET.node_keys[3], next_key=None, was_member=False)
    assert joining.kind is StandingKind.JOINING and not joining.member
    assert joining.problem is not None and joining.problem.startswith("not yet a member")
    removed = standing_of(base, "m3", key=NET.node_keys[3], next_key=None, was_member=True)
    assert removed.kind is StandingKind.REMOVED
    assert removed.problem is not None and removed.problem.startswith("removed from the membership")
