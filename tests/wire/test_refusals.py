"""Every refusal case against a running node, each refused within its timeout while the
node keeps serving its members."""

from __future__ import annotations

import dataclasses
import random

import pytest
import trio

from p2pledger.crypto.aead import TAG_SIZE
from p2pledger.wire.channel import SecureChannel
from p2pledger.wire.config import PROTOCOL_VERSION
from p2pledger.wire.errors import HandshakeRefused, RefusalReason
from p2pledger.wire.framing import frame_header
from p2pledger.wire.handshake import MAGIC, Handshake, Side, encode_hello
from p2pledger.wire.messages import Message, encode_message
from tests.wire.cluster import FAST, Cluster, Node, cluster, dial_raw, exchange, wait_for
from tests.wire.helpers import INTRUDER, BadSigner

LIMIT = FAST.handshake_timeout + 0.5  # refusal deadline, with slack for a loaded machine


async def members_up(c: Cluster) -> tuple[Node, Node]:
    m0, m1 = c["m0"], c["m1"]
    with trio.fail_after(5):
        await m0.manager.wait_connected(["m1"])
    return m0, m1


async def refused(node: Node, reason: str, *, count: int = 1) -> float:
    """Wait until ``node`` has refused ``count`` handshakes for ``reason``; return how
    many it has refused (a test asserts that it is no more than it caused)."""

    def seen() -> float:
        return node.metric("handshake_refusals_total", reason=reason, side="listener")

    await wait_for(lambda: seen() >= count, timeout=LIMIT)
    return seen()


async def closed_by_node(stream: trio.abc.Stream, *, within: float = LIMIT + 1) -> float:
    """Read until the node closes the connection; return the time it did."""
    with trio.fail_after(within):
        try:
            while await stream.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass
    return trio.current_time()


async def test_non_member_key() -> None:
    async with cluster(3, start=2) as c:
        m0, m1 = await members_up(c)
        with pytest.raises(HandshakeRefused) as info:
            await dial_raw(m0.port, INTRUDER, c.net)
        assert info.value.refusal is RefusalReason.CLOSED  # told nothing
        await refused(m0, "unknown_key")
        await exchange(m0.manager, m1.manager)


async def test_wrong_chain() -> None:
    async with cluster(3, start=2) as c:
        m0, m1 = await members_up(c)
        with pytest.raises(HandshakeRefused) as info:
            await dial_raw(m0.port, c.net.node_keys[2], c.net, chain_id=b"\x01" * 32)
        assert info.value.refusal is RefusalReason.WRONG_CHAIN
        await refused(m0, "wrong_chain")
        await exchange(m0.manager, m1.manager)


async def test_wrong_protocol_version() -> None:
    async with cluster(2) as c:
        m0, m1 = await members_up(c)
        stream = await trio.open_tcp_stream("127.0.0.1", m0.port)
        await stream.send_all(encode_hello(PROTOCOL_VERSION + 1, c.chain_id, b"\x09" * 32))
        await closed_by_node(stream)
        assert await refused(m0, "wrong_protocol_version") == 1
        await exchange(m0.manager, m1.manager)
        await stream.aclose()


async def test_low_order_point() -> None:
    async with cluster(2) as c:
        m0, m1 = await members_up(c)
        stream = await trio.open_tcp_stream("127.0.0.1", m0.port)
        await stream.send_all(encode_hello(PROTOCOL_VERSION, c.chain_id, bytes(32)))
        await closed_by_node(stream)
        assert await refused(m0, "low_order_point") == 1
        await exchange(m0.manager, m1.manager)
        await stream.aclose()


class Recorder(trio.abc.Stream):
    """A stream that keeps a copy of everything sent through it."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.sent = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def send_eof(self) -> None:  # pragma: no cover - not used
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_replayed_transcript() -> None:
    async with cluster(3, start=2) as c:
        m0, m1 = await members_up(c)
        recorder = Recorder(await trio.open_tcp_stream("127.0.0.1", m0.port))
        hs = Handshake(
            side=Side.DIALER,
            identity=c.net.node_keys[2],
            chain_id=c.chain_id,
            network=c.net.network,
            expected_peer=c.net.node_keys[0].public_key,
        )
        genuine = SecureChannel(recorder, hs, config=FAST)
        await genuine.do_handshake()
        await genuine.aclose()
        replay = await trio.open_tcp_stream("127.0.0.1", m0.port)
        await replay.send_all(bytes(recorder.sent))
        await closed_by_node(replay)
        assert await refused(m0, "replayed_transcript") == 1
        await exchange(m0.manager, m1.manager)
        await replay.aclose()


async def test_tampered_frame_closes_the_connection() -> None:
    async with cluster(3, start=2) as c:
        m0, m1 = await members_up(c)
        ch = await dial_raw(m0.port, c.net.node_keys[2], c.net)
        header = frame_header(10 + TAG_SIZE)
        sealed = bytearray(ch._sealer.seal(b"0123456789", header))  # type: ignore[union-attr]
        sealed[5] ^= 1
        await ch.transport_stream.send_all(header + bytes(sealed))
        await closed_by_node(ch.transport_stream)
        assert m0.metric("disconnects_total", peer="m2", reason="frame_auth_failed") == 1
        await exchange(m0.manager, m1.manager)


async def test_frame_longer_than_the_maximum() -> None:
    async with cluster(3, start=2) as c:
        m0, m1 = await members_up(c)
        ch = await dial_raw(m0.port, c.net.node_keys[2], c.net)
        await ch.transport_stream.send_all(frame_header(FAST.max_frame_size + TAG_SIZE + 1))
        await closed_by_node(ch.transport_stream)
        assert m0.metric("disconnects_total", peer="m2", reason="frame_too_large") == 1
        await exchange(m0.manager, m1.manager)


async def test_malformed_message_closes_and_unknown_type_is_ignored() -> None:
    async with cluster(3, start=2) as c:
        m0, m1 = await members_up(c)
        ch = await dial_raw(m0.port, c.net.node_keys[2], c.net)
        limits = m0.manager._limits
        await ch.send(encode_message(Message(type="future.kind", body={"v": 2}), limits=limits))
        await ch.send(encode_message(Message(type="test.gossip", body={"ok": 1}), limits=limits))
        with trio.fail_after(2):
            got = await m0.manager.receive()
        assert got.peer == "m2" and got.message.body == {"ok": 1}
        assert m0.metric("unknown_messages_total", peer="m2") == 1
        await ch.send(b"\xa1\x64type")  # authentic frame, truncated CBOR
        await closed_by_node(ch.transport_stream)
        assert m0.metric("disconnects_total", peer="m2", reason="malformed_message") == 1
        await exchange(m0.manager, m1.manager)


async def test_random_bytes() -> None:
    # a handshake timer far beyond a loaded machine's stall: every refusal below must
    # come from the bytes themselves (CI-like load once starved the node for 0.5 s)
    patient = dataclasses.replace(FAST, handshake_timeout=10.0)
    rng = random.Random(2024)
    async with cluster(2, config=patient) as c:
        m0, m1 = await members_up(c)
        cases = 20
        for i in range(cases):
            prefix = MAGIC if i % 3 == 0 else b""
            data = prefix + rng.randbytes(rng.randrange(0, 300))
            stream = await trio.open_tcp_stream("127.0.0.1", m0.port)
            await stream.send_all(data)
            await stream.send_eof()
            await closed_by_node(stream, within=patient.handshake_timeout + 1)
            await stream.aclose()
        total = sum(
            m0.metric("handshake_refusals_total", reason=r.value, side="listener")
            for r in RefusalReason
        )
        assert total == cases
        assert m0.metric("handshake_refusals_total", reason="timeout", side="listener") == 0
        await exchange(m0.manager, m1.manager)


async def test_a_connection_that_sends_nothing() -> None:
    async with cluster(2) as c:
        m0, m1 = await members_up(c)
        start = trio.current_time()  # before the node can accept, so before its timer
        stream = await trio.open_tcp_stream("127.0.0.1", m0.port)
        async with trio.open_nursery() as nursery:
            closed: list[float] = []

            async def watch() -> None:
                closed.append(await closed_by_node(stream))

            nursery.start_soon(watch)
            await exchange(m0.manager, m1.manager)  # served while the idler hangs
        assert FAST.handshake_timeout <= closed[0] - start < LIMIT
        await refused(m0, "timeout")
        await stream.aclose()


async def test_a_handshake_sent_one_byte_at_a_time_too_slowly() -> None:
    async with cluster(2) as c:
        m0, m1 = await members_up(c)
        start = trio.current_time()
        stream = await trio.open_tcp_stream("127.0.0.1", m0.port)
        hello = encode_hello(PROTOCOL_VERSION, c.chain_id, random.Random(5).randbytes(32))
        async with trio.open_nursery() as nursery:

            async def trickle() -> None:
                try:
                    for byte in hello:  # 70 bytes at 10 a second: 7 s, far over the timeout
                        await stream.send_all(bytes([byte]))
                        await trio.sleep(0.1)
                except trio.BrokenResourceError:
                    pass  # the node gave up and closed

            nursery.start_soon(trickle)
            closed = await closed_by_node(stream)
            nursery.cancel_scope.cancel()
        assert FAST.handshake_timeout <= closed - start < LIMIT
        await refused(m0, "timeout")
        await exchange(m0.manager, m1.manager)
        await stream.aclose()


async def test_bad_signature() -> None:
    async with cluster(3, start=2) as c:
        m0, m1 = await members_up(c)
        liar = BadSigner(c.net.node_keys[2].seed())
        with pytest.raises(HandshakeRefused):
            await dial_raw(m0.port, liar, c.net)
        await refused(m0, "bad_signature")
        await exchange(m0.manager, m1.manager)
