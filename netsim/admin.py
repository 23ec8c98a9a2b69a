"""Membership changes as a consortium's admins write them: edits of a network.toml and
the choice of who signs.

A change starts from ``p2pledger config show --toml`` (the membership in force, as a
TOML document), is one of the edits below applied to that document, and becomes a
proposal with ``p2pledger config propose``; the proposal file says which approvals the
policy needs (``required``: a majority of member organisations, and/or the admins of
named members), and ``signers`` picks the members whose admins sign. ``Cluster``
(netsim.cluster) runs the commands; this module only edits documents and reads the
commands' output.

Every edit keeps the file valid for p2pledger: fund issuers must be user keys of a
member, so removing a member or revoking a user key that issues a fund hands the
fund to another user key (the new key of the same member on a revocation, the first
user of the first remaining member on a removal). That is itself a fund change,
which needs the same majority as removing a member does.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ACTIONS",
    "MembershipEditError",
    "Submitted",
    "add_member",
    "member_table",
    "parse_submitted",
    "remove_member",
    "replace_user",
    "set_node_key",
    "set_role",
    "signers",
    "transaction_in",
]

#: What a scenario's membership action may be.
ACTIONS: Final = ("add", "remove", "promote", "demote", "revoke-user", "rotate-key")
ROLES: Final = ("voter", "observer")

_SUBMITTED: Final = re.compile(
    r"membership version (?P<version>\d+) in force from height (?P<height>\d+) "
    r"\(transaction (?P<tx>[0-9a-f]{64})\)"
)
_TX: Final = re.compile(r"\b(?P<tx>[0-9a-f]{64})\b")


class MembershipEditError(ValueError):
    """An edit does not fit the membership document (no such member, already one...)."""


def _members(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    members = doc.get("members")
    if not isinstance(members, list):
        raise MembershipEditError("the membership document has no [[members]]")
    return members


def member_table(doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The ``[[members]]`` table of ``name``."""
    for table in _members(doc):
        if table.get("name") == name:
            return table
    names = ", ".join(str(t.get("name")) for t in _members(doc))
    raise MembershipEditError(f"{name!r} is not a member of the membership in force ({names})")


def add_member(
    doc: dict[str, Any],
    *,
    name: str,
    node_key: str,
    address: str,
    role: str,
    admins: Sequence[str],
    users: Sequence[str],
) -> None:
    """Append member ``name`` (keys as hex) to the membership."""
    if role not in ROLES:
        raise MembershipEditError(f"a role is one of {ROLES}, not {role!r}")
    if any(t.get("name") == name for t in _members(doc)):
        raise MembershipEditError(f"{name} is already a member")
    _members(doc).append(
        {
            "name": name,
            "node_key": node_key,
            "address": address,
            "role": role,
            "admins": list(admins),
            "users": list(users),
        }
    )


def remove_member(doc: dict[str, Any], name: str) -> None:
    """Remove ``name``; a fund it alone issued passes to the first remaining user."""
    table = member_table(doc, name)
    gone = set(table.get("users") or [])
    members = [t for t in _members(doc) if t.get("name") != name]
    doc["members"] = members
    fallback = next((u for t in members for u in t.get("users") or []), None)
    for fund in doc.get("funds") or []:
        issuers = [k for k in fund.get("issuers") or [] if k not in gone]
        if not issuers:
            if fallback is None:
                raise MembershipEditError(
                    f"removing {name} leaves fund {fund.get('name')!r} without an issuer, and "
                    "no other member has a user key"
                )
            issuers = [fallback]
        fund["issuers"] = issuers


def set_role(doc: dict[str, Any], name: str, role: str) -> None:
    """Make ``name`` a voter or an observer."""
    if role not in ROLES:
        raise MembershipEditError(f"a role is one of {ROLES}, not {role!r}")
    table = member_table(doc, name)
    if table.get("role") == role:
        raise MembershipEditError(f"{name} is already a {role}")
    table["role"] = role


def replace_user(doc: dict[str, Any], name: str, old: str, new: str) -> None:
    """Revoke ``name``'s user key ``old`` and register ``new`` in its place, in the
    member's users and among the fund issuers."""
    table = member_table(doc, name)
    users = list(table.get("users") or [])
    if old not in users:
        raise MembershipEditError(f"{old[:12]}… is not a user key of {name}")
    table["users"] = [new if u == old else u for u in users]
    for fund in doc.get("funds") or []:
        fund["issuers"] = [new if k == old else k for k in fund.get("issuers") or []]


def set_node_key(doc: dict[str, Any], name: str, key: str) -> None:
    """Give ``name`` the node key ``key`` (hex): a rotation."""
    table = member_table(doc, name)
    if table.get("node_key") == key:
        raise MembershipEditError(f"{name} already has node key {key[:12]}…")
    table["node_key"] = key


def signers(
    required: Mapping[str, Any], members: Sequence[str], *, prefer: Sequence[str] = ()
) -> list[str]:
    """The members whose admins sign: every member ``required`` names, and with
    ``required["majority"]`` enough others (``prefer`` first, then in order) that more
    than half of ``members`` (the membership in force) have signed."""
    named = required.get("members") or []
    if not isinstance(named, list) or not all(isinstance(m, str) for m in named):
        raise MembershipEditError(f"the proposal's required members are {named!r}")
    unknown = [m for m in named if m not in members]
    if unknown:
        raise MembershipEditError(f"the proposal requires {unknown}, who are not members")
    out = list(dict.fromkeys(named))
    if required.get("majority"):
        need = len(members) // 2 + 1
        for m in [*prefer, *members]:
            if len(out) >= need:
                break
            if m in members and m not in out:
                out.append(m)
    if not out:
        raise MembershipEditError("the proposal requires no approval: it changes nothing")
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitted:
    """What ``config submit`` printed: the version in force from ``height + 1``, the
    height of the block carrying the update (``height``), and its transaction."""

    version: int
    height: int
    tx_id: str


def parse_submitted(text: str) -> Submitted | None:
    """The committed update in ``config submit``'s output, or None."""
    match = _SUBMITTED.search(text)
    if match is None:
        return None
    return Submitted(
        version=int(match["version"]), height=int(match["height"]) - 1, tx_id=match["tx"]
    )


def transaction_in(text: str) -> str | None:
    """The first transaction id (64 hex digits) in a command's output, if any."""
    match = _TX.search(text)
    return None if match is None else match["tx"]
