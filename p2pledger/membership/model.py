"""Who takes part in a chain: members, their roles and keys, and the block limits.

Pure data: ``Network`` is what a network.toml describes once it has been checked
(see ``config`` and ``checks``), and what the genesis block and later membership
updates record on the ledger. ``to_value``/``from_value`` give its canonical CBOR
data model; ``to_json`` the API's view of it (keys as hex).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from p2pledger.crypto import PublicKey
from p2pledger.errors import SchemaError


class Role(enum.StrEnum):
    """A member's part in ordering: voters elect the leader and form quorums;
    observers receive every block but do not vote."""

    VOTER = "voter"
    OBSERVER = "observer"


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One institution: its node identity, where to reach it, and its people's keys."""

    name: str
    node_key: PublicKey
    address: str
    role: Role
    admins: tuple[PublicKey, ...] = ()
    users: tuple[PublicKey, ...] = ()

    def to_value(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node_key": self.node_key.raw,
            "address": self.address,
            "role": self.role.value,
            "admins": [k.raw for k in self.admins],
            "users": [k.raw for k in self.users],
        }

    @classmethod
    def from_value(cls, value: Any) -> Member:
        v = _require_map(value, "member")
        try:
            return cls(
                name=_require(v, "name", str),
                node_key=PublicKey(_require(v, "node_key", bytes)),
                address=_require(v, "address", str),
                role=Role(_require(v, "role", str)),
                admins=tuple(PublicKey(k) for k in _require(v, "admins", list)),
                users=tuple(PublicKey(k) for k in _require(v, "users", list)),
            )
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"malformed member: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Fund:
    """A named fund and the user keys authorized to issue units into it."""

    name: str
    issuers: tuple[PublicKey, ...]

    def to_value(self) -> dict[str, Any]:
        return {"name": self.name, "issuers": [k.raw for k in self.issuers]}

    @classmethod
    def from_value(cls, value: Any) -> Fund:
        v = _require_map(value, "fund")
        try:
            return cls(
                name=_require(v, "name", str),
                issuers=tuple(PublicKey(k) for k in _require(v, "issuers", list)),
            )
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"malformed fund: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockLimits:
    """When the leader cuts a block: by count, by bytes, or after the batch timeout."""

    max_transactions: int = 500
    max_bytes: int = 2 * 1024 * 1024
    #: A transaction waits at most this long for its block under light load. 50 ms keeps
    #: commit latency's median under 100 ms at half the sustainable rate (make bench:
    #: 84 ms at 1,500 tx/s, against 172 ms with 200 ms) and costs no throughput: under
    #: load blocks fill by count first.
    batch_timeout_ms: int = 50

    def to_value(self) -> dict[str, Any]:
        return {
            "max_transactions": self.max_transactions,
            "max_bytes": self.max_bytes,
            "batch_timeout_ms": self.batch_timeout_ms,
        }

    @classmethod
    def from_value(cls, value: Any) -> BlockLimits:
        v = _require_map(value, "block limits")
        return cls(
            max_transactions=_require(v, "max_transactions", int),
            max_bytes=_require(v, "max_bytes", int),
            batch_timeout_ms=_require(v, "batch_timeout_ms", int),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    """A chain's membership in force: name, genesis time, limits and members.

    ``version`` counts membership updates applied on the ledger (0 at genesis).
    """

    chain_name: str
    genesis_time_ms: int
    limits: BlockLimits
    members: tuple[Member, ...]
    funds: tuple[Fund, ...] = ()
    version: int = 0
    _by_name: dict[str, Member] = field(init=False, repr=False, compare=False)
    _by_node_key: dict[bytes, Member] = field(init=False, repr=False, compare=False)
    _by_admin: dict[bytes, Member] = field(init=False, repr=False, compare=False)
    _users: frozenset[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {m.name: m for m in self.members})
        object.__setattr__(self, "_by_node_key", {m.node_key.raw: m for m in self.members})
        by_admin = {k.raw: m for m in reversed(self.members) for k in m.admins}
        object.__setattr__(self, "_by_admin", by_admin)
        users = frozenset(k.raw for m in self.members for k in m.users)
        object.__setattr__(self, "_users", users)

    def fund(self, name: str) -> Fund | None:
        return next((f for f in self.funds if f.name == name), None)

    def member(self, name: str) -> Member | None:
        return self._by_name.get(name)

    def member_by_node_key(self, key: PublicKey | bytes) -> Member | None:
        raw = key.raw if isinstance(key, PublicKey) else key
        return self._by_node_key.get(raw)

    def is_voter(self, key: PublicKey | bytes) -> bool:
        m = self.member_by_node_key(key)
        return m is not None and m.role is Role.VOTER

    def is_user(self, key: PublicKey | bytes) -> bool:
        """True when ``key`` is a registered user key of some member."""
        return (key.raw if isinstance(key, PublicKey) else key) in self._users

    def member_by_admin(self, key: PublicKey | bytes) -> Member | None:
        """The member whose admin ``key`` is (the first, should a key be listed twice)."""
        return self._by_admin.get(key.raw if isinstance(key, PublicKey) else key)

    def is_admin(self, key: PublicKey | bytes) -> bool:
        """True when ``key`` is an admin key of some member."""
        return self.member_by_admin(key) is not None

    @property
    def voters(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.role is Role.VOTER)

    def to_value(self) -> dict[str, Any]:
        return {
            "chain_name": self.chain_name,
            "genesis_time_ms": self.genesis_time_ms,
            "limits": self.limits.to_value(),
            "members": [m.to_value() for m in self.members],
            "funds": [f.to_value() for f in self.funds],
            "version": self.version,
        }

    def to_json(self) -> dict[str, Any]:
        """``to_value`` with every key as lowercase hex: the API's JSON of a network."""
        out: dict[str, Any] = _hex_keys(self.to_value())
        return out

    @classmethod
    def from_value(cls, value: Any) -> Network:
        v = _require_map(value, "network")
        return cls(
            chain_name=_require(v, "chain_name", str),
            genesis_time_ms=_require(v, "genesis_time_ms", int),
            limits=BlockLimits.from_value(v.get("limits")),
            members=tuple(Member.from_value(m) for m in _require(v, "members", list)),
            funds=tuple(Fund.from_value(f) for f in _require(v, "funds", list)),
            version=_require(v, "version", int),
        )


def _hex_keys(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_hex_keys(v) for v in value]
    if isinstance(value, dict):
        return {k: _hex_keys(v) for k, v in value.items()}
    return value


def _require_map(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SchemaError(f"{what} is not a map")
    return value


def _require(v: dict[str, Any], key: str, kind: type) -> Any:
    item = v.get(key)
    if not isinstance(item, kind) or (kind is int and isinstance(item, bool)):
        raise SchemaError(f"field {key!r} is missing or not of type {kind.__name__}")
    return item


def keys_of(members: Iterable[Member]) -> set[bytes]:
    """Every node, admin and user key the members hold (to detect collisions)."""
    out: set[bytes] = set()
    for m in members:
        out.add(m.node_key.raw)
        out.update(k.raw for k in m.admins)
        out.update(k.raw for k in m.users)
    return out
