"""Deterministic CBOR (RFC 8949 §4.2.1): the only module that imports cbor2.

Everything p2pledger signs or hashes is encoded here, so the bytes are reproducible
by any CBOR library. The value model is an allow-list: ``int`` (64-bit), ``bytes``,
``str``, ``bool``, ``None``, ``list`` and ``dict`` with ``str`` keys. No floats, no
tags. With only text-string map keys, cbor2's canonical key order (shortest first,
then bytewise) is exactly RFC 8949's bytewise order of the encoded keys.

Decoding is defensive: the size is checked before parsing, nesting depth is capped,
indefinite lengths, duplicate keys and tags are refused, and the bytes must be the
deterministic encoding of what they decode to.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from p2pledger.errors import (
    DuplicateKey,
    EncodedTooLarge,
    IndefiniteLength,
    MalformedInput,
    NestingTooDeep,
    NonCanonical,
    TrailingBytes,
    TruncatedInput,
    UnknownTag,
    UnsupportedType,
)

__all__ = ["DEFAULT_LIMITS", "CodecLimits", "Value", "decode", "encode"]

#: A value of the protocol's data model (see the module docstring).
Value = Any

INT_MIN: Final = -(2**64)
INT_MAX: Final = 2**64 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CodecLimits:
    """Bounds on what ``decode`` accepts; configurable per use."""

    max_size: int = 1 << 20
    max_depth: int = 16

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.max_depth < 1:
            raise ValueError("codec limits must be positive")


DEFAULT_LIMITS: Final = CodecLimits()


def encode(value: Value, *, limits: CodecLimits = DEFAULT_LIMITS) -> bytes:
    """Encode ``value`` deterministically; refuse values outside the data model."""
    try:
        # Maps already in canonical key order (the usual case: the protocol builds
        # its maps in that order) need no sorting, and the plain encoding is then
        # the canonical one, several times quicker.
        ordered = _check_value(value, depth=1, limits=limits)
        data: bytes = cbor2.dumps(value) if ordered else cbor2.dumps(value, canonical=True)
    except UnicodeEncodeError as exc:  # a str with lone surrogates has no UTF-8 form
        raise UnsupportedType(f"text is not encodable as UTF-8 ({exc.reason})") from exc
    if len(data) > limits.max_size:
        raise EncodedTooLarge(f"encoding is {len(data)} bytes, more than {limits.max_size}")
    return data


def decode(data: bytes, *, limits: CodecLimits = DEFAULT_LIMITS) -> Value:
    """Decode one canonical item that fills ``data`` exactly; raise a CodecError if not."""
    if len(data) > limits.max_size:
        raise EncodedTooLarge(f"input is {len(data)} bytes, more than {limits.max_size}")
    if not data:
        raise TruncatedInput("input is empty")
    tags = _RefuseAllTags()
    try:
        value = cbor2.loads(
            data,
            semantic_decoders=tags,
            tag_hook=_refuse_tag_hook,
            max_depth=limits.max_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except cbor2.CBORDecodeEOF as exc:
        raise TruncatedInput(f"input ends in the middle of an item ({exc})") from exc
    except cbor2.CBORDecodeError as exc:
        raise _classify(exc, tags) from exc
    except RecursionError as exc:  # pragma: no cover - max_depth catches this first
        raise NestingTooDeep(f"nesting deeper than {limits.max_depth}") from exc
    _check_value(value, depth=1, limits=limits, decoded=True)
    # The value's maps are in canonical key order (checked above), so the plain
    # encoding, which keeps that order and is minimal in every length, is the
    # canonical one: and it is several times quicker than re-sorting.
    again: bytes = cbor2.dumps(value)
    if again != data:
        if data.startswith(again):
            raise TrailingBytes(f"{len(data) - len(again)} bytes after the end of the item")
        raise NonCanonical("bytes are not the deterministic encoding of their value")
    return value


class _TagRefused(Exception):
    """Raised inside cbor2 when it meets any tag; unwrapped by ``_classify``."""


class _RefuseAllTags(Mapping[int, Any]):
    """A semantic-decoder table that answers every tag with a refusal."""

    def __init__(self) -> None:
        self.seen: int | None = None

    def __getitem__(self, tag: int) -> Any:
        self.seen = tag

        def refuse(*_: object) -> None:
            raise _TagRefused(tag)

        return refuse

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _refuse_tag_hook(_decoder: object, tag: Any) -> None:
    raise _TagRefused(getattr(tag, "tag", None))


def _classify(exc: Exception, tags: _RefuseAllTags) -> Exception:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, _TagRefused):
        return UnknownTag(f"CBOR tag {cause.args[0]} is not part of the protocol")
    text = str(exc)
    # cbor2 has no distinct exception classes for these; its messages are stable and
    # this is the one adapter that translates them. The duplicate-key message quotes
    # the key, which the sender chooses, so it is matched first: a repeated key named
    # "indefinite" must not pass for an indefinite-length item.
    if "Duplicate map key" in text:
        return DuplicateKey(text)
    if "nesting depth" in text:
        return NestingTooDeep(text)
    if "indefinite" in text:
        return IndefiniteLength(text)
    if tags.seen is not None:
        return UnknownTag(f"CBOR tag {tags.seen} is not part of the protocol")
    return MalformedInput(text)


#: Exact types that need no further check (subclasses take the slow path below).
_LEAF_TYPES: Final = frozenset({bytes, str, bool, type(None)})


#: Key sequences already judged, and whether they are in canonical order.
_KEY_ORDER: dict[tuple[str, ...], bool] = {}
_KEY_ORDER_MAX: Final = 4096


def _in_canonical_order(keys: tuple[str, ...]) -> bool:
    """RFC 8949 §4.2.1 for text keys: shorter encodings first, then bytewise."""
    known = _KEY_ORDER.get(keys)
    if known is None:
        ranked = [(len(e), e) for e in (k.encode() for k in keys)]
        known = all(a < b for a, b in itertools.pairwise(ranked))
        if len(_KEY_ORDER) >= _KEY_ORDER_MAX:
            _KEY_ORDER.clear()  # keys are the sender's choice: keep the memo bounded
        _KEY_ORDER[keys] = known
    return known


def _check_value(value: Value, *, depth: int, limits: CodecLimits, decoded: bool = False) -> bool:
    """Refuse what is outside the data model; say whether every map's keys are in
    canonical order. ``decoded``: the value came from bytes, and a map out of order
    is refused as non-canonical."""
    # Every encode and decode walks its value, so the exact built-in types (all that
    # decoding produces) are dispatched on ``type`` first, leaves of a container
    # without a call; anything else goes through ``_check_other``.
    if depth > limits.max_depth:
        raise NestingTooDeep(f"nesting deeper than {limits.max_depth}")
    kind = type(value)
    if kind in _LEAF_TYPES:
        return True
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:
            raise UnsupportedType(f"integer {value} is outside the 64-bit CBOR range")
        return True
    ordered = True
    if kind is dict:
        for key in value:
            if type(key) is not str:
                _check_key(key)
                ordered = False  # (a str subclass: leave the order to cbor2)
        if ordered and len(value) > 1 and not _in_canonical_order(tuple(value)):
            if decoded:
                raise NonCanonical("map keys are not in canonical order")
            ordered = False
        items = value.values()
    elif kind is list:
        items = value
    else:
        _check_other(value, depth=depth, limits=limits)
        return False
    if depth >= limits.max_depth and items:
        raise NestingTooDeep(f"nesting deeper than {limits.max_depth}")
    for item in items:
        if type(item) not in _LEAF_TYPES and not _check_value(
            item, depth=depth + 1, limits=limits, decoded=decoded
        ):
            ordered = False
    return ordered


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise UnsupportedType(f"map key {key!r} is not a text string")


def _check_other(value: Value, *, depth: int, limits: CodecLimits) -> None:
    """Subclasses of the data model's types (an ``IntEnum``, a ``str`` subclass):
    checked as their base type; anything else is refused."""
    if isinstance(value, bool | bytes | str):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise UnsupportedType(f"integer {value} is outside the 64-bit CBOR range")
        return
    if isinstance(value, list):
        for item in value:
            _check_value(item, depth=depth + 1, limits=limits)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_key(key)
            _check_value(item, depth=depth + 1, limits=limits)
        return
    raise UnsupportedType(f"{type(value).__name__} is not in the protocol's data model")
