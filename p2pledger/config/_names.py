"""The checks shared by network.toml and node.toml: names and addresses.

Names of chains, members and funds are short lowercase slugs, so they are safe in
file names, log fields, metric labels and URLs alike.
"""

from __future__ import annotations

import re
from typing import Final

from p2pledger.config._address import AddressError, parse_address
from p2pledger.config._fields import Table, quote

NAME_PATTERN: Final = r"[a-z0-9][a-z0-9-]{0,62}"
_NAME: Final = re.compile(NAME_PATTERN)


def read_name(t: Table, key: str) -> str | None:
    """A required name: 1 to 63 lowercase letters, digits and hyphens."""
    name = t.string(key)
    if name is not None and not _NAME.fullmatch(name):
        t.problem(
            key,
            f"{quote(name)} is not a valid name: use 1 to 63 lowercase letters, digits "
            "and hyphens, starting with a letter or digit",
        )
        return None
    return name


def read_address(t: Table, key: str, *, default: str | None = None) -> str | None:
    """A ``host:port`` address, kept as written once it is checked."""
    address = t.string(key, default=default)
    if address is None:
        return None
    try:
        parse_address(address)
    except AddressError as exc:
        t.problem(key, f"{quote(address)} is not a valid host:port address: {exc}")
        return None
    return address
