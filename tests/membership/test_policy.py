"""The membership policy: each row of the table, majority counting, and every refusal
of ``check_update`` with its code."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from p2pledger.crypto import PublicKey, SigningKey
from p2pledger.membership import (
    UPDATE_CODES,
    BlockLimits,
    Fund,
    InsufficientApprovals,
    InvalidUpdate,
    Member,
    Network,
    Requirement,
    Role,
    check_approvals,
    check_update,
    majority_of,
    required_approvals,
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
ADMINS = NET.admin_keys  # one admin per member: m0, m1, m2
EXTRA = seeded_key("extra").public_key
BANK_D, _ = new_member("bank-d", port=7401)


def keys(*signers: SigningKey) -> list[PublicKey]:
    return [k.public_key for k in signers]


def approve(base: Network, new: Network, signers: Sequence[SigningKey]) -> None:
    check_approvals(base, check_update(base, new), keys(*signers))


def refused(base: Network, new: Network, signers: Sequence[SigningKey]) -> InsufficientApprovals:
    with pytest.raises(InsufficientApprovals) as info:
        approve(base, new, signers)
    assert info.value.code == "insufficient_approvals"
    return info.value


# --- the table, row by row -----------------------------------------------------------

MAJORITY_EDITS = {
    "add a member": add_member(BASE, BANK_D),
    "remove a member": remove_member(BASE, "m2"),
    "demote a voter": edit_member(BASE, "m2", role=Role.OBSERVER),
    "change block limits": dataclasses.replace(
        BASE, limits=BlockLimits(max_transactions=10), version=1
    ),
    "add a fund": dataclasses.replace(
        BASE,
        funds=(*BASE.funds, Fund(name="aid", issuers=(NET.user_keys[1].public_key,))),
        version=1,
    ),
    "remove a fund": dataclasses.replace(BASE, funds=(), version=1),
    "change a fund's issuers": dataclasses.replace(
        BASE, funds=(Fund(name="relief", issuers=(NET.user_keys[2].public_key,)),), version=1
    ),
}


@pytest.mark.parametrize("edit", MAJORITY_EDITS)
def test_majority_changes_need_a_majority_of_organisations(edit: str) -> None:
    new = MAJORITY_EDITS[edit]
    need = required_approvals(BASE, check_update(BASE, new))
    assert need == Requirement(needs_majority=True, members=frozenset())
    approve(BASE, new, ADMINS[:2])  # 2 of 3
    approve(BASE, new, ADMINS[1:])
    error = refused(BASE, new, ADMINS[:1])
    assert "1 of 3 member organisations approve, need 2" in str(error)
    assert "no approval yet from the admins of m1, m2" in str(error)
    assert error.missing == ("m1", "m2")


OWN_EDITS = {
    "change its address": edit_member(BASE, "m1", address="10.9.9.9:7001"),
    "rotate its node key": edit_member(BASE, "m1", node_key=EXTRA),
    "add a user": edit_member(BASE, "m1", users=(NET.user_keys[1].public_key, EXTRA)),
    "revoke a user": edit_member(BASE, "m1", users=()),
    "add an admin": edit_member(BASE, "m1", admins=(ADMINS[1].public_key, EXTRA)),
    "revoke an admin": edit_member(BASE, "m1", admins=()),
}


@pytest.mark.parametrize("edit", OWN_EDITS)
def test_own_changes_need_that_members_admin(edit: str) -> None:
    new = OWN_EDITS[edit]
    need = required_approvals(BASE, check_update(BASE, new))
    assert need == Requirement(needs_majority=False, members=frozenset({"m1"}))
    approve(BASE, new, [ADMINS[1]])
    error = refused(BASE, new, [ADMINS[0], ADMINS[2]])  # everyone else is not enough
    assert "missing an approval by an admin of m1" in str(error)
    assert error.missing == ("m1",)


def test_a_proposal_needs_every_approval_each_change_needs() -> None:
    new = add_member(edit_member(BASE, "m0", address="10.0.0.1:7000"), BANK_D)
    new = dataclasses.replace(new, version=1)
    assert required_approvals(BASE, check_update(BASE, new)) == Requirement(
        needs_majority=True, members=frozenset({"m0"})
    )
    approve(BASE, new, [ADMINS[0], ADMINS[1]])
    error = refused(BASE, new, [ADMINS[1], ADMINS[2]])  # a majority, but not m0
    assert error.missing == ("m0",)
    error = refused(BASE, new, [ADMINS[0]])  # m0, but no majority
    assert "1 of 3" in str(error) and error.missing == ("m1", "m2")


def test_a_new_members_own_keys_need_no_approval_of_their_own() -> None:
    need = required_approvals(BASE, check_update(BASE, add_member(BASE, BANK_D)))
    assert need.members == frozenset()


# --- majority counting ---------------------------------------------------------------


def test_an_organisation_counts_once_however_many_of_its_admins_sign() -> None:
    trio = [seeded_key(f"m0-admin-{i}") for i in range(3)]
    base = edit_member(BASE, "m0", admins=tuple(k.public_key for k in trio))
    base = dataclasses.replace(base, version=0)
    new = remove_member(base, "m2")
    error = refused(base, new, trio)
    assert "1 of 3 member organisations approve, need 2" in str(error)
    approve(base, new, [*trio, ADMINS[1]])


def test_observers_count_as_organisations() -> None:
    base = NET.network
    for label, port in (("obs-a", 7501), ("obs-b", 7502)):
        member, _ = new_member(label, port=port, role=Role.OBSERVER)
        base = dataclasses.replace(add_member(base, member), version=0)
    assert len(base.members) == 5 and majority_of(5) == 3
    new = edit_member(base, "m0", role=Role.OBSERVER)
    obs_admin = seeded_key("obs-a-admin")
    refused(base, new, ADMINS[:2])  # two of the three voters: 2 of 5
    approve(base, new, [*ADMINS[:2], obs_admin])  # 3 of 5, one an observer


@pytest.mark.parametrize(("n", "m"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4)])
def test_majority_is_more_than_half(n: int, m: int) -> None:
    assert majority_of(n) == m


def test_keys_that_are_no_admin_count_for_nothing() -> None:
    new = remove_member(BASE, "m2")
    strangers = [seeded_key(f"stranger-{i}") for i in range(5)]
    crowd = refused(BASE, new, [ADMINS[0], *strangers, NET.user_keys[1], NET.node_keys[2]])
    alone = refused(BASE, new, [ADMINS[0]])
    assert crowd.missing == alone.missing == ("m1", "m2")
    assert str(crowd) == str(alone)  # the others added nothing, not even to the count


def test_requirement_describes_itself() -> None:
    need = Requirement(needs_majority=True, members=frozenset({"m2", "m0"}))
    assert need.describe(BASE) == (
        "admins of a majority of member organisations (2 of 3) and an admin of m0, m2"
    )


# --- what check_update refuses ---------------------------------------------------------


def refusal(base: Network, new: Network) -> InvalidUpdate:
    with pytest.raises(InvalidUpdate) as info:
        check_update(base, new)
    assert info.value.code in UPDATE_CODES
    return info.value


@pytest.mark.parametrize(
    "changes",
    [{"chain_name": "other-chain"}, {"genesis_time_ms": BASE.genesis_time_ms + 1}],
)
def test_the_chain_name_and_genesis_time_never_change(changes: dict[str, object]) -> None:
    new = dataclasses.replace(BASE, version=1, **changes)
    error = refusal(BASE, new)
    assert error.code == "immutable_field"
    assert "never change" in error.message


@pytest.mark.parametrize("version", [0, 2, 7])
def test_the_version_must_be_the_next(version: int) -> None:
    new = dataclasses.replace(edit_member(BASE, "m0", address="1.2.3.4:1"), version=version)
    error = refusal(BASE, new)
    assert error.code == "bad_version"
    assert "version 1" in error.message


def test_nothing_changed() -> None:
    error = refusal(BASE, dataclasses.replace(BASE, version=1))
    assert error.code == "config_unchanged"


def test_no_voter_left() -> None:
    one = TestNetwork(n=1).network
    error = refusal(one, edit_member(one, "m0", role=Role.OBSERVER))
    assert error.code == "no_voter"
    assert 'no member has role = "voter"' in error.message


@pytest.mark.parametrize(
    "edit",
    [
        lambda n: add_member(add_member(n, BANK_D), new_member("bank-e", port=7402)[0]),
        lambda n: add_member(remove_member(n, "m2"), BANK_D),
        lambda n: edit_member(remove_member(n, "m2"), "m1", role=Role.OBSERVER),
        lambda n: remove_member(remove_member(n, "m2"), "m1"),
    ],
    ids=["add two", "add and remove", "remove and demote", "remove two"],
)
def test_one_raft_configuration_change_at_a_time(edit: object) -> None:
    new = dataclasses.replace(edit(BASE), version=1)  # type: ignore[operator]
    error = refusal(BASE, new)
    assert error.code == "too_many_conf_changes"
    assert "split it" in error.message


def test_one_configuration_change_with_other_changes_is_fine() -> None:
    new = add_member(edit_member(BASE, "m0", address="10.0.0.1:7000"), BANK_D)
    assert len(check_update(BASE, dataclasses.replace(new, version=1))) == 4  # + its 2 keys


def _m(name: str, *, node: PublicKey, admins: tuple[PublicKey, ...] = ()) -> Member:
    return Member(
        name=name, node_key=node, address="127.0.0.1:9000", role=Role.VOTER, admins=admins
    )


@pytest.mark.parametrize(
    ("member", "where"),
    [
        (_m("m1", node=EXTRA), "members[3].name"),
        (_m("bank-d", node=NET.node_keys[0].public_key), "members[3].node_key"),
        (_m("bank-d", node=NET.user_keys[1].public_key), "members[3].node_key"),
        (_m("bank-d", node=EXTRA, admins=(NET.admin_keys[2].public_key,)), "members[3].admins[0]"),
    ],
    ids=["member name", "node key", "node key = a user key", "admin key"],
)
def test_names_and_keys_must_not_collide(member: Member, where: str) -> None:
    error = refusal(BASE, add_member(BASE, member))
    assert error.code == "collision"
    assert f"[{where}]" in error.message


def test_a_fund_name_used_twice_collides() -> None:
    twice = (*BASE.funds, Fund(name="relief", issuers=(NET.user_keys[1].public_key,)))
    error = refusal(BASE, dataclasses.replace(BASE, funds=twice, version=1))
    assert error.code == "collision"
    assert 'fund name "relief" is already used by funds[0]' in error.message


@pytest.mark.parametrize(
    ("new", "where"),
    [
        (edit_member(BASE, "m0", address="no-port"), "members[0].address"),
        (edit_member(BASE, "m0", name="Bad Name"), "members[0].name"),
        (dataclasses.replace(BASE, limits=BlockLimits(max_bytes=0), version=1), "limits.max_bytes"),
        (dataclasses.replace(BASE, members=(), version=1), "members"),
        (
            dataclasses.replace(BASE, funds=(Fund(name="aid", issuers=()),), version=1),
            "funds[0].issuers",
        ),
        (
            dataclasses.replace(BASE, funds=(Fund(name="aid", issuers=(EXTRA,)),), version=1),
            "funds[0].issuers[0]",
        ),
    ],
    ids=["address", "member name", "limit", "no members", "no issuer", "issuer not a user"],
)
def test_a_malformed_network_is_bad_config(new: Network, where: str) -> None:
    error = refusal(BASE, new)
    assert error.code == "bad_config"
    assert f"[{where}]" in error.message


def test_every_problem_is_reported_at_once() -> None:
    new = edit_member(BASE, "m0", address="no-port", name="Bad Name")
    new = dataclasses.replace(new, limits=BlockLimits(max_bytes=0))
    error = refusal(BASE, new)
    assert error.message.startswith("the proposed network has 3 problems")
    for where in ("members[0].name", "members[0].address", "limits.max_bytes"):
        assert where in error.message


def test_the_order_of_refusals() -> None:
    """A network with several faults gets the code of the first check it fails."""
    bad = dataclasses.replace(BASE, chain_name="other", version=5, members=())
    assert refusal(BASE, bad).code == "immutable_field"
    assert refusal(BASE, dataclasses.replace(bad, chain_name=BASE.chain_name)).code == (
        "bad_version"
    )
