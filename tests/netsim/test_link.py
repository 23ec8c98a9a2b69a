"""The link layer over real TCP on 127.0.0.1: relays, latency, bandwidth, partitions,
stalls, resets, a member that is down, and the statistics.

Each fake member is a listener in the test's nursery that hands every accepted
connection to the test, so a test holds both ends of each relayed connection: the
dialer's stream and the target's. Everything a test opens is closed by ``linked``.
"""

from __future__ import annotations

import math
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import pytest
import trio

from netsim.link import (
    DEFAULT_BUFFER_LIMIT,
    READ_SIZE,
    EdgeFaults,
    LinkNet,
    UnknownLink,
    delivery_time,
)
from netsim.partition import blocked_edges, parse_partition

HOST = "127.0.0.1"
#: How much later than its due time a byte may arrive (scheduling, loopback).
SLACK = 0.04
#: How long "nothing arrives" is watched for.
SILENCE = 0.3


@dataclass
class Harness:
    net: LinkNet
    seed: int
    accepted: dict[str, trio.MemoryReceiveChannel[trio.SocketStream]] = field(default_factory=dict)
    streams: list[trio.SocketStream] = field(default_factory=list)

    async def open(self, dialer: str, target: str) -> trio.SocketStream:
        """Connect as ``dialer`` to ``target``'s relay; the dialer's end only."""
        stream = await trio.open_tcp_stream(*self.net.relay_address(dialer, target))
        self.streams.append(stream)
        return stream

    async def dial(self, dialer: str, target: str) -> tuple[trio.SocketStream, trio.SocketStream]:
        """Both ends of a relayed connection: (dialer's stream, target's stream)."""
        client = await self.open(dialer, target)
        with trio.fail_after(5):
            server = await self.accepted[target].receive()
        return client, server


async def serve_member(
    harness: Harness,
    send: trio.MemorySendChannel[trio.SocketStream],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    async with listeners[0] as listener:
        task_status.started(listener.socket.getsockname()[1])
        while True:
            stream = await listener.accept()
            harness.streams.append(stream)
            await send.send(stream)


def closed_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def linked(
    names: Iterable[str] = ("a", "b"),
    *,
    down: Iterable[str] = (),
    seed: int | None = None,
    buffer_limit: int | None = None,
) -> AsyncIterator[Harness]:
    seed = random.randrange(2**32) if seed is None else seed
    print(f"seed {seed}")
    down = set(down)
    async with trio.open_nursery() as nursery:
        harness = Harness(net=LinkNet({}, rng=random.Random(0)), seed=seed)
        targets: dict[str, tuple[str, int]] = {}
        for name in names:
            if name in down:
                targets[name] = (HOST, closed_port())
                continue
            send, receive = trio.open_memory_channel[trio.SocketStream](math.inf)
            harness.accepted[name] = receive
            targets[name] = (HOST, await nursery.start(serve_member, harness, send))
        harness.net = LinkNet(
            targets,
            rng=random.Random(seed),
            buffer_limit=DEFAULT_BUFFER_LIMIT if buffer_limit is None else buffer_limit,
        )
        await nursery.start(harness.net.run)
        try:
            yield harness
        finally:
            # close before cancelling: a Cancelled raised here would replace (and so
            # hide) the test's own failure
            for stream in harness.streams:
                await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()


async def recv_exactly(stream: trio.SocketStream, n: int, timeout: float = 5.0) -> bytes:
    buf = bytearray()
    with trio.fail_after(timeout):
        while len(buf) < n:
            data = await stream.receive_some(min(READ_SIZE, n - len(buf)))
            assert data, f"end of stream after {len(buf)} of {n} bytes"
            buf += data
    return bytes(buf)


async def assert_silent(*streams: trio.SocketStream, seconds: float = SILENCE) -> None:
    """Nothing arrives on any of ``streams`` for ``seconds`` (watched together)."""

    async def watch(stream: trio.SocketStream) -> None:
        data = await stream.receive_some()
        pytest.fail(f"expected nothing, got {data!r}")

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for stream in streams:
                nursery.start_soon(watch, stream)


async def assert_closed(stream: trio.SocketStream, timeout: float = 2.0) -> str:
    """The peer closed the stream: return "eof" or "reset" (bytes before it are skipped)."""
    with trio.fail_after(timeout):
        for _ in range(10_000):
            try:
                data = await stream.receive_some()
            except trio.BrokenResourceError:
                return "reset"
            if not data:
                return "eof"
    pytest.fail("the stream kept delivering bytes")


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.005)


def no_live_connection(net: LinkNet, pair: tuple[str, str]) -> bool:
    return net.statistics().edge(*pair).live == 0


async def one_way_delay(src: trio.SocketStream, dst: trio.SocketStream) -> float:
    start = trio.current_time()
    await src.send_all(b"x")
    assert await recv_exactly(dst, 1) == b"x"
    return trio.current_time() - start


# --- 1. bytes flow ------------------------------------------------------------------


async def exchange(
    client: trio.SocketStream,
    server: trio.SocketStream,
    up: bytes,
    down: bytes,
    rng: random.Random,
) -> tuple[bytes, bytes]:
    """Send ``up`` client to server and ``down`` back at the same time, in writes of
    mixed sizes; return what each side received."""
    got: dict[str, bytes] = {}
    sizes: list[int] = []
    while sum(sizes) < max(len(up), len(down)):  # bounded: each size is at least 1
        sizes.append(rng.randint(1, 200_000))

    async def send(stream: trio.SocketStream, data: bytes, sizes: list[int]) -> None:
        view = memoryview(data)
        for size in sizes:  # the sizes cover the payload
            await stream.send_all(view[:size])
            view = view[size:]

    async def receive(stream: trio.SocketStream, n: int, key: str) -> None:
        got[key] = await recv_exactly(stream, n, timeout=10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, client, up, sizes)
        nursery.start_soon(send, server, down, sizes[::-1])
        nursery.start_soon(receive, server, len(up), "up")
        nursery.start_soon(receive, client, len(down), "down")
    return got["up"], got["down"]


async def test_bytes_flow_both_ways_through_both_relays() -> None:
    async with linked() as h:
        rng = random.Random(h.seed)
        for dialer, target in (("a", "b"), ("b", "a")):
            client, server = await h.dial(dialer, target)
            up, down = rng.randbytes(3_000_000), rng.randbytes(2_000_000)
            got_up, got_down = await exchange(client, server, up, down, rng)
            assert got_up == up
            assert got_down == down

            # an orderly close of either side closes the other side the same way
            closer, other = (client, server) if dialer == "a" else (server, client)
            await closer.aclose()
            assert await assert_closed(other) == "eof"
        await wait_until(lambda: h.net.statistics().edge("a", "b").live == 0)
        stats = h.net.statistics()
        for src, dst in (("a", "b"), ("b", "a")):
            edge = stats.edge(src, dst)
            assert edge.dropped == 0
            assert edge.accepted == 1
            assert edge.resets == 0
        assert stats.edge("a", "b").forwarded == 3_000_000 + 2_000_000
        assert stats.edge("b", "a").forwarded == 2_000_000 + 3_000_000


# --- 2. latency ---------------------------------------------------------------------


async def test_latency_applies_to_one_direction_in_every_relay() -> None:
    async with linked() as h:
        ab_a, ab_b = await h.dial("a", "b")  # a dialed b
        ba_b, ba_a = await h.dial("b", "a")  # b dialed a
        h.net.set_latency("a", "b", 50)  # after connecting: live connections obey it
        assert h.net.faults("a", "b").latency_ms == 50
        assert h.net.faults("b", "a").latency_ms == 0
        for a_end, b_end in ((ab_a, ab_b), (ba_a, ba_b)):
            for _ in range(4):
                delay = await one_way_delay(a_end, b_end)
                assert 0.050 <= delay < 0.050 + SLACK, delay
                assert await one_way_delay(b_end, a_end) < SLACK


async def test_jitter_spreads_delays_and_keeps_order() -> None:
    async with linked() as h:
        client, server = await h.dial("a", "b")
        h.net.set_latency("a", "b", 20, jitter_ms=30)
        count = 20
        sent: list[float] = []
        arrived: list[tuple[int, float]] = []

        async def receive() -> None:
            buf = b""
            with trio.fail_after(5):
                while len(arrived) < count:
                    data = await server.receive_some()
                    assert data
                    now = trio.current_time()
                    buf += data
                    while len(buf) >= 4:
                        arrived.append((int.from_bytes(buf[:4], "big"), now))
                        buf = buf[4:]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            start = trio.current_time()
            for i in range(count):
                await trio.sleep_until(start + i * 0.01)  # pacing the sends, not a wait
                sent.append(trio.current_time())
                await client.send_all(i.to_bytes(4, "big"))
        assert [i for i, _ in arrived] == list(range(count)), "order kept"
        delays = [t - sent[i] for i, t in arrived]
        assert all(0.020 <= d < 0.050 + SLACK for d in delays), delays
        assert max(delays) - min(delays) > 0.005, delays


def test_delivery_time_is_latency_plus_seeded_jitter_in_order() -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    drawn, expected_rng = random.Random(seed), random.Random(seed)
    faults = EdgeFaults(latency_ms=10, jitter_ms=40)
    previous = expected = -math.inf
    for read_at in (0.0, 0.001, 0.002, 0.5, 0.5, 0.7):
        previous = delivery_time(read_at, previous, faults, drawn)
        expected = max(read_at + (10 + expected_rng.uniform(0, 40)) / 1000, expected)
        assert previous == expected
    untouched = random.Random(seed)
    state = untouched.getstate()
    assert delivery_time(1.0, 0.0, EdgeFaults(latency_ms=5), untouched) == 1.005
    assert untouched.getstate() == state, "no jitter, no draw"


# --- 3. bandwidth -------------------------------------------------------------------


async def test_bandwidth_cap_paces_one_direction() -> None:
    async with linked() as h:
        client, server = await h.dial("a", "b")
        h.net.set_bandwidth("a", "b", 200_000)
        payload = random.Random(h.seed).randbytes(100_000)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)
            assert await recv_exactly(server, len(payload)) == payload
        elapsed = trio.current_time() - start
        assert 0.45 <= elapsed < 1.5, elapsed

        start = trio.current_time()  # the other direction has no cap
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.send_all, payload * 10)
            assert await recv_exactly(client, len(payload) * 10) == payload * 10
        assert trio.current_time() - start < 0.45

        h.net.set_bandwidth("a", "b", None)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)
            assert await recv_exactly(server, len(payload)) == payload
        assert trio.current_time() - start < 0.2


# --- 4. partitions ------------------------------------------------------------------


async def test_block_one_direction_then_heal() -> None:
    async with linked(("a", "b", "c")) as h:
        ab_a, ab_b = await h.dial("a", "b")
        ba_b, ba_a = await h.dial("b", "a")
        ac_a, ac_c = await h.dial("a", "c")
        h.net.block([("a", "b")])

        await ab_a.send_all(b"lost-1")
        await ba_a.send_all(b"lost-22")
        await ab_b.send_all(b"back")
        await ba_b.send_all(b"fwd")
        assert await recv_exactly(ab_a, 4) == b"back"
        assert await recv_exactly(ba_a, 3) == b"fwd"

        hole = await h.open("a", "b")  # a new dial while a->b is blocked: a black hole
        await hole.send_all(b"knock")
        with trio.move_on_after(SILENCE):
            await h.accepted["b"].receive()
            pytest.fail("b was reached through a partition")
        await assert_silent(ab_b, ba_b, hole)
        await wait_until(lambda: h.net.statistics().edge("a", "b").dropped == 6 + 7 + 5)

        h.net.heal()
        for stream in (ab_a, ab_b, ba_a, ba_b, hole):
            await assert_closed(stream)
        await wait_until(lambda: h.net.statistics().edge("a", "b").live == 0)
        stats = h.net.statistics()
        assert stats.edge("a", "b").resets == 2  # the live one and the black hole
        assert stats.edge("b", "a").resets == 1
        assert stats.edge("a", "b").faults == EdgeFaults()

        # untouched by the partition, and still open after heal
        await ac_a.send_all(b"ping")
        assert await recv_exactly(ac_c, 4) == b"ping"
        await ac_c.send_all(b"pong")
        assert await recv_exactly(ac_a, 4) == b"pong"
        # new connections work both ways
        for dialer, target in (("a", "b"), ("b", "a")):
            client, server = await h.dial(dialer, target)
            await client.send_all(b"hello")
            assert await recv_exactly(server, 5) == b"hello"
            await server.send_all(b"there")
            assert await recv_exactly(client, 5) == b"there"


async def test_isolate_blocks_exactly_its_edges_on_live_connections() -> None:
    members = ("m0", "m1", "m2")
    blocked = blocked_edges(parse_partition("isolate:m0"), members)
    async with linked(members) as h:
        # ends[(x, y)] = (x's stream, y's stream) of the connection x dialed to y
        ends = {(x, y): await h.dial(x, y) for x in members for y in members if x != y}
        h.net.block(blocked)
        stats = h.net.statistics()
        assert {e for e, s in stats.edges.items() if s.faults.blocked} == blocked

        arrived: set[tuple[tuple[str, str], tuple[str, str]]] = set()
        expected: set[tuple[tuple[str, str], tuple[str, str]]] = set()

        async def receive(conn: tuple[str, str], direction: tuple[str, str]) -> None:
            src, dst = direction
            stream = ends[conn][conn.index(dst)]
            marker = f"{conn}{src}>{dst}".encode()
            assert await recv_exactly(stream, len(marker), timeout=10) == marker
            arrived.add((conn, direction))

        async with trio.open_nursery() as nursery:
            for conn, pair in ends.items():
                for direction in (conn, conn[::-1]):
                    src, dst = direction
                    nursery.start_soon(receive, conn, direction)
                    await pair[conn.index(src)].send_all(f"{conn}{src}>{dst}".encode())
                    if direction not in blocked:
                        expected.add((conn, direction))
            await wait_until(lambda: expected <= arrived)
            with trio.move_on_after(SILENCE):  # give the blocked ones a chance to leak
                await trio.sleep_forever()
            nursery.cancel_scope.cancel()
        assert arrived == expected
        assert len(expected) == 12 - 2 * len(blocked)

        h.net.heal()  # every connection with m0 lost bytes; m1-m2 ones did not
        await wait_until(
            lambda: sum(s.live for s in h.net.statistics().edges.values()) == 2, timeout=2
        )
        assert h.net.statistics().edge("m1", "m2").live == 1
        assert h.net.statistics().edge("m2", "m1").live == 1


# --- 5. stall -----------------------------------------------------------------------


async def test_stall_holds_bytes_in_order_and_heal_releases_them() -> None:
    async with linked() as h:
        client, server = await h.dial("a", "b")
        h.net.stall([("a", "b")])
        payload = random.Random(h.seed).randbytes(1_000_000)
        with trio.fail_after(5):
            await client.send_all(payload)
        await wait_until(lambda: h.net.statistics().edge("a", "b").buffered == len(payload))
        await assert_silent(server)
        await server.send_all(b"other way")  # the reverse direction is not stalled
        assert await recv_exactly(client, 9) == b"other way"

        h.net.heal()
        assert await recv_exactly(server, len(payload)) == payload
        await client.send_all(b"still open")
        assert await recv_exactly(server, 10) == b"still open"
        await wait_until(lambda: h.net.statistics().edge("a", "b").buffered == 0)
        stats = h.net.statistics().edge("a", "b")
        assert (stats.resets, stats.dropped, stats.buffered, stats.live) == (0, 0, 0, 1)


async def test_a_full_stall_buffer_stops_reading() -> None:
    limit = 256 * 1024
    async with linked(buffer_limit=limit) as h:
        client, server = await h.dial("a", "b")
        h.net.stall([("a", "b")])
        payload = random.Random(h.seed).randbytes(12_000_000)  # far beyond kernel buffers
        sent = trio.Event()

        async def send() -> None:
            await client.send_all(payload)
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            await wait_until(lambda: h.net.statistics().edge("a", "b").buffered >= limit)
            with trio.move_on_after(0.2):
                await sent.wait()
            assert not sent.is_set(), "the sender was not held back"
            assert h.net.statistics().edge("a", "b").buffered < limit + READ_SIZE
            h.net.heal()
            assert await recv_exactly(server, len(payload), timeout=10) == payload
        assert sent.is_set()


# --- 6. reset -----------------------------------------------------------------------


async def test_reset_closes_live_connections_of_the_pair_now() -> None:
    async with linked(("a", "b", "c")) as h:
        ab_a, ab_b = await h.dial("a", "b")
        ba_b, ba_a = await h.dial("b", "a")
        ac_a, ac_c = await h.dial("a", "c")
        h.net.reset([("a", "b")])
        for stream in (ab_a, ab_b, ba_a, ba_b):
            assert await assert_closed(stream, timeout=1) == "reset"
        stats = h.net.statistics()
        assert (stats.edge("a", "b").resets, stats.edge("b", "a").resets) == (1, 1)
        assert stats.edge("a", "c").resets == 0
        await ac_a.send_all(b"ok")
        assert await recv_exactly(ac_c, 2) == b"ok"
        client, server = await h.dial("a", "b")
        await client.send_all(b"again")
        assert await recv_exactly(server, 5) == b"again"


# --- 7. target down -----------------------------------------------------------------


async def test_a_dial_to_a_member_that_is_down_is_closed_at_once() -> None:
    async with linked(down={"b"}) as h:
        start = trio.current_time()
        client = await h.open("a", "b")
        await assert_closed(client, timeout=1)
        assert trio.current_time() - start < 0.5
        stats = h.net.statistics().edge("a", "b")
        assert (stats.accepted, stats.refused) == (1, 1)

        h.net.block([("a", "b")])  # during a partition the dial is a black hole instead
        hole = await h.open("a", "b")
        await hole.send_all(b"anyone?")
        await assert_silent(hole)
        h.net.heal()
        await assert_closed(hole)


# --- 8. statistics ------------------------------------------------------------------


async def test_statistics_count_forwarded_and_dropped_bytes() -> None:
    async with linked() as h:
        client, server = await h.dial("a", "b")
        await client.send_all(bytes(1000))
        await recv_exactly(server, 1000)
        await server.send_all(bytes(300))
        await recv_exactly(client, 300)
        await wait_until(lambda: h.net.statistics().edge("b", "a").forwarded == 300)
        stats = h.net.statistics()
        ab, ba = stats.edge("a", "b"), stats.edge("b", "a")
        assert (ab.forwarded, ab.dropped, ab.live, ab.accepted) == (1000, 0, 1, 1)
        assert (ba.forwarded, ba.dropped, ba.live, ba.accepted) == (300, 0, 0, 0)
        assert stats.forwarded == 1300

        h.net.block([("a", "b")])
        await client.send_all(bytes(500))
        await wait_until(lambda: h.net.statistics().edge("a", "b").dropped == 500)
        stats = h.net.statistics()
        assert stats.edge("a", "b").forwarded == 1000
        assert stats.dropped == 500
        assert stats.edge("a", "b").faults.blocked
        assert not stats.edge("b", "a").faults.blocked

        h.net.heal()
        await wait_until(lambda: h.net.statistics().edge("a", "b").live == 0)
        assert h.net.statistics().edge("a", "b").resets == 1

        h.net.set_latency("b", "a", 5, jitter_ms=1)
        h.net.set_bandwidth("b", "a", 1000)
        h.net.stall([("b", "a")])
        assert h.net.faults("b", "a") == EdgeFaults(
            latency_ms=5, jitter_ms=1, bandwidth_bps=1000, stalled=True
        )
        h.net.heal()
        assert h.net.faults("b", "a") == EdgeFaults(latency_ms=5, jitter_ms=1, bandwidth_bps=1000)
        h.net.clear()
        assert h.net.faults("b", "a") == EdgeFaults()


async def test_closing_waits_for_bytes_still_due() -> None:
    async with linked() as h:
        for dialer, target in (("a", "b"), ("b", "a")):
            client, server = await h.dial(dialer, target)
            a_end = client if dialer == "a" else server
            b_end = server if dialer == "a" else client
            h.net.set_latency("a", "b", 50)
            h.net.set_bandwidth("a", "b", 100_000)
            payload = random.Random(h.seed).randbytes(20_000)  # ~0.2 s at the cap
            start = trio.current_time()
            await a_end.send_all(payload)
            await a_end.aclose()
            assert await recv_exactly(b_end, len(payload)) == payload
            assert await assert_closed(b_end) == "eof"
            assert trio.current_time() - start >= 0.05 + 0.15
            pair = (dialer, target)
            await wait_until(partial(no_live_connection, h.net, pair))
            h.net.clear()


async def test_unknown_members_and_bad_faults_are_refused() -> None:
    async with linked() as h:
        with pytest.raises(UnknownLink, match="'z'"):
            h.net.faults("a", "z")
        with pytest.raises(UnknownLink, match="different members"):
            h.net.set_latency("a", "a", 10)
        with pytest.raises(UnknownLink):
            h.net.block([("a", "b"), ("b", "q")])
        assert not h.net.faults("a", "b").blocked, "a refused call changes nothing"
        assert h.net.dial_addresses("a") == {"b": h.net.relay_address("a", "b")}
    with pytest.raises(ValueError, match="latency_ms"):
        EdgeFaults(latency_ms=-1)
    with pytest.raises(ValueError, match="bandwidth_bps"):
        EdgeFaults(bandwidth_bps=0)
    with pytest.raises(RuntimeError, match="not running"):
        LinkNet({"a": (HOST, 1), "b": (HOST, 2)}, rng=random.Random(0)).relay_address("a", "b")
