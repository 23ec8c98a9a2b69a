"""The checks shared by network.toml and node.toml: names and addresses.

Names of chains, members and funds are short lowercase slugs, so they are safe in
file names, log fields, metric labels and URLs alike. The rules themselves live in
``membership.checks``, which membership updates apply too.
"""

from __future__ import annotations

from p2pledger.config._fields import Table
from p2pledger.membership.checks import NAME_PATTERN, address_problem, name_problem

__all__ = ["NAME_PATTERN", "read_address", "read_name"]


def read_name(t: Table, key: str) -> str | None:
    """A required name: 1 to 63 lowercase letters, digits and hyphens."""
    name = t.string(key)
    if name is None:
        return None
    problem = name_problem(name)
    if problem is not None:
        t.problem(key, problem)
        return None
    return name


def read_address(t: Table, key: str, *, default: str | None = None) -> str | None:
    """A ``host:port`` address, kept as written once it is checked."""
    address = t.string(key, default=default)
    if address is None:
        return None
    problem = address_problem(address)
    if problem is not None:
        t.problem(key, problem)
        return None
    return address
