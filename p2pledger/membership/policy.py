"""The rules of a membership update: what may change, and whose approval it needs.

``check_update(base, new)`` decides whether ``new`` may follow ``base`` (the network
in force, version N) and returns the changes; ``required_approvals`` says who must
approve them and ``check_approvals`` whether a set of signing admin keys does.

The policy (docs/membership.md):

================================================  =====================================
change                                            who must approve
================================================  =====================================
add or remove a member, change a role,            the admins of a majority of member
change block limits, add, remove or change a      organisations of ``base``
fund
a member's address, node key, user keys or        an admin of that member (in ``base``)
admin keys
================================================  =====================================

"A majority of member organisations" counts the members of ``base``, voters and
observers alike, each once however many of its admins approve: more than half. A
proposal with several changes needs every approval each change needs. Keys of a
member added by the same proposal need no approval of their own: adding the member
already needs the majority.

What is refused, with ``InvalidUpdate.code`` (checked in this order):
``immutable_field`` (chain name, genesis time), ``bad_version`` (not N+1),
``bad_config`` (a rule of ``checks`` broken, e.g. a bad address), ``collision`` (a
name or key used twice), ``no_voter``, ``config_unchanged``, and
``too_many_conf_changes``: more than one member added, removed or changed in role at
once. Raft changes its configuration one server at a time, so a larger change must
be split; that also means no update can remove a majority of the voters at once.

Pure: networks and keys in, changes, requirements or exceptions out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from p2pledger.crypto import PublicKey
from p2pledger.membership.changes import Change, ChangeKind, diff_networks
from p2pledger.membership.checks import ProblemKind, network_problems
from p2pledger.membership.errors import InsufficientApprovals, InvalidUpdate
from p2pledger.membership.model import Network

__all__ = [
    "CONF_CHANGES",
    "MAJORITY_CHANGES",
    "MEMBER_CHANGES",
    "UPDATE_CODES",
    "Requirement",
    "approving_members",
    "check_approvals",
    "check_update",
    "immutable_differences",
    "majority_of",
    "required_approvals",
]

#: Changes that need the admins of a majority of member organisations.
MAJORITY_CHANGES: Final = frozenset(
    {
        ChangeKind.MEMBER_ADDED,
        ChangeKind.MEMBER_REMOVED,
        ChangeKind.ROLE_CHANGED,
        ChangeKind.LIMITS_CHANGED,
        ChangeKind.FUND_ADDED,
        ChangeKind.FUND_REMOVED,
        ChangeKind.FUND_ISSUERS_CHANGED,
    }
)
#: Changes that need an admin of the member they concern.
MEMBER_CHANGES: Final = frozenset(
    {
        ChangeKind.ADDRESS_CHANGED,
        ChangeKind.NODE_KEY_ROTATED,
        ChangeKind.USERS_ADDED,
        ChangeKind.USERS_REVOKED,
        ChangeKind.ADMINS_ADDED,
        ChangeKind.ADMINS_REVOKED,
    }
)
#: Changes to Raft's configuration (voters and learners), at most one per update.
CONF_CHANGES: Final = frozenset(
    {ChangeKind.MEMBER_ADDED, ChangeKind.MEMBER_REMOVED, ChangeKind.ROLE_CHANGED}
)
#: Every ``InvalidUpdate.code`` of ``check_update``, in the order they are checked.
UPDATE_CODES: Final = (
    "immutable_field",
    "bad_version",
    "bad_config",
    "collision",
    "no_voter",
    "config_unchanged",
    "too_many_conf_changes",
)


def majority_of(n: int) -> int:
    """The smallest number that is more than half of ``n``."""
    return n // 2 + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    """Who must approve: the admins of a majority of member organisations (when
    ``needs_majority``), and an admin of each member in ``members``."""

    needs_majority: bool
    members: frozenset[str]

    def describe(self, base: Network) -> str:
        """One line, e.g. "admins of a majority of member organisations (2 of 3) and
        an admin of bank-a"."""
        parts = []
        if self.needs_majority:
            n = len(base.members)
            parts.append(f"admins of a majority of member organisations ({majority_of(n)} of {n})")
        if self.members:
            parts.append("an admin of " + ", ".join(sorted(self.members)))
        return " and ".join(parts) or "no approval"


def required_approvals(base: Network, changes: Iterable[Change]) -> Requirement:
    """Whose approval ``changes`` (from ``base``) need, by the policy table."""
    majority = False
    members: set[str] = set()
    for change in changes:
        if change.kind in MAJORITY_CHANGES:
            majority = True
        # the keys of a member the same proposal adds need only the majority
        elif change.kind in MEMBER_CHANGES and base.member(change.member or "") is not None:
            members.add(change.member or "")
    return Requirement(needs_majority=majority, members=frozenset(members))


def approving_members(base: Network, signers: Iterable[PublicKey]) -> frozenset[str]:
    """The members of ``base`` one of whose admins is among ``signers``."""
    return frozenset(m.name for key in signers if (m := base.member_by_admin(key)) is not None)


def check_approvals(base: Network, changes: Sequence[Change], signers: Iterable[PublicKey]) -> None:
    """Raise ``InsufficientApprovals`` unless admins among ``signers`` meet the policy
    for ``changes``. Keys that are no admin of ``base`` count for nothing (refusing
    them is the caller's job); several admins of one member count once."""
    need = required_approvals(base, changes)
    orgs = approving_members(base, signers)
    missing_own = sorted(need.members - orgs)
    n = len(base.members)
    short = need.needs_majority and len(orgs) < majority_of(n)
    if not missing_own and not short:
        return
    parts = []
    if short:
        waiting = sorted(m.name for m in base.members if m.name not in orgs)
        parts.append(
            f"{len(orgs)} of {n} member organisations approve, need {majority_of(n)} "
            f"(a majority) for {_majority_reason(changes)}; no approval yet from the "
            f"admins of {', '.join(waiting)}"
        )
    if missing_own:
        parts.append(
            f"missing an approval by an admin of {', '.join(missing_own)} "
            "(a change to that member's own address, node key, admins or users)"
        )
    approved = ", ".join(sorted(orgs)) or "nobody"
    missing = sorted(
        {*missing_own, *(m.name for m in base.members if short and m.name not in orgs)}
    )
    raise InsufficientApprovals(
        f"too few approvals: {'; '.join(parts)} (approved so far by: {approved})", missing
    )


def _majority_reason(changes: Sequence[Change]) -> str:
    kinds = {c.kind for c in changes}
    words = []
    if kinds & {ChangeKind.MEMBER_ADDED, ChangeKind.MEMBER_REMOVED}:
        words.append("adding or removing a member")
    if ChangeKind.ROLE_CHANGED in kinds:
        words.append("changing a role")
    if ChangeKind.LIMITS_CHANGED in kinds:
        words.append("changing block limits")
    if kinds & {ChangeKind.FUND_ADDED, ChangeKind.FUND_REMOVED, ChangeKind.FUND_ISSUERS_CHANGED}:
        words.append("changing funds")
    return ", ".join(words)


def immutable_differences(base: Network, new: Network) -> list[str]:
    """What ``new`` changes of what may never change: the chain's name, genesis time."""
    out = []
    if new.chain_name != base.chain_name:
        out.append(f"the chain name is {base.chain_name!r}, not {new.chain_name!r}")
    if new.genesis_time_ms != base.genesis_time_ms:
        out.append(f"the genesis time is {base.genesis_time_ms} ms, not {new.genesis_time_ms} ms")
    return out


def check_update(base: Network, new: Network) -> tuple[Change, ...]:
    """The changes from ``base`` to ``new``; raise ``InvalidUpdate`` if ``new`` may not
    follow ``base`` (see the module docstring for the codes and their order)."""
    fixed = immutable_differences(base, new)
    if fixed:
        raise InvalidUpdate(
            "immutable_field", "; ".join(fixed) + ": they never change after genesis"
        )
    if new.version != base.version + 1:
        raise InvalidUpdate(
            "bad_version",
            f"the proposed network has version {new.version}, but the membership in force "
            f"is version {base.version}: an update makes version {base.version + 1}",
        )
    problems = network_problems(new)
    for kind, code in (
        (ProblemKind.MALFORMED, "bad_config"),
        (ProblemKind.COLLISION, "collision"),
        (ProblemKind.NO_VOTER, "no_voter"),
    ):
        if any(p.kind is kind for p in problems):
            noun = "problem" if len(problems) == 1 else "problems"
            listed = "; ".join(str(p) for p in problems)
            raise InvalidUpdate(code, f"the proposed network has {len(problems)} {noun}: {listed}")
    changes = diff_networks(base, new)
    if not changes:
        raise InvalidUpdate(
            "config_unchanged",
            f"the proposed network is the same as membership version {base.version}",
        )
    conf = [c for c in changes if c.kind in CONF_CHANGES]
    if len(conf) > 1:
        who = ", ".join(sorted({c.member or "?" for c in conf}))
        raise InvalidUpdate(
            "too_many_conf_changes",
            f"the update adds, removes or changes the role of {len(conf)} members at once "
            f"({who}); Raft changes its configuration one server at a time: split it into "
            "one proposal per member",
        )
    return changes
