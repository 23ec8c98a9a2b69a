"""Strict checks of a transaction's ``args``: exact keys, exact types, bounds.

Every failure raises ``Rejected("bad_args", detail)``. Integers never accept ``bool``
(Python's ``True`` is an ``int``, CBOR's is not), and a map with a key too many is
as wrong as one with a key missing, so that a client's typo is never half-applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from p2pledger.state.errors import Rejected

__all__ = [
    "ACCOUNT_SIZE",
    "DIGEST_SIZE",
    "MAX_TEXT",
    "account",
    "digest",
    "exact_keys",
    "positive_int",
    "text",
]

ACCOUNT_SIZE: Final = 32
DIGEST_SIZE: Final = 32
#: The longest memo or description, in characters (code points).
MAX_TEXT: Final = 256

BAD_ARGS: Final = "bad_args"


def exact_keys(args: Mapping[str, Any], keys: frozenset[str]) -> None:
    """Require ``args`` to have exactly ``keys``."""
    if args.keys() != keys:
        missing = sorted(keys - args.keys())
        unknown = sorted(args.keys() - keys)
        raise Rejected(BAD_ARGS, f"missing {missing}, unknown {unknown}")


def text(args: Mapping[str, Any], key: str, max_len: int | None = None) -> str:
    value = args[key]
    if not isinstance(value, str):
        raise Rejected(BAD_ARGS, f"{key!r} must be a string")
    if max_len is not None and len(value) > max_len:
        raise Rejected(BAD_ARGS, f"{key!r} is longer than {max_len} characters")
    return value


def positive_int(args: Mapping[str, Any], key: str) -> int:
    value = args[key]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise Rejected(BAD_ARGS, f"{key!r} must be a positive integer")
    return value


def _fixed_bytes(args: Mapping[str, Any], key: str, size: int) -> bytes:
    value = args[key]
    if not isinstance(value, bytes) or len(value) != size:
        raise Rejected(BAD_ARGS, f"{key!r} must be {size} bytes")
    return value


def account(args: Mapping[str, Any], key: str) -> bytes:
    """An account: a user public key, 32 bytes."""
    return _fixed_bytes(args, key, ACCOUNT_SIZE)


def digest(args: Mapping[str, Any], key: str) -> bytes:
    """A SHA-256 document digest, 32 bytes."""
    return _fixed_bytes(args, key, DIGEST_SIZE)
