"""The sans-I/O handshake: success, each refusal reason, state after errors, fuzzing."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pledger.errors import RemoteError
from p2pledger.wire.config import PROTOCOL_VERSION
from p2pledger.wire.errors import HandshakeRefused, LocalProtocolError, RefusalReason
from p2pledger.wire.handshake import HELLO_SIZE, HandshakeState, Side, encode_hello
from p2pledger.wire.replay import ReplayCache
from tests import factory
from tests.wire.helpers import INTRUDER, BadSigner, handshake, pump
from tests.wire.test_crypto import small_order_points

NET = factory.TestNetwork(3)
D_KEY, L_KEY = NET.node_keys[0], NET.node_keys[1]


def pair(seed: int = 0, **listener_kwargs: object) -> tuple:
    rng = random.Random(seed)
    d = handshake(Side.DIALER, D_KEY, NET, rng, expected=L_KEY.public_key)
    l_ = handshake(Side.LISTENER, L_KEY, NET, rng, **listener_kwargs)  # type: ignore[arg-type]
    return d, l_


def refusal_of(a, b, **kwargs: object) -> tuple[RefusalReason, object]:
    with pytest.raises(HandshakeRefused) as info:
        pump(a, b, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, RemoteError)
    failed = a if a.state is HandshakeState.FAILED else b
    assert failed.state is HandshakeState.FAILED
    return info.value.refusal, failed


def test_success_gives_matching_sessions() -> None:
    d, l_ = pair()
    pump(d, l_)
    assert d.state is l_.state is HandshakeState.DONE
    rd, rl = d.result(), l_.result()
    assert rd.peer.name == "m1" and rl.peer.name == "m0"
    assert rd.transcript == rl.transcript
    assert rl.opener.open(rd.sealer.seal(b"ping")) == b"ping"
    assert rd.opener.open(rl.sealer.seal(b"pong")) == b"pong"
    assert rd.leftover == rl.leftover == b""


def test_byte_by_byte_and_early_data_is_left_over() -> None:
    d, l_ = pair(1)
    d_hello = d.data_to_send()
    for i in range(len(d_hello)):
        l_.receive_data(d_hello[i : i + 1])
    l_out = l_.data_to_send()  # listener HELLO + AUTH
    for i in range(len(l_out)):
        d.receive_data(l_out[i : i + 1])
    assert d.state is HandshakeState.AWAIT_VERDICT
    l_.receive_data(d.data_to_send())
    l_.accept()
    d.receive_data(l_.data_to_send() + b"early app bytes")
    assert d.state is HandshakeState.DONE
    assert d.result().leftover == b"early app bytes"


def test_identities_never_travel_in_the_clear_and_dialer_waits() -> None:
    d, l_ = pair(2)
    first = d.data_to_send()
    assert len(first) == HELLO_SIZE  # the dialer says nothing more before L proves itself
    l_.receive_data(first)
    wire = first + l_.data_to_send()
    d.receive_data(wire[HELLO_SIZE : 2 * HELLO_SIZE])  # L's HELLO only
    assert d.data_to_send() == b""
    d.receive_data(wire[2 * HELLO_SIZE :])
    wire += d.data_to_send()
    for key in (D_KEY, L_KEY):
        assert key.public_key.raw not in wire


def test_wrong_chain() -> None:
    d, l_ = pair(3, chain_id=b"\x07" * 32)
    reason, _ = refusal_of(d, l_)
    assert reason is RefusalReason.WRONG_CHAIN


def test_wrong_protocol_version() -> None:
    d, l_ = pair(4, version=PROTOCOL_VERSION + 1)
    reason, _ = refusal_of(d, l_)
    assert reason is RefusalReason.WRONG_VERSION


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.1\r\n", b"P2PX", b"\x16\x03\x01"])
def test_not_a_handshake(junk: bytes) -> None:
    _, l_ = pair(5)
    with pytest.raises(HandshakeRefused) as info:
        l_.receive_data(junk)
    assert info.value.refusal is RefusalReason.MALFORMED_HELLO


@pytest.mark.parametrize("point", small_order_points())
def test_low_order_ephemeral_key(point: bytes) -> None:
    _, l_ = pair(6)
    with pytest.raises(HandshakeRefused) as info:
        l_.receive_data(encode_hello(PROTOCOL_VERSION, NET.chain_id, point))
    assert info.value.refusal is RefusalReason.LOW_ORDER_POINT
    assert l_.data_to_send() == b""


def test_replayed_transcript_is_refused_by_cache_and_by_keys() -> None:
    rng = random.Random(7)
    cache = ReplayCache(16)
    d = handshake(Side.DIALER, D_KEY, NET, rng, expected=L_KEY.public_key)
    l_ = handshake(Side.LISTENER, L_KEY, NET, rng, cache=cache)
    recorded = bytearray()
    for _ in range(4):
        out = d.data_to_send()
        recorded += out
        if out:
            l_.receive_data(out)
        if l_.state is HandshakeState.NEED_VERDICT:
            l_.accept()
        back = l_.data_to_send()
        if back and d.state is not HandshakeState.DONE:
            d.receive_data(back)
    assert d.state is l_.state is HandshakeState.DONE
    # An attacker replays everything the dialer sent to a new listener session.
    again = handshake(Side.LISTENER, L_KEY, NET, rng, cache=cache)
    with pytest.raises(HandshakeRefused) as info:
        again.receive_data(bytes(recorded))
    assert info.value.refusal is RefusalReason.REPLAYED
    # Without the cache, the fresh listener key makes the recorded AUTH undecryptable.
    fresh = handshake(Side.LISTENER, L_KEY, NET, rng, cache=ReplayCache(16))
    with pytest.raises(HandshakeRefused) as info:
        fresh.receive_data(bytes(recorded))
    assert info.value.refusal is RefusalReason.MALFORMED_AUTH


def test_reflected_hello_is_refused() -> None:
    _, l_ = pair(8)
    own = l_.data_to_send()
    with pytest.raises(HandshakeRefused) as info:
        l_.receive_data(own)
    assert info.value.refusal is RefusalReason.REPLAYED


def test_bad_signature() -> None:
    rng = random.Random(9)
    liar = BadSigner(D_KEY.seed())
    d = handshake(Side.DIALER, liar, NET, rng, expected=L_KEY.public_key)
    l_ = handshake(Side.LISTENER, L_KEY, NET, rng)
    reason, failed = refusal_of(d, l_)
    assert reason is RefusalReason.BAD_SIGNATURE and failed is l_


def test_listener_bad_signature_is_caught_before_the_dialer_says_who_it_is() -> None:
    rng = random.Random(10)
    d = handshake(Side.DIALER, D_KEY, NET, rng, expected=L_KEY.public_key)
    l_ = handshake(Side.LISTENER, BadSigner(L_KEY.seed()), NET, rng)
    reason, failed = refusal_of(d, l_)
    assert reason is RefusalReason.BAD_SIGNATURE and failed is d
    assert d.data_to_send() == b""


def test_unknown_key() -> None:
    rng = random.Random(11)
    d = handshake(Side.DIALER, INTRUDER, NET, rng, expected=L_KEY.public_key)
    l_ = handshake(Side.LISTENER, L_KEY, NET, rng)
    reason, failed = refusal_of(d, l_)
    assert reason is RefusalReason.UNKNOWN_KEY and failed is l_


def test_removed_member() -> None:
    removed = NET.node_keys[2]
    rng = random.Random(12)
    smaller = factory.TestNetwork(2).network  # m2 is gone
    d = handshake(Side.DIALER, removed, NET, rng, expected=L_KEY.public_key)
    l_ = handshake(
        Side.LISTENER, L_KEY, NET, rng, network=smaller, removed={removed.public_key.raw}
    )
    reason, _ = refusal_of(d, l_)
    assert reason is RefusalReason.REMOVED_MEMBER


def test_dialer_reaches_another_member() -> None:
    rng = random.Random(13)
    d = handshake(Side.DIALER, D_KEY, NET, rng, expected=NET.node_keys[2].public_key)
    l_ = handshake(Side.LISTENER, L_KEY, NET, rng)
    reason, failed = refusal_of(d, l_)
    assert reason is RefusalReason.UNEXPECTED_PEER and failed is d


def test_listener_refuses_a_non_member_listener_for_the_dialer() -> None:
    rng = random.Random(14)
    d = handshake(Side.DIALER, D_KEY, NET, rng, expected=L_KEY.public_key)
    l_ = handshake(Side.LISTENER, INTRUDER, NET, rng)
    reason, failed = refusal_of(d, l_)
    assert reason is RefusalReason.UNKNOWN_KEY and failed is d


def test_self_connection() -> None:
    rng = random.Random(15)
    d = handshake(Side.DIALER, L_KEY, NET, rng, expected=L_KEY.public_key)
    l_ = handshake(Side.LISTENER, L_KEY, NET, rng)
    reason, _ = refusal_of(d, l_)
    assert reason is RefusalReason.SELF_CONNECTION


def test_duplicate_verdict_reaches_the_dialer() -> None:
    d, l_ = pair(16)
    reason, _ = refusal_of(d, l_, accept=False)
    assert reason is RefusalReason.DUPLICATE
    assert d.state is l_.state is HandshakeState.FAILED


def test_tampered_auth_frame() -> None:
    d, l_ = pair(17)
    l_.receive_data(d.data_to_send())
    out = bytearray(l_.data_to_send())
    out[-1] ^= 1
    with pytest.raises(HandshakeRefused) as info:
        d.receive_data(bytes(out))
    assert info.value.refusal is RefusalReason.MALFORMED_AUTH


def test_oversized_handshake_frame() -> None:
    d, l_ = pair(18)
    d.receive_data(l_.data_to_send()[:HELLO_SIZE])
    l_.receive_data(d.data_to_send())
    with pytest.raises(HandshakeRefused) as info:
        d.receive_data(b"\x00\x10\x00\x00")
    assert info.value.refusal is RefusalReason.MALFORMED_AUTH


def test_local_errors_leave_the_state_unchanged() -> None:
    d, l_ = pair(19)
    for call in (l_.accept, d.result, lambda: d.peer, lambda: l_.reject(RefusalReason.DUPLICATE)):
        with pytest.raises(LocalProtocolError):
            call()
    assert d.state is l_.state is HandshakeState.AWAIT_HELLO
    pump(d, l_)
    with pytest.raises(LocalProtocolError):
        d.receive_data(b"x")
    with pytest.raises(LocalProtocolError):
        d.accept()
    assert d.state is HandshakeState.DONE
    with pytest.raises(LocalProtocolError):
        handshake(Side.DIALER, D_KEY, NET, random.Random(0))  # no expected peer
    with pytest.raises(LocalProtocolError):
        handshake(Side.LISTENER, D_KEY, NET, random.Random(0), chain_id=b"short")


def test_failed_handshake_refuses_more_input() -> None:
    _, l_ = pair(20)
    with pytest.raises(HandshakeRefused):
        l_.receive_data(b"nope")
    assert isinstance(l_.refusal, HandshakeRefused)
    with pytest.raises(LocalProtocolError):
        l_.receive_data(b"more")
    assert l_.state is HandshakeState.FAILED


@settings(max_examples=400, derandomize=True, database=None)
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_are_refused_or_awaited(data: bytes, with_magic: bool) -> None:
    if with_magic:
        data = encode_hello(PROTOCOL_VERSION, NET.chain_id, b"\x09" * 32)[:6] + data
    _, l_ = pair(21)
    try:
        l_.receive_data(data)
    except HandshakeRefused:
        assert l_.state is HandshakeState.FAILED
        return
    assert l_.state in (HandshakeState.AWAIT_HELLO, HandshakeState.AWAIT_AUTH)
