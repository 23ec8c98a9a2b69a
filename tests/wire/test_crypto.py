"""X25519 key exchange, session-key derivation and the counter-nonce AEAD."""

from __future__ import annotations

import random

import pytest

from p2pledger.crypto import aead
from p2pledger.crypto.aead import TAG_SIZE, DecryptionFailed, NonceLimitReached, Opener, Sealer
from p2pledger.crypto.kx import (
    EphemeralKey,
    LowOrderPoint,
    check_public_point,
    derive_session_keys,
    transcript_hash,
)
from p2pledger.errors import LocalError, MalformedKey, RemoteError

P = 2**255 - 19
SMALL_ORDER_U = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    P - 1,
    P,
    P + 1,
]


def small_order_points() -> list[bytes]:
    """Every small-order encoding, with and without the ignored top bit."""
    out = []
    for u in SMALL_ORDER_U:
        raw = u.to_bytes(32, "little")
        out.append(raw)
        out.append(raw[:31] + bytes([raw[31] | 0x80]))
    return out


def key(rng: random.Random) -> EphemeralKey:
    return EphemeralKey(rng.randbytes(32))


def test_shared_secret_agrees() -> None:
    rng = random.Random(1)
    a, b = key(rng), key(rng)
    assert a.shared_secret(b.public) == b.shared_secret(a.public)
    assert "secret" not in repr(a) and a.public.hex() in repr(a)


@pytest.mark.parametrize("point", small_order_points())
def test_small_order_points_are_refused(point: bytes) -> None:
    with pytest.raises(LowOrderPoint) as info:
        check_public_point(point)
    assert isinstance(info.value, RemoteError)
    with pytest.raises(LowOrderPoint):
        key(random.Random(2)).shared_secret(point)


def test_wrong_size_point_is_malformed() -> None:
    with pytest.raises(MalformedKey):
        check_public_point(b"\x09" * 31)


def test_session_keys_depend_on_secret_and_transcript() -> None:
    t1 = transcript_hash(b"a", b"bc")
    t2 = transcript_hash(b"ab", b"c")
    assert t1 != t2  # parts are length-prefixed
    k = derive_session_keys(b"\x01" * 32, t1)
    assert k.dialer_to_listener != k.listener_to_dialer
    assert k != derive_session_keys(b"\x01" * 32, t2)
    assert k != derive_session_keys(b"\x02" * 32, t1)
    assert "secret" in repr(k) and k.dialer_to_listener.hex() not in repr(k)


def test_seal_open_in_order() -> None:
    sealer, opener = Sealer(b"k" * 32), Opener(b"k" * 32)
    frames = [sealer.seal(f"m{i}".encode(), b"ad") for i in range(3)]
    assert len(frames[0]) == 2 + TAG_SIZE
    assert [opener.open(f, b"ad") for f in frames] == [b"m0", b"m1", b"m2"]


def test_tampering_reordering_and_wrong_ad_fail_without_advancing() -> None:
    sealer, opener = Sealer(b"k" * 32), Opener(b"k" * 32)
    first, second = sealer.seal(b"one"), sealer.seal(b"two")
    with pytest.raises(DecryptionFailed):
        opener.open(second)  # out of order
    tampered = bytes([first[0] ^ 1]) + first[1:]
    with pytest.raises(DecryptionFailed):
        opener.open(tampered)
    with pytest.raises(DecryptionFailed):
        opener.open(first, b"other ad")
    with pytest.raises(DecryptionFailed):
        opener.open(b"short")
    assert opener.counter == 0
    assert opener.open(first) == b"one"
    with pytest.raises(DecryptionFailed):
        opener.open(first)  # replayed


def test_sealer_stops_before_a_nonce_repeats() -> None:
    sealer, opener = Sealer(b"k" * 32, limit=2), Opener(b"k" * 32, limit=2)
    frames = [sealer.seal(b"a"), sealer.seal(b"b")]
    with pytest.raises(NonceLimitReached) as info:
        sealer.seal(b"c")
    assert isinstance(info.value, LocalError)
    assert sealer.counter == 2
    for f in frames:
        opener.open(f)
    with pytest.raises(DecryptionFailed):
        opener.open(Sealer(b"k" * 32).seal(b"x"))
    with pytest.raises(ValueError):
        Sealer(b"short")
    with pytest.raises(ValueError):
        Opener(b"k" * 32, limit=0)


def test_fast_path_matches_the_checked_bindings() -> None:
    rng = random.Random(3)
    for size in (0, 1, 250, 65536):
        msg, ad, nonce, k = rng.randbytes(size), rng.randbytes(4), rng.randbytes(24), b"k" * 32
        sealed = aead._encrypt(msg, ad, nonce, k)
        assert sealed == aead._checked_encrypt(msg, ad, nonce, k)
        assert aead._checked_decrypt(sealed, ad, nonce, k) == msg
        assert aead._decrypt(sealed, ad, nonce, k) == msg
        with pytest.raises(DecryptionFailed):
            aead._decrypt(sealed, ad + b"x", nonce, k)
        with pytest.raises(DecryptionFailed):
            aead._checked_decrypt(sealed, ad + b"x", nonce, k)
