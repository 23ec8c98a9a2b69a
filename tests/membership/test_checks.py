"""``network_problems`` finds what ``config.parse_network`` finds in a file, at the
same key paths and in the same words: the two share one set of rules."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings

from p2pledger.config import network_to_toml
from p2pledger.errors import ConfigError
from p2pledger.membership import BlockLimits, Fund, Network, ProblemKind, Role, network_problems
from tests.factory import TestNetwork, add_member, edit_member, new_member, seeded_key
from tests.test_config import networks

NET = TestNetwork(n=3)
BASE = NET.network


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_a_network_that_loads_has_no_problems(network: Network) -> None:
    assert network_problems(network) == []


def _dup_user(n: Network) -> Network:
    return edit_member(n, "m1", users=(NET.user_keys[0].public_key,))


FAULTS = {
    "bad chain name": (dataclasses.replace(BASE, chain_name="-x"), ProblemKind.MALFORMED),
    "bad member name": (edit_member(BASE, "m1", name="M1"), ProblemKind.MALFORMED),
    "bad address": (edit_member(BASE, "m1", address="[::1"), ProblemKind.MALFORMED),
    "zero limit": (
        dataclasses.replace(BASE, limits=BlockLimits(batch_timeout_ms=0)),
        ProblemKind.MALFORMED,
    ),
    "huge limit": (
        dataclasses.replace(BASE, limits=BlockLimits(max_bytes=2**63)),
        ProblemKind.MALFORMED,
    ),
    "member name twice": (edit_member(BASE, "m1", name="m0"), ProblemKind.COLLISION),
    "user key twice": (_dup_user(BASE), ProblemKind.COLLISION),
    "admin key is a node key": (
        edit_member(BASE, "m2", admins=(NET.node_keys[0].public_key,)),
        ProblemKind.COLLISION,
    ),
    "fund name twice": (
        dataclasses.replace(BASE, funds=BASE.funds * 2),
        ProblemKind.COLLISION,
    ),
    "issuer twice": (
        dataclasses.replace(
            BASE, funds=(Fund(name="relief", issuers=(NET.user_keys[0].public_key,) * 2),)
        ),
        ProblemKind.COLLISION,
    ),
    "issuer no user": (
        dataclasses.replace(
            BASE, funds=(Fund(name="relief", issuers=(seeded_key("x").public_key,)),)
        ),
        ProblemKind.MALFORMED,
    ),
    "issuer an admin": (
        dataclasses.replace(
            BASE, funds=(Fund(name="relief", issuers=(NET.admin_keys[1].public_key,)),)
        ),
        ProblemKind.MALFORMED,
    ),
    "no issuers": (
        dataclasses.replace(BASE, funds=(Fund(name="relief", issuers=()),)),
        ProblemKind.MALFORMED,
    ),
    "no voter": (
        dataclasses.replace(
            BASE, members=tuple(dataclasses.replace(m, role=Role.OBSERVER) for m in BASE.members)
        ),
        ProblemKind.NO_VOTER,
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_the_same_problem_as_network_toml(fault: str) -> None:
    network, kind = FAULTS[fault]
    problems = network_problems(network)
    assert [p.kind for p in problems] == [kind]
    with pytest.raises(ConfigError) as info:
        network_to_toml(network)  # parses what it writes, so runs config's checks
    assert [(p.key, p.reason) for p in info.value.problems] == [
        (p.path, p.reason) for p in problems
    ]


def test_no_members() -> None:
    """(A written network.toml then has no [[members]] at all: a missing-key problem.)"""
    problems = network_problems(dataclasses.replace(BASE, members=(), funds=()))
    assert [(p.kind, p.path) for p in problems] == [(ProblemKind.MALFORMED, "members")]


def test_a_sound_update_has_no_problems() -> None:
    bank, _ = new_member("bank-d", port=7401, role=Role.OBSERVER)
    assert network_problems(add_member(BASE, bank)) == []
