"""What a membership update changes: the difference between two networks, as changes.

``diff_networks(old, new)`` lists every change from ``old`` to ``new`` as a ``Change``
(a kind, the member it concerns, and the detail), in a fixed order, so that every
admin reviewing a proposal, and the ledger's history, read the same list:

1. members removed (in ``old``'s order), then members added (in ``new``'s order),
   each followed by its admin and user keys;
2. for each member in both, in ``new``'s order: role, address, node key, admins
   added, admins revoked, users added, users revoked;
3. block limits, field by field;
4. funds removed, funds added, then funds whose issuers changed.

Members are matched by name and funds by name: renaming is removing one and adding
another. The order of members, and of keys within a list, is not a change. The
chain's name and genesis time are not compared here (``policy`` refuses any change
to them) nor is the version (every update bumps it).

``Change.describe`` is the one-line text admins review, e.g.
``+ member bank-d (voter, 10.0.0.4:7401, node key …)``,
``~ bank-a address 1.2.3.4:7401 -> 5.6.7.8:7401``, ``- bank-b user 1234…``. Keys
granted or revoked are shown in full: a reviewer must be able to compare them with
the key the member sent, and a prefix can be forged.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from p2pledger.crypto import PublicKey
from p2pledger.membership.model import Fund, Member, Network

__all__ = ["Change", "ChangeKind", "describe_member", "diff_networks", "founding_changes"]


class ChangeKind(enum.StrEnum):
    """One kind of change to a network; ``policy`` says who must approve each."""

    MEMBER_ADDED = "member_added"
    MEMBER_REMOVED = "member_removed"
    ROLE_CHANGED = "role_changed"
    ADDRESS_CHANGED = "address_changed"
    NODE_KEY_ROTATED = "node_key_rotated"
    USERS_ADDED = "users_added"
    USERS_REVOKED = "users_revoked"
    ADMINS_ADDED = "admins_added"
    ADMINS_REVOKED = "admins_revoked"
    LIMITS_CHANGED = "limits_changed"
    FUND_ADDED = "fund_added"
    FUND_REMOVED = "fund_removed"
    FUND_ISSUERS_CHANGED = "fund_issuers_changed"


_ADDED: Final = frozenset(
    {
        ChangeKind.MEMBER_ADDED,
        ChangeKind.USERS_ADDED,
        ChangeKind.ADMINS_ADDED,
        ChangeKind.FUND_ADDED,
    }
)
_REMOVED: Final = frozenset(
    {
        ChangeKind.MEMBER_REMOVED,
        ChangeKind.USERS_REVOKED,
        ChangeKind.ADMINS_REVOKED,
        ChangeKind.FUND_REMOVED,
    }
)
#: How ``describe`` words each kind after the sign and the member's name.
_WORDS: Final = {
    ChangeKind.MEMBER_ADDED: "member",
    ChangeKind.MEMBER_REMOVED: "member",
    ChangeKind.ROLE_CHANGED: "role",
    ChangeKind.ADDRESS_CHANGED: "address",
    ChangeKind.NODE_KEY_ROTATED: "node key",
    ChangeKind.USERS_ADDED: "user",
    ChangeKind.USERS_REVOKED: "user",
    ChangeKind.ADMINS_ADDED: "admin",
    ChangeKind.ADMINS_REVOKED: "admin",
    ChangeKind.LIMITS_CHANGED: "limits",
    ChangeKind.FUND_ADDED: "fund",
    ChangeKind.FUND_REMOVED: "fund",
    ChangeKind.FUND_ISSUERS_CHANGED: "fund",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One change: its kind, the member it is about (None for limits and funds), and
    the detail (a key, ``old -> new``, or a summary of what was added)."""

    kind: ChangeKind
    member: str | None
    detail: str

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ChangeKind):
            raise TypeError(f"kind must be a ChangeKind, not {self.kind!r}")

    def describe(self) -> str:
        """One line for people: ``+`` added, ``-`` removed or revoked, ``~`` changed."""
        sign = "+" if self.kind in _ADDED else "-" if self.kind in _REMOVED else "~"
        word = _WORDS[self.kind]
        if self.kind in (ChangeKind.MEMBER_ADDED, ChangeKind.MEMBER_REMOVED):
            return f"{sign} member {self.member} ({self.detail})"
        if self.member is None:
            return f"{sign} {word} {self.detail}"
        return f"{sign} {self.member} {word} {self.detail}"


def describe_member(member: Member) -> str:
    """What ``+ member NAME (...)`` shows of a member: role, address, node key."""
    return f"{member.role.value}, {member.address}, node key {member.node_key.hex}"


def diff_networks(old: Network, new: Network) -> tuple[Change, ...]:
    """Every change from ``old`` to ``new``, in the order of the module docstring."""
    out: list[Change] = []
    old_names = {m.name for m in old.members}
    new_names = {m.name for m in new.members}
    for m in old.members:
        if m.name not in new_names:
            detail = f"{m.role.value}, {m.address}"
            out.append(Change(kind=ChangeKind.MEMBER_REMOVED, member=m.name, detail=detail))
    for m in new.members:
        if m.name not in old_names:
            out.append(
                Change(kind=ChangeKind.MEMBER_ADDED, member=m.name, detail=describe_member(m))
            )
            out += _keys(ChangeKind.ADMINS_ADDED, m.name, m.admins)
            out += _keys(ChangeKind.USERS_ADDED, m.name, m.users)
    for m in new.members:
        before = old.member(m.name)
        if before is not None:
            out += _member_changes(before, m)
    out += _limit_changes(old, new)
    out += _fund_changes(old.funds, new.funds)
    return tuple(out)


def founding_changes(network: Network) -> tuple[Change, ...]:
    """The founding network as changes from nothing: its members with their keys, then
    its funds (for the history's version 0)."""
    out: list[Change] = []
    for m in network.members:
        out.append(Change(kind=ChangeKind.MEMBER_ADDED, member=m.name, detail=describe_member(m)))
        out += _keys(ChangeKind.ADMINS_ADDED, m.name, m.admins)
        out += _keys(ChangeKind.USERS_ADDED, m.name, m.users)
    out += _fund_changes((), network.funds)
    return tuple(out)


def _keys(kind: ChangeKind, member: str, keys: Sequence[PublicKey]) -> list[Change]:
    return [Change(kind=kind, member=member, detail=k.hex) for k in keys]


def _missing(keys: Sequence[PublicKey], other: Sequence[PublicKey]) -> list[PublicKey]:
    there = {k.raw for k in other}
    return [k for k in keys if k.raw not in there]


def _member_changes(old: Member, new: Member) -> list[Change]:
    name = new.name
    out: list[Change] = []
    if old.role is not new.role:
        detail = f"{old.role.value} -> {new.role.value}"
        out.append(Change(kind=ChangeKind.ROLE_CHANGED, member=name, detail=detail))
    if old.address != new.address:
        detail = f"{old.address} -> {new.address}"
        out.append(Change(kind=ChangeKind.ADDRESS_CHANGED, member=name, detail=detail))
    if old.node_key != new.node_key:
        detail = f"{old.node_key.short}… -> {new.node_key.hex}"
        out.append(Change(kind=ChangeKind.NODE_KEY_ROTATED, member=name, detail=detail))
    out += _keys(ChangeKind.ADMINS_ADDED, name, _missing(new.admins, old.admins))
    out += _keys(ChangeKind.ADMINS_REVOKED, name, _missing(old.admins, new.admins))
    out += _keys(ChangeKind.USERS_ADDED, name, _missing(new.users, old.users))
    out += _keys(ChangeKind.USERS_REVOKED, name, _missing(old.users, new.users))
    return out


def _limit_changes(old: Network, new: Network) -> list[Change]:
    before, after = old.limits.to_value(), new.limits.to_value()
    return [
        Change(
            kind=ChangeKind.LIMITS_CHANGED, member=None, detail=f"{key} {before[key]} -> {value}"
        )
        for key, value in after.items()
        if before.get(key) != value
    ]


def _fund_changes(old: Sequence[Fund], new: Sequence[Fund]) -> list[Change]:
    before = {f.name: f for f in old}
    after = {f.name: f for f in new}
    out = [
        Change(kind=ChangeKind.FUND_REMOVED, member=None, detail=f.name)
        for f in old
        if f.name not in after
    ]
    for f in new:
        if f.name not in before:
            issuers = ", ".join(k.hex for k in f.issuers)
            detail = f"{f.name} (issuers {issuers})"
            out.append(Change(kind=ChangeKind.FUND_ADDED, member=None, detail=detail))
    for f in new:
        was = before.get(f.name)
        if was is None:
            continue
        added = [f"+{k.hex}" for k in _missing(f.issuers, was.issuers)]
        removed = [f"-{k.hex}" for k in _missing(was.issuers, f.issuers)]
        if added or removed:
            detail = f"{f.name} issuers {' '.join(added + removed)}"
            out.append(Change(kind=ChangeKind.FUND_ISSUERS_CHANGED, member=None, detail=detail))
    return out
