"""SecureChannel over in-memory streams, in virtual time where time matters."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pledger.crypto.aead import TAG_SIZE
from p2pledger.wire.channel import SecureChannel
from p2pledger.wire.config import PROTOCOL_VERSION, TransportConfig
from p2pledger.wire.errors import (
    FrameAuthFailed,
    FrameTooLarge,
    HandshakeRefused,
    LocalProtocolError,
    MessageTooLarge,
    RefusalReason,
    SessionExhausted,
    TruncatedFrame,
)
from p2pledger.wire.framing import frame_header
from p2pledger.wire.handshake import Side, encode_hello
from tests import factory
from tests.wire.helpers import channel_pair, connect_pair, handshake

NET = factory.TestNetwork(3)
SMALL = TransportConfig(max_frame_size=1024, receive_burst_bytes=4096)


async def test_messages_both_ways_and_batching() -> None:
    d, l_ = channel_pair(NET, random.Random(1), config=SMALL)
    await connect_pair(d, l_)
    assert d.peer.name == "m1" and l_.peer.name == "m0"
    assert d.transcript == l_.transcript and len(d.transcript) == 32
    await d.send(b"ping")
    assert await l_.receive() == b"ping"
    await l_.send_many([b"a", b"", b"c" * 1024])
    assert [await d.receive() for _ in range(3)] == [b"a", b"", b"c" * 1024]
    stats = l_.statistics()
    assert stats.frames_sent == 3 and stats.writes == 1  # three frames, one write
    await d.aclose()
    with pytest.raises(trio.EndOfChannel):
        await l_.receive()
    with pytest.raises(trio.ClosedResourceError):
        await d.send(b"x")


async def test_too_large_to_send_is_local_and_harmless() -> None:
    d, l_ = channel_pair(NET, random.Random(2), config=SMALL)
    await connect_pair(d, l_)
    with pytest.raises(MessageTooLarge) as info:
        await d.send(b"x" * 1025)
    assert isinstance(info.value, LocalProtocolError)
    await d.send(b"still fine")
    assert await l_.receive() == b"still fine"


async def test_no_handshake_times_out(autojump_clock: trio.testing.MockClock) -> None:
    _, l_ = channel_pair(NET, random.Random(3))
    start = trio.current_time()
    with pytest.raises(HandshakeRefused) as info:
        await l_.do_handshake()
    assert info.value.refusal is RefusalReason.TIMEOUT
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_one_byte_per_second_times_out(autojump_clock: trio.testing.MockClock) -> None:
    rng = random.Random(4)
    client, server = trio.testing.memory_stream_pair()
    listener = SecureChannel(
        server, handshake(Side.LISTENER, NET.node_keys[1], NET, rng), config=TransportConfig()
    )
    hello = encode_hello(PROTOCOL_VERSION, NET.chain_id, rng.randbytes(32))
    start = trio.current_time()

    async def trickle() -> None:
        try:
            for byte in hello:
                await client.send_all(bytes([byte]))
                await trio.sleep(1)
        except trio.BrokenResourceError:
            pass  # the listener gave up and closed

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        with pytest.raises(HandshakeRefused) as info:
            await listener.do_handshake()
        nursery.cancel_scope.cancel()
    assert info.value.refusal is RefusalReason.TIMEOUT
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_wrong_chain_is_refused_on_both_sides() -> None:
    rng = random.Random(5)
    a, b = trio.testing.memory_stream_pair()
    cfg = TransportConfig()
    d = SecureChannel(
        a,
        handshake(
            Side.DIALER,
            NET.node_keys[0],
            NET,
            rng,
            expected=NET.node_keys[1].public_key,
            chain_id=b"\x01" * 32,
        ),
        config=cfg,
    )
    l_ = SecureChannel(b, handshake(Side.LISTENER, NET.node_keys[1], NET, rng), config=cfg)
    reasons = []

    async def run(ch: SecureChannel) -> None:
        with pytest.raises(HandshakeRefused) as info:
            await ch.do_handshake()
        reasons.append(info.value.refusal)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, d)
        nursery.start_soon(run, l_)
    assert reasons == [RefusalReason.WRONG_CHAIN] * 2


async def test_admission_refusal_reaches_the_dialer() -> None:
    d, l_ = channel_pair(NET, random.Random(6))
    outcomes: dict[str, RefusalReason] = {}

    async def run(name: str, ch: SecureChannel, admit: object = None) -> None:
        with pytest.raises(HandshakeRefused) as info:
            await ch.do_handshake(admit)  # type: ignore[arg-type]
        outcomes[name] = info.value.refusal

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "d", d)
        nursery.start_soon(run, "l", l_, lambda member: RefusalReason.DUPLICATE)
    assert outcomes == {"d": RefusalReason.DUPLICATE, "l": RefusalReason.DUPLICATE}


async def test_tampered_frame_breaks_the_channel() -> None:
    d, l_ = channel_pair(NET, random.Random(7), config=SMALL)
    await connect_pair(d, l_)
    header = frame_header(5 + TAG_SIZE)
    sealed = bytearray(d._sealer.seal(b"hello", header))  # type: ignore[union-attr]
    sealed[3] ^= 0x40
    await d.transport_stream.send_all(header + bytes(sealed))
    with pytest.raises(FrameAuthFailed):
        await l_.receive()
    with pytest.raises(trio.BrokenResourceError):
        await l_.receive()


async def test_frame_over_the_maximum_is_refused_from_its_header() -> None:
    d, l_ = channel_pair(NET, random.Random(8), config=SMALL)
    await connect_pair(d, l_)
    await d.transport_stream.send_all(frame_header(1024 + TAG_SIZE + 1))
    with pytest.raises(FrameTooLarge):
        await l_.receive()


async def test_eof_inside_a_frame_is_truncation() -> None:
    d, l_ = channel_pair(NET, random.Random(9), config=SMALL)
    await connect_pair(d, l_)
    await d.transport_stream.send_all(frame_header(40) + b"partial")
    await d.transport_stream.aclose()
    with pytest.raises(TruncatedFrame):
        await l_.receive()


async def test_session_ends_before_the_nonce_repeats() -> None:
    cfg = TransportConfig(session_message_limit=4)
    d, l_ = channel_pair(NET, random.Random(10), config=cfg)
    await connect_pair(d, l_)
    await d.send_many([b"1", b"2", b"3"])  # AUTH used counter 0
    with pytest.raises(SessionExhausted):
        await d.send(b"4")
    with pytest.raises(trio.BrokenResourceError):
        await d.send(b"5")
    assert [await l_.receive() for _ in range(3)] == [b"1", b"2", b"3"]


async def test_misuse_is_local() -> None:
    d, l_ = channel_pair(NET, random.Random(11))
    with pytest.raises(LocalProtocolError):
        await d.send(b"x")
    with pytest.raises(LocalProtocolError):
        await d.receive()
    with pytest.raises(LocalProtocolError):
        _ = d.peer
    await connect_pair(d, l_)
    with pytest.raises(LocalProtocolError):
        await d.do_handshake()


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(data=st.binary(max_size=400))
async def test_random_bytes_are_refused(data: bytes) -> None:
    client, server = trio.testing.memory_stream_pair()
    listener = SecureChannel(
        server,
        handshake(Side.LISTENER, NET.node_keys[1], NET, random.Random(12)),
        config=TransportConfig(handshake_timeout=1.0),
    )
    await client.send_all(data)
    await client.send_eof()
    with pytest.raises(HandshakeRefused) as info:
        await listener.do_handshake()
    assert info.value.refusal in {
        RefusalReason.MALFORMED_HELLO,
        RefusalReason.WRONG_VERSION,
        RefusalReason.WRONG_CHAIN,
        RefusalReason.CLOSED,
    }
