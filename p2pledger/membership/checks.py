"""The rules a network must keep, shared by network.toml and membership updates.

Why here: a network reaches the ledger two ways, as a network.toml an admin wrote
(``config`` parses it) and as the network inside a membership-update proposal (the
state machine decodes it from CBOR). Both must be refused for the same faults with
the same words, so the rules live once, below both: names, addresses, limits, keys
used twice, fund issuers, at least one voter. ``config`` calls the single checks
while it reads a file (so each problem has the file's key path); ``network_problems``
runs all of them over a decoded ``Network``, with the same key paths.

Pure: values in, problems out.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Final

from p2pledger.crypto import PublicKey
from p2pledger.membership.address import AddressError, parse_address
from p2pledger.membership.model import Network, Role

__all__ = [
    "EMPTY_ISSUERS",
    "EMPTY_MEMBERS",
    "INT_MAX",
    "NAME_PATTERN",
    "NO_VOTER",
    "KeyUse",
    "KeyUses",
    "NetworkProblem",
    "ProblemKind",
    "address_problem",
    "claim_name",
    "issuer_problem",
    "name_problem",
    "network_problems",
    "quote",
    "range_problem",
]

NAME_PATTERN: Final = r"[a-z0-9][a-z0-9-]{0,62}"
_NAME: Final = re.compile(NAME_PATTERN)
#: Integers must fit the signed 64-bit range TOML promises and CBOR encodes.
INT_MAX: Final = 2**63 - 1
_SHOWN_CHARS: Final = 100

EMPTY_MEMBERS: Final = "the list is empty; add at least one [[members]] table"
NO_VOTER: Final = 'no member has role = "voter"; at least one voter is needed to order blocks'
EMPTY_ISSUERS: Final = "the list is empty; name at least one user key that may issue"


def quote(text: str) -> str:
    """``text`` in double quotes, escaped, and shortened when very long."""
    shown = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."
    return json.dumps(shown, ensure_ascii=False)


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid chain, member or fund name, or None if it is."""
    if _NAME.fullmatch(name):
        return None
    return (
        f"{quote(name)} is not a valid name: use 1 to 63 lowercase letters, digits "
        "and hyphens, starting with a letter or digit"
    )


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a ``host:port`` address, or None if it is."""
    try:
        parse_address(address)
    except AddressError as exc:
        return f"{quote(address)} is not a valid host:port address: {exc}"
    return None


def range_problem(value: int, *, minimum: int = 1) -> str | None:
    """Why ``value`` is outside ``minimum`` .. the 64-bit maximum, or None."""
    if value < minimum:
        must = "positive" if minimum == 1 else f"at least {minimum}"
        return f"must be {must}, got {value}"
    if value > INT_MAX:
        return f"{value} is too large; the maximum is {INT_MAX}"
    return None


def claim_name(names: dict[str, str], kind: str, name: str, path: str) -> str | None:
    """Record that ``name`` (of a ``kind``: "member", "fund") is used at ``path``;
    the problem if it already was."""
    first = names.get(name)
    if first is not None:
        return f"{kind} name {quote(name)} is already used by {first}"
    names[name] = path
    return None


@dataclass(frozen=True, slots=True)
class KeyUse:
    """Where a key appears (a key path) and as what: "node", "admin" or "user"."""

    path: str
    kind: str


class KeyUses:
    """Where each key first appears, so that a second use can say where the first is."""

    def __init__(self) -> None:
        self.first: dict[bytes, KeyUse] = {}

    def claim(self, key: PublicKey, use: KeyUse) -> str | None:
        """Record ``use`` of ``key``; the problem if the key is already used."""
        first = self.first.get(key.raw)
        if first is not None:
            return (
                f"key {key.hex} is already used as the {first.kind} key at {first.path}; "
                "every node, admin and user key must be different"
            )
        self.first[key.raw] = use
        return None


def issuer_problem(key: PublicKey, where: str, seen: dict[bytes, str], uses: KeyUses) -> str | None:
    """Why ``key``, listed at ``where`` as a fund issuer, is not acceptable there:
    listed twice (``seen`` maps issuers so far to their paths), or not a user key."""
    use = uses.first.get(key.raw)
    problem = None
    if key.raw in seen:
        problem = f"issuer {key.hex} is listed twice (also at {seen[key.raw]})"
    elif use is None:
        problem = (
            f"issuer {key.hex} is not a user key of any member; add it to a member's users first"
        )
    elif use.kind != "user":
        problem = (
            f"issuer {key.hex} is the {use.kind} key at {use.path}, not a user key; "
            "fund issuers must be user keys"
        )
    seen.setdefault(key.raw, where)
    return problem


class ProblemKind(enum.StrEnum):
    """What sort of rule a problem breaks (a membership update's refusal code)."""

    MALFORMED = "malformed"
    COLLISION = "collision"
    NO_VOTER = "no_voter"


@dataclass(frozen=True, slots=True)
class NetworkProblem:
    """One rule a network breaks: where (a network.toml key path) and why."""

    kind: ProblemKind
    path: str
    reason: str

    def __str__(self) -> str:
        return f"[{self.path}] {self.reason}" if self.path else self.reason


def network_problems(network: Network) -> list[NetworkProblem]:
    """Every rule ``network`` breaks, in network.toml order; empty when it is sound.

    Exactly what ``config.parse_network`` checks of a file once its syntax and
    types are right, so a network without problems always writes to a network.toml
    that loads back equal.
    """
    out: list[NetworkProblem] = []

    def add(kind: ProblemKind, path: str, reason: str | None) -> None:
        if reason is not None:
            out.append(NetworkProblem(kind, path, reason))

    malformed, collision = ProblemKind.MALFORMED, ProblemKind.COLLISION
    add(malformed, "chain.name", name_problem(network.chain_name))
    add(malformed, "chain.genesis_time", range_problem(network.genesis_time_ms, minimum=0))
    add(malformed, "chain.version", range_problem(network.version, minimum=0))
    for field, value in network.limits.to_value().items():
        add(malformed, f"limits.{field}", range_problem(value))
    if not network.members:
        add(malformed, "members", EMPTY_MEMBERS)
    names: dict[str, str] = {}
    uses = KeyUses()
    for i, m in enumerate(network.members):
        at = f"members[{i}]"
        add(malformed, f"{at}.name", name_problem(m.name))
        add(collision, f"{at}.name", claim_name(names, "member", m.name, at))
        node = f"{at}.node_key"
        add(collision, node, uses.claim(m.node_key, KeyUse(node, "node")))
        add(malformed, f"{at}.address", address_problem(m.address))
        for kind, keys in (("admin", m.admins), ("user", m.users)):
            for j, public in enumerate(keys):
                where = f"{at}.{kind}s[{j}]"
                add(collision, where, uses.claim(public, KeyUse(where, kind)))
    if network.members and not any(m.role is Role.VOTER for m in network.members):
        add(ProblemKind.NO_VOTER, "members", NO_VOTER)
    fund_names: dict[str, str] = {}
    for i, f in enumerate(network.funds):
        at = f"funds[{i}]"
        add(malformed, f"{at}.name", name_problem(f.name))
        add(collision, f"{at}.name", claim_name(fund_names, "fund", f.name, at))
        if not f.issuers:
            add(malformed, f"{at}.issuers", EMPTY_ISSUERS)
        seen: dict[bytes, str] = {}
        for j, issuer in enumerate(f.issuers):
            where = f"{at}.issuers[{j}]"
            twice = issuer.raw in seen
            problem = issuer_problem(issuer, where, seen, uses)
            add(collision if twice else malformed, where, problem)
    return out
