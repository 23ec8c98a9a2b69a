"""network.toml: the one file the whole consortium shares, describing chain and members.

The file is turned into the frozen ``membership.Network`` that genesis is derived from,
so a mistake in it would split the consortium or lock a member out. Every problem is
reported at once, each with its key path and what to change. ``network_to_toml``
writes a network back in the same layout: ``parse_network(network_to_toml(n)) == n``.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Final

import tomli_w

from p2pledger.config._fields import Problems, Table, describe, quote
from p2pledger.config._files import parse_toml, read_text
from p2pledger.config._names import read_address, read_name
from p2pledger.crypto import PublicKey
from p2pledger.errors import ConfigError, ConfigProblem
from p2pledger.membership import BlockLimits, Fund, Member, Network, Role
from p2pledger.membership.checks import (
    EMPTY_ISSUERS,
    EMPTY_MEMBERS,
    NO_VOTER,
    KeyUse,
    KeyUses,
    claim_name,
    issuer_problem,
)

__all__ = ["load_network", "network_to_toml", "parse_network"]

_ROOT_KEYS: Final = ("chain", "limits", "members", "funds")
_CHAIN_KEYS: Final = ("name", "genesis_time", "version")
_LIMIT_KEYS: Final = ("max_transactions", "max_bytes", "batch_timeout_ms")
_MEMBER_KEYS: Final = ("name", "node_key", "address", "role", "admins", "users")
_FUND_KEYS: Final = ("name", "issuers")

_KEY: Final = re.compile(r"[0-9a-f]{64}")
_HEX: Final = re.compile(r"[0-9a-fA-F]*")
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TIME_EXAMPLE: Final = "e.g. genesis_time = 2026-11-01T00:00:00Z"
_GENERATED: Final = "<network_to_toml>"
_HEADER: Final = (
    "# network.toml: the chain and its members, shared by every member of the consortium.\n"
    "# Every member must load the same network: it determines the genesis block and the\n"
    "# chain id. See config/network.example.toml for what each key means.\n"
)


def load_network(path: Path) -> Network:
    """Read and check a network.toml; raise ConfigError listing every problem."""
    problems = Problems(str(path))
    text = read_text(path, problems)
    if text is None:
        raise problems.error()
    return parse_network(text, source=str(path))


def parse_network(text: str, *, source: str) -> Network:
    """Check the text of a network.toml; ``source`` names it in problems."""
    problems = Problems(source)
    data = parse_toml(text, problems)
    network = None if data is None else _read_network(Table(data, "", problems, _ROOT_KEYS))
    if network is None or problems:
        raise problems.error()
    return network


def network_to_toml(network: Network) -> str:
    """The network.toml text of ``network``; ConfigError if it would not load back."""
    chain = tomli_w.dumps({"name": network.chain_name})
    chain += f"genesis_time = {_format_time(network.genesis_time_ms)}\n"
    if network.version:
        chain += f"version = {network.version}\n"
    sections = [
        _HEADER,
        "[chain]\n" + chain,
        "[limits]\n" + tomli_w.dumps(network.limits.to_value()),
    ]
    for m in network.members:
        member = {
            "name": m.name,
            "node_key": m.node_key.hex,
            "address": m.address,
            "role": m.role.value,
            "admins": [k.hex for k in m.admins],
            "users": [k.hex for k in m.users],
        }
        sections.append("[[members]]\n" + tomli_w.dumps(member))
    for f in network.funds:
        fund = {"name": f.name, "issuers": [k.hex for k in f.issuers]}
        sections.append("[[funds]]\n" + tomli_w.dumps(fund))
    text = "\n".join(sections)
    parse_network(text, source=_GENERATED)  # never write a file that would not load
    return text


def _format_time(ms: int) -> str:
    try:
        when = _EPOCH + dt.timedelta(milliseconds=ms)
    except OverflowError as exc:
        problem = ConfigProblem(_GENERATED, "chain.genesis_time", f"{ms} ms is not a date")
        raise ConfigError([problem]) from exc
    spec = "milliseconds" if ms % 1000 else "seconds"
    return when.isoformat(timespec=spec).replace("+00:00", "Z")


def _read_network(root: Table) -> Network | None:
    chain = root.table("chain", _CHAIN_KEYS, required=True)
    name = genesis_ms = version = None
    if chain is not None:
        name = read_name(chain, "name")
        genesis_ms = _read_genesis_time(chain, "genesis_time")
        version = chain.integer("version", default=0, minimum=0)
    limits = _read_limits(root.table("limits", _LIMIT_KEYS))
    keys = KeyUses()
    members = _read_members(root, keys)
    funds = _read_funds(root, keys)
    if root.problems or name is None or genesis_ms is None or version is None or limits is None:
        return None
    return Network(
        chain_name=name,
        genesis_time_ms=genesis_ms,
        limits=limits,
        members=tuple(members),
        funds=tuple(funds),
        version=version,
    )


def _read_genesis_time(t: Table, key: str) -> int | None:
    value = t.raw(key, required=True)
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        unquote = "; write it without quotes" if isinstance(value, str) else ""
        t.problem(key, f"expected a datetime, got {describe(value)}{unquote}, {_TIME_EXAMPLE}")
        return None
    if value.tzinfo is None:
        t.problem(
            key,
            f"datetime {value.isoformat()} has no timezone; add Z for UTC or an offset "
            f"such as +01:00, {_TIME_EXAMPLE}",
        )
        return None
    ms, rest = divmod((value - _EPOCH) // dt.timedelta(microseconds=1), 1000)
    if rest:
        t.problem(key, f"{value.isoformat()} is more precise than the ledger's milliseconds")
        return None
    if ms < 0:
        t.problem(key, f"{value.isoformat()} is before 1970-01-01T00:00:00Z")
        return None
    return int(ms)


def _read_limits(t: Table | None) -> BlockLimits | None:
    if t is None:
        return None
    d = BlockLimits()
    max_transactions = t.integer("max_transactions", default=d.max_transactions)
    max_bytes = t.integer("max_bytes", default=d.max_bytes)
    batch_timeout_ms = t.integer("batch_timeout_ms", default=d.batch_timeout_ms)
    if max_transactions is None or max_bytes is None or batch_timeout_ms is None:
        return None
    return BlockLimits(
        max_transactions=max_transactions, max_bytes=max_bytes, batch_timeout_ms=batch_timeout_ms
    )


def _claim(keys: KeyUses, key: PublicKey, use: KeyUse, problems: Problems) -> bool:
    problem = keys.claim(key, use)
    if problem is not None:
        problems.add(use.path, problem)
    return problem is None


def _parse_key(where: str, text: str, problems: Problems) -> PublicKey | None:
    if _KEY.fullmatch(text):
        return PublicKey.from_hex(text)
    if _KEY.fullmatch(text.lower()):
        problems.add(where, f"{quote(text)} has uppercase hex digits; write keys in lowercase")
    elif _HEX.fullmatch(text):
        problems.add(
            where, f"{quote(text)} has {len(text)} hex digits; a public key has 64 (lowercase)"
        )
    else:
        problems.add(where, f"{quote(text)} is not a public key: expected 64 lowercase hex digits")
    return None


def _read_keys(t: Table, key: str, kind: str, keys: KeyUses) -> tuple[PublicKey, ...]:
    out: list[PublicKey] = []
    for where, text in t.strings(key, required=False):
        public = _parse_key(where, text, t.problems)
        if public is not None and _claim(keys, public, KeyUse(where, kind), t.problems):
            out.append(public)
    return tuple(out)


def _read_role(t: Table) -> Role | None:
    role = t.string("role")
    if role is None:
        return None
    try:
        return Role(role)
    except ValueError:
        t.problem("role", f'{quote(role)} is not a role: use "voter" or "observer"')
        return None


def _read_members(root: Table, keys: KeyUses) -> list[Member]:
    if root.data.get("members") == []:
        root.problem("members", EMPTY_MEMBERS)
    names: dict[str, str] = {}
    roles_read = True
    read = 0
    out: list[Member] = []
    for t in root.tables("members", _MEMBER_KEYS, required=True):
        read += 1
        name = read_name(t, "name")
        if name is not None and (problem := claim_name(names, "member", name, t.path)):
            t.problem("name", problem)
        node_key = None
        key_text = t.string("node_key")
        if key_text is not None:
            node_key = _parse_key(t.where("node_key"), key_text, t.problems)
        if node_key is not None:
            _claim(keys, node_key, KeyUse(t.where("node_key"), "node"), t.problems)
        address = read_address(t, "address")
        role = _read_role(t)
        roles_read = roles_read and role is not None
        admins = _read_keys(t, "admins", "admin", keys)
        users = _read_keys(t, "users", "user", keys)
        if name is None or node_key is None or address is None or role is None:
            continue
        out.append(
            Member(
                name=name, node_key=node_key, address=address, role=role, admins=admins, users=users
            )
        )
    if read and roles_read and not any(m.role is Role.VOTER for m in out):
        root.problem("members", NO_VOTER)
    return out


def _read_funds(root: Table, keys: KeyUses) -> list[Fund]:
    names: dict[str, str] = {}
    out: list[Fund] = []
    for t in root.tables("funds", _FUND_KEYS, required=False):
        name = read_name(t, "name")
        if name is not None and (problem := claim_name(names, "fund", name, t.path)):
            t.problem("name", problem)
        items = t.strings("issuers", required=True)
        if t.data.get("issuers") == []:
            t.problem("issuers", EMPTY_ISSUERS)
        issuers = _read_issuers(t, items, keys)
        if name is not None:
            out.append(Fund(name=name, issuers=issuers))
    return out


def _read_issuers(t: Table, items: list[tuple[str, str]], keys: KeyUses) -> tuple[PublicKey, ...]:
    seen: dict[bytes, str] = {}
    out: list[PublicKey] = []
    for where, text in items:
        key = _parse_key(where, text, t.problems)
        if key is None:
            continue
        problem = issuer_problem(key, where, seen, keys)
        if problem is not None:
            t.problems.add(where, problem)
        else:
            out.append(key)
    return tuple(out)
