"""Deterministic CBOR (p2pledger.codec): round trips, determinism, and every refusal.

Adversarial inputs are written out byte by byte (hex with a comment), so each test
states exactly which rule of RFC 8949 §4.2 or of the protocol's allow-list it breaks.
"""

from __future__ import annotations

import random
import struct
import tracemalloc
from typing import Any

import cbor2
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from p2pledger import codec
from p2pledger.codec import DEFAULT_LIMITS, INT_MAX, INT_MIN, CodecLimits
from p2pledger.errors import (
    CodecError,
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

# Derandomized: the same examples on every run and every machine.
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=150)

# --- the data model as a hypothesis strategy ----------------------------------------

ints = st.integers(min_value=INT_MIN, max_value=INT_MAX)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    # the edges of each CBOR argument width, where shortest-form bugs live
    st.sampled_from([23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, INT_MAX, -24, -25]),
    st.sampled_from([-257, -(2**32), -(2**32) - 1, INT_MIN]),
    st.binary(max_size=40),
    st.text(max_size=30),
)
keys = st.text(max_size=10)


def values(depth: int = 5) -> st.SearchStrategy[Any]:
    """Values of the data model nested at most ``depth`` levels (a scalar is one)."""
    if depth <= 1:
        return scalars
    inner = values(depth - 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
    )


def strict_equal(a: Any, b: Any) -> bool:
    """Equality that tells True from 1 and keeps types (``==`` does neither)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def reorder(value: Any, rng: random.Random) -> Any:
    """The same value with every map's insertion order shuffled."""
    if isinstance(value, list):
        return [reorder(v, rng) for v in value]
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: reorder(v, rng) for k, v in items}
    return value


def nested_lists(levels: int, inner: Any) -> Any:
    for _ in range(levels):
        inner = [inner]
    return inner


# --- round trips and determinism ---------------------------------------------------


@PROPERTY
@given(values())
def test_round_trip(value: Any) -> None:
    data = codec.encode(value)
    back = codec.decode(data)
    assert strict_equal(back, value)
    assert codec.encode(back) == data


@PROPERTY
@given(values(), st.randoms(use_true_random=False))
def test_encoding_ignores_dict_insertion_order(value: Any, rng: random.Random) -> None:
    assert codec.encode(reorder(value, rng)) == codec.encode(value)


@PROPERTY
@given(values(), st.randoms(use_true_random=False))
def test_decoding_accepts_a_map_order_only_if_canonical(value: Any, rng: random.Random) -> None:
    # Any order of the same maps, encoded as given: decode takes it exactly when it is
    # the canonical encoding, and otherwise names it non-canonical.
    data = cbor2.dumps(reorder(value, rng))
    if data == codec.encode(value):
        assert strict_equal(codec.decode(data), value)
    else:
        with pytest.raises(NonCanonical):
            codec.decode(data)


@PROPERTY
@given(st.dictionaries(keys, scalars, min_size=2, max_size=12))
def test_map_keys_in_bytewise_order_of_their_encodings(value: dict[str, Any]) -> None:
    # RFC 8949 §4.2.1: keys sorted by the bytewise lexicographic order of their
    # deterministic encodings (for text keys: shorter first, then by UTF-8 bytes).
    decoded = codec.decode(codec.encode(value))
    assert list(decoded) == sorted(value, key=codec.encode)


# Published examples, RFC 8949 Appendix A (the subset inside the allow-list).
RFC8949_APPENDIX_A = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (bytes.fromhex("01020304"), "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    (
        {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
        "a56161614161626142616361436164614461656145",
    ),
]


@pytest.mark.parametrize(("value", "hex_"), RFC8949_APPENDIX_A)
def test_rfc8949_appendix_a_examples(value: Any, hex_: str) -> None:
    assert codec.encode(value).hex() == hex_
    assert strict_equal(codec.decode(bytes.fromhex(hex_)), value)


def test_integer_range_edges() -> None:
    for n in (INT_MIN, INT_MAX):
        assert codec.decode(codec.encode(n)) == n
    for n in (INT_MIN - 1, INT_MAX + 1):
        with pytest.raises(UnsupportedType):
            codec.encode(n)


# --- refusals: one test per failure class ------------------------------------------


def test_empty_input() -> None:
    with pytest.raises(TruncatedInput):
        codec.decode(b"")


@PROPERTY
@given(values(), st.data())
def test_truncated_input(value: Any, data: st.DataObject) -> None:
    encoded = codec.encode(value)
    assume(len(encoded) > 1)  # a one-byte item has no non-empty strict prefix
    cut = data.draw(st.integers(min_value=1, max_value=len(encoded) - 1))
    with pytest.raises(TruncatedInput):
        codec.decode(encoded[:cut])


@pytest.mark.parametrize(
    "hex_",
    [
        "19",  # uint with a 2-byte argument, argument missing
        "1a0000",  # uint with a 4-byte argument, 2 of 4 present
        "4301",  # byte string of 3, 1 byte present
        "6261",  # text string of 2, 1 byte present
        "8301",  # array of 3, 1 item present
        "a26161",  # map of 2, first key present
    ],
)
def test_truncated_input_examples(hex_: str) -> None:
    with pytest.raises(TruncatedInput):
        codec.decode(bytes.fromhex(hex_))


@PROPERTY
@given(values(), st.binary(min_size=1, max_size=8))
def test_trailing_bytes(value: Any, extra: bytes) -> None:
    with pytest.raises(TrailingBytes):
        codec.decode(codec.encode(value) + extra)


def test_trailing_bytes_after_complete_map() -> None:
    with pytest.raises(TrailingBytes):
        codec.decode(bytes.fromhex("a0") + bytes.fromhex("a0"))  # two items, not one


def _head(major: int, length: int) -> bytes:
    """A CBOR head with an 8-byte argument: the largest lengths a peer can declare."""
    return bytes([major << 5 | 27]) + struct.pack(">Q", length)


@pytest.mark.parametrize("length", [2**63, 2**64 - 1, 2**32])
@pytest.mark.parametrize(
    ("major", "present"),
    [
        (2, b"ab"),  # byte string
        (3, b"ab"),  # text string
        (4, b"\x01\x02"),  # array
        (5, b"\x61a\x01\x61b\x02"),  # map with two distinct keys present
    ],
    ids=["bytes", "text", "array", "map"],
)
def test_huge_declared_length_fails_fast_without_allocating(
    major: int, present: bytes, length: int
) -> None:
    data = _head(major, length) + present
    tracemalloc.start()
    try:
        with pytest.raises(TruncatedInput):
            codec.decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"decoding {len(data)} bytes allocated {peak} bytes"


def test_huge_declared_length_nested_in_an_array() -> None:
    with pytest.raises(TruncatedInput):
        codec.decode(b"\x82" + _head(2, 2**63) + b"ab")


@pytest.mark.parametrize("max_depth", [1, 2, 3, 8, DEFAULT_LIMITS.max_depth])
def test_nesting_depth_limit(max_depth: int) -> None:
    limits = CodecLimits(max_depth=max_depth)
    # A scalar is one level and each enclosing array one more.
    deepest = nested_lists(max_depth - 1, 1)
    assert codec.decode(codec.encode(deepest, limits=limits), limits=limits) == deepest
    too_deep = nested_lists(max_depth, 1)
    with pytest.raises(NestingTooDeep):
        codec.encode(too_deep, limits=limits)
    with pytest.raises(NestingTooDeep):
        codec.decode(b"\x81" * max_depth + b"\x01", limits=limits)
    with pytest.raises(NestingTooDeep):  # the same through maps: {"a": {"a": ... 1}}
        codec.decode(b"\xa1\x61a" * max_depth + b"\x01", limits=limits)


def test_very_deep_nesting_is_refused_without_recursion_error() -> None:
    with pytest.raises(NestingTooDeep):
        codec.decode(b"\x81" * 100_000 + b"\x01")


@pytest.mark.parametrize(
    "hex_",
    [
        "9f01ff",  # [_ 1]
        "bf616101ff",  # {_ "a": 1}
        "5f4101ff",  # (_ h'01')
        "7f6161ff",  # (_ "a")
        "819f01ff",  # [[_ 1]]
    ],
)
def test_indefinite_length(hex_: str) -> None:
    with pytest.raises(IndefiniteLength):
        codec.decode(bytes.fromhex(hex_))


@pytest.mark.parametrize(
    "hex_",
    [
        "c11a514b67b0",  # 1(1363896240): epoch date/time (RFC 8949 Appendix A)
        "c074323031332d30332d32315432303a30343a30305a",  # 0("2013-03-21T20:04:00Z")
        "c249010000000000000000",  # 2(h'010000000000000000'): bignum 2**64
        "d9d9f701",  # 55799(1): the self-described CBOR magic number
        "d9ffff01",  # 65535(1): a tag number the protocol never defines
        "dbfffffffffffffffe01",  # 18446744073709551614(1): unassigned
        "81c11a514b67b0",  # inside an array
        "a16161c11a514b67b0",  # inside a map value
    ],
)
def test_unknown_tag(hex_: str) -> None:
    with pytest.raises(UnknownTag):
        codec.decode(bytes.fromhex(hex_))


@pytest.mark.parametrize("key", ["a", "", "indefinite", "nesting depth", "Duplicate"])
def test_duplicate_map_key(key: str) -> None:
    # Keys named after other failures' messages must still be reported as duplicates.
    entry = codec.encode(key)
    with pytest.raises(DuplicateKey):
        codec.decode(b"\xa2" + entry + b"\x01" + entry + b"\x02")


@pytest.mark.parametrize(
    "hex_",
    [
        "1801",  # 1 with a 1-byte argument
        "190001",  # 1 with a 2-byte argument
        "1a00000001",  # 1 with a 4-byte argument
        "1b0000000000000001",  # 1 with an 8-byte argument
        "1817",  # 23, which fits in the initial byte
        "1900ff",  # 255, which fits in one byte
        "3800",  # -1 with a 1-byte argument
        "3900ff",  # -256 with a 2-byte argument
    ],
)
def test_non_canonical_integer(hex_: str) -> None:
    with pytest.raises(NonCanonical):
        codec.decode(bytes.fromhex(hex_))


@pytest.mark.parametrize(
    "hex_",
    [
        "a2616201616102",  # {"b": 1, "a": 2}: bytewise order is "a" first
        "a262616101616202",  # {"aa": 1, "b": 2}: shorter key "b" sorts first
        "81a2616201616102",  # the same, nested in an array
    ],
)
def test_non_canonical_map_key_order(hex_: str) -> None:
    with pytest.raises(NonCanonical):
        codec.decode(bytes.fromhex(hex_))


@pytest.mark.parametrize(
    "hex_",
    [
        "580101",  # h'01' with its length in a 1-byte argument
        "59000101",  # h'01' with its length in a 2-byte argument
        "780161",  # "a" with its length in a 1-byte argument
        "980101",  # [1] with its length in a 1-byte argument
        "b801616101",  # {"a": 1} with its length in a 1-byte argument
        "a178016101",  # {"a": 1} with the key's length in a 1-byte argument
    ],
)
def test_non_shortest_length(hex_: str) -> None:
    with pytest.raises(NonCanonical):
        codec.decode(bytes.fromhex(hex_))


@pytest.mark.parametrize(
    "hex_",
    [
        "f93c00",  # 1.0 as a half float
        "fa47c35000",  # 100000.0 as a single float
        "fb3ff199999999999a",  # 1.1 as a double
        "f97e00",  # NaN
        "f97c00",  # Infinity
        "f0",  # simple(16)
        "f8ff",  # simple(255)
        "f7",  # undefined
        "a10101",  # {1: 1}: an integer map key
        "a1416101",  # {h'61': 1}: a byte-string map key
        "a18001",  # {[]: 1}: an array map key
        "a1f601",  # {null: 1}
    ],
)
def test_decode_refuses_values_outside_the_allow_list(hex_: str) -> None:
    with pytest.raises(UnsupportedType):
        codec.decode(bytes.fromhex(hex_))


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        float("nan"),
        (1, 2),
        {1, 2},
        bytearray(b"x"),
        {1: "int key"},
        {b"k": "bytes key"},
        {"ok": [1, 2.0]},
        "\ud800",  # a lone surrogate has no UTF-8 encoding
        {"\udfff": 1},
        object(),
    ],
    ids=repr,
)
def test_encode_refuses_values_outside_the_allow_list(value: Any) -> None:
    with pytest.raises(UnsupportedType):
        codec.encode(value)


def test_oversize_input() -> None:
    limits = CodecLimits(max_size=16)
    fits = codec.encode(b"x" * 15)  # 16 bytes: head + 15
    assert len(fits) == 16
    assert codec.decode(fits, limits=limits) == b"x" * 15
    with pytest.raises(EncodedTooLarge):
        codec.decode(codec.encode(b"x" * 16), limits=limits)
    with pytest.raises(EncodedTooLarge):
        codec.encode(b"x" * 16, limits=limits)
    # The size is checked before anything is parsed, so even garbage is "too large".
    with pytest.raises(EncodedTooLarge):
        codec.decode(b"\xff" * 17, limits=limits)


@pytest.mark.parametrize(
    "hex_",
    [
        "62c328",  # a lead byte followed by a non-continuation byte
        "62c0af",  # an overlong encoding of "/"
        "63eda080",  # an encoded UTF-16 surrogate (U+D800)
        "61ff",  # a byte that never appears in UTF-8
        "a162c32801",  # invalid UTF-8 in a map key
    ],
)
def test_invalid_utf8(hex_: str) -> None:
    with pytest.raises(MalformedInput):
        codec.decode(bytes.fromhex(hex_))


@pytest.mark.parametrize(
    "hex_",
    [
        "ff",  # a lone "break"
        "1c",  # reserved additional information 28
        "5e",  # reserved additional information 30
        "f818",  # simple value 24 in two-byte form (RFC 8949 §3.3: not well-formed)
    ],
)
def test_malformed_input(hex_: str) -> None:
    with pytest.raises(MalformedInput):
        codec.decode(bytes.fromhex(hex_))


def test_codec_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CodecLimits(max_size=0)
    with pytest.raises(ValueError):
        CodecLimits(max_depth=0)


# --- nothing but CodecError, whatever the bytes -------------------------------------


@settings(derandomize=True, database=None, deadline=None, max_examples=600)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_codec_errors(data: bytes) -> None:
    try:
        value = codec.decode(data)
    except CodecError:
        return
    # Whatever is accepted is canonical: it encodes back to exactly the input.
    assert codec.encode(value) == data


@settings(derandomize=True, database=None, deadline=None, max_examples=300)
@given(values(), st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=4))
def test_mutated_encodings_raise_only_codec_errors(
    value: Any, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(codec.encode(value))
    for position, byte in edits:
        data[position % len(data)] = byte
    try:
        back = codec.decode(bytes(data))
    except CodecError:
        return
    assert codec.encode(back) == bytes(data)
