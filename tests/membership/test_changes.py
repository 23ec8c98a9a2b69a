"""``diff_networks``: each kind of change, its one-line description, and the order."""

from __future__ import annotations

import dataclasses

import pytest

from p2pledger.membership import (
    BlockLimits,
    Change,
    ChangeKind,
    Fund,
    Network,
    Role,
    diff_networks,
)
from tests.factory import (
    TestNetwork,
    add_member,
    edit_member,
    new_member,
    remove_member,
    seeded_key,
)

NET = TestNetwork(n=3)
BASE = NET.network
ADMIN = [k.public_key for k in NET.admin_keys]
USER = [k.public_key for k in NET.user_keys]
EXTRA = seeded_key("extra").public_key


def only(old: Network, new: Network) -> Change:
    changes = diff_networks(old, new)
    assert len(changes) == 1, changes
    return changes[0]


def test_the_same_network_has_no_changes() -> None:
    assert diff_networks(BASE, BASE) == ()
    assert diff_networks(BASE, dataclasses.replace(BASE, version=7)) == ()


def test_order_of_members_and_of_keys_is_not_a_change() -> None:
    shuffled = dataclasses.replace(BASE, members=tuple(reversed(BASE.members)))
    assert diff_networks(BASE, shuffled) == ()
    two = edit_member(BASE, "m0", users=(USER[0], EXTRA))
    swapped = edit_member(two, "m0", users=(EXTRA, USER[0]))
    assert diff_networks(two, swapped) == ()


def test_member_added_lists_its_keys() -> None:
    bank, _ = new_member("bank-d", port=7401)
    changes = diff_networks(BASE, add_member(BASE, bank))
    assert [c.kind for c in changes] == [
        ChangeKind.MEMBER_ADDED,
        ChangeKind.ADMINS_ADDED,
        ChangeKind.USERS_ADDED,
    ]
    assert all(c.member == "bank-d" for c in changes)
    assert changes[0].describe() == (
        f"+ member bank-d (voter, 127.0.0.1:7401, node key {bank.node_key.hex})"
    )
    assert changes[1].describe() == f"+ bank-d admin {bank.admins[0].hex}"
    assert changes[2].describe() == f"+ bank-d user {bank.users[0].hex}"


def test_member_removed() -> None:
    change = only(BASE, remove_member(BASE, "m1"))
    assert change == Change(
        kind=ChangeKind.MEMBER_REMOVED, member="m1", detail="voter, 127.0.0.1:7001"
    )
    assert change.describe() == "- member m1 (voter, 127.0.0.1:7001)"


def test_role_changed() -> None:
    change = only(BASE, edit_member(BASE, "m2", role=Role.OBSERVER))
    assert change.kind is ChangeKind.ROLE_CHANGED
    assert change.describe() == "~ m2 role voter -> observer"


def test_address_changed() -> None:
    change = only(BASE, edit_member(BASE, "m0", address="5.6.7.8:7401"))
    assert change.kind is ChangeKind.ADDRESS_CHANGED
    assert change.describe() == "~ m0 address 127.0.0.1:7000 -> 5.6.7.8:7401"


def test_node_key_rotated() -> None:
    old = BASE.members[0].node_key
    change = only(BASE, edit_member(BASE, "m0", node_key=EXTRA))
    assert change.kind is ChangeKind.NODE_KEY_ROTATED
    assert change.member == "m0"
    assert change.describe() == f"~ m0 node key {old.short}… -> {EXTRA.hex}"


@pytest.mark.parametrize(
    ("field", "added", "revoked", "word"),
    [
        ("users", ChangeKind.USERS_ADDED, ChangeKind.USERS_REVOKED, "user"),
        ("admins", ChangeKind.ADMINS_ADDED, ChangeKind.ADMINS_REVOKED, "admin"),
    ],
)
def test_keys_added_and_revoked(
    field: str, added: ChangeKind, revoked: ChangeKind, word: str
) -> None:
    old_key = getattr(BASE.members[1], field)[0]
    grown = edit_member(BASE, "m1", **{field: (old_key, EXTRA)})
    change = only(BASE, grown)
    assert (change.kind, change.member, change.detail) == (added, "m1", EXTRA.hex)
    assert change.describe() == f"+ m1 {word} {EXTRA.hex}"
    change = only(grown, edit_member(grown, "m1", **{field: (EXTRA,)}))
    assert (change.kind, change.member, change.detail) == (revoked, "m1", old_key.hex)
    assert change.describe() == f"- m1 {word} {old_key.hex}"


def test_limits_changed_field_by_field() -> None:
    old = BASE.limits
    limits = BlockLimits(
        max_transactions=old.max_transactions * 2,
        max_bytes=old.max_bytes,
        batch_timeout_ms=old.batch_timeout_ms + 150,
    )
    changes = diff_networks(BASE, dataclasses.replace(BASE, limits=limits))
    assert [c.describe() for c in changes] == [
        f"~ limits max_transactions {old.max_transactions} -> {old.max_transactions * 2}",
        f"~ limits batch_timeout_ms {old.batch_timeout_ms} -> {old.batch_timeout_ms + 150}",
    ]
    assert all(c.kind is ChangeKind.LIMITS_CHANGED and c.member is None for c in changes)


def test_fund_added_removed_and_issuers_changed() -> None:
    aid = Fund(name="aid", issuers=(USER[1],))
    with_aid = dataclasses.replace(BASE, funds=(*BASE.funds, aid))
    change = only(BASE, with_aid)
    assert change.kind is ChangeKind.FUND_ADDED
    assert change.describe() == f"+ fund aid (issuers {USER[1].hex})"
    change = only(with_aid, BASE)
    assert change.kind is ChangeKind.FUND_REMOVED
    assert change.describe() == "- fund aid"
    moved = dataclasses.replace(BASE, funds=(Fund(name="relief", issuers=(USER[2],)),))
    change = only(BASE, moved)
    assert change.kind is ChangeKind.FUND_ISSUERS_CHANGED
    assert change.describe() == f"~ fund relief issuers +{USER[2].hex} -{USER[0].hex}"


def test_every_kind_in_one_diff_comes_in_the_documented_order() -> None:
    bank, _ = new_member("bank-d", port=7401, role=Role.OBSERVER)
    new = remove_member(BASE, "m1")
    new = add_member(new, bank)
    new = edit_member(new, "m2", role=Role.OBSERVER, address="10.0.0.2:7000", node_key=EXTRA)
    new = edit_member(new, "m0", users=(seeded_key("u2").public_key,))
    new = dataclasses.replace(
        new,
        limits=dataclasses.replace(BASE.limits, max_bytes=1024),
        funds=(Fund(name="aid", issuers=(bank.users[0],)),),
    )
    kinds = [(c.kind, c.member) for c in diff_networks(BASE, new)]
    assert kinds == [
        (ChangeKind.MEMBER_REMOVED, "m1"),
        (ChangeKind.MEMBER_ADDED, "bank-d"),
        (ChangeKind.ADMINS_ADDED, "bank-d"),
        (ChangeKind.USERS_ADDED, "bank-d"),
        (ChangeKind.USERS_ADDED, "m0"),
        (ChangeKind.USERS_REVOKED, "m0"),
        (ChangeKind.ROLE_CHANGED, "m2"),
        (ChangeKind.ADDRESS_CHANGED, "m2"),
        (ChangeKind.NODE_KEY_ROTATED, "m2"),
        (ChangeKind.LIMITS_CHANGED, None),
        (ChangeKind.FUND_REMOVED, None),
        (ChangeKind.FUND_ADDED, None),
    ]
    assert diff_networks(BASE, new) == diff_networks(BASE, new)  # a pure function


def test_a_change_needs_a_change_kind() -> None:
    with pytest.raises(TypeError):
        Change(kind="member_added", member=None, detail="")  # type: ignore[arg-type]
