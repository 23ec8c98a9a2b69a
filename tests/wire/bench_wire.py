"""Throughput of the member transport over one loopback TCP connection.

Run: ``.venv/bin/python -m tests.wire.bench_wire [--quick]``

For 250-byte and 64 KiB messages it measures, in one run and on the same connection
setup:

- ``plain``: length-prefixed framing only (no encryption): the base of the ratio;
- ``sealed``: ``SecureChannel`` (XChaCha20-Poly1305 per frame, after a real handshake);
- ``manager``: two ``PeerManager``s: CBOR envelope, send queue, batching, throttle
  accounting, fair inbox, on top of ``sealed``.

Senders batch frames up to 64 KiB per write, as the peer manager does. Each figure is
messages per second and payload MB/s (1 MB = 10^6 bytes) from the first write to the
last message received.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from prometheus_client import CollectorRegistry

from p2pledger.membership import Member, Network
from p2pledger.wire.channel import SecureChannel
from p2pledger.wire.config import TransportConfig
from p2pledger.wire.framing import FrameReader, encode_frame
from p2pledger.wire.handshake import Handshake, Side
from p2pledger.wire.messages import Lane, Message, MessageRegistry
from p2pledger.wire.peers import PeerManager, SendOutcome
from tests import factory

BATCH_BYTES = 64 * 1024
READ_SIZE = 64 * 1024
SIZES = (250, 64 * 1024)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    mode: str
    size: int
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def mbps(self) -> float:
        return self.count * self.size / self.seconds / 1e6


def batches(payload: bytes, count: int) -> list[int]:
    """How many messages go in each write (up to BATCH_BYTES, at least one)."""
    per = max(1, BATCH_BYTES // len(payload))
    out = [per] * (count // per)
    if count % per:
        out.append(count % per)
    return out


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        accepted: list[trio.SocketStream] = []

        async def accept() -> None:
            accepted.append(await listeners[0].accept())

        nursery.start_soon(accept)
        client = await trio.open_tcp_stream("127.0.0.1", port)
    await listeners[0].aclose()
    return client, accepted[0]


Task = Callable[[], Awaitable[None]]


async def timed(send: Task, receive: Task) -> float:
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(receive)
    return trio.current_time() - start


async def bench_plain(size: int, count: int) -> Result:
    client, server = await tcp_pair()
    payload = b"\x5a" * size
    frame = encode_frame(payload)

    async def send() -> None:
        for n in batches(payload, count):
            await client.send_all(frame * n)

    async def receive() -> None:
        reader = FrameReader(size)
        got = 0
        while got < count:
            reader.receive_data(await server.receive_some(READ_SIZE))
            while reader.next_frame() is not None:
                got += 1

    seconds = await timed(send, receive)
    await client.aclose()
    await server.aclose()
    return Result(mode="plain", size=size, count=count, seconds=seconds)


async def bench_sealed(size: int, count: int) -> Result:
    net = factory.TestNetwork(2)
    client, server = await tcp_pair()
    config = TransportConfig()

    def hs(side: Side, index: int, expected: int | None) -> Handshake:
        return Handshake(
            side=side,
            identity=net.node_keys[index],
            chain_id=net.chain_id,
            network=net.network,
            expected_peer=None if expected is None else net.node_keys[expected].public_key,
        )

    dialer = SecureChannel(client, hs(Side.DIALER, 0, 1), config=config)
    listener = SecureChannel(server, hs(Side.LISTENER, 1, None), config=config)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dialer.do_handshake)
        nursery.start_soon(listener.do_handshake)
    payload = b"\x5a" * size

    async def send() -> None:
        for n in batches(payload, count):
            await dialer.send_many([payload] * n)

    async def receive() -> None:
        for _ in range(count):
            await listener.receive()

    seconds = await timed(send, receive)
    await dialer.aclose()
    await listener.aclose()
    return Result(mode="sealed", size=size, count=count, seconds=seconds)


async def bench_manager(size: int, count: int) -> Result:
    net = factory.TestNetwork(2)
    ports: dict[str, int] = {}

    def resolve(member: Member) -> tuple[str, int]:
        return "127.0.0.1", ports[member.name]

    config = TransportConfig(
        receive_rate_messages=1e9,
        receive_burst_messages=10**9,
        receive_rate_bytes=1e12,
        receive_burst_bytes=10**12,
        inbox_messages=4096,
    )
    messages = MessageRegistry({"bench.data": Lane.CONSENSUS})

    def manager(i: int, network: Network) -> PeerManager:
        return PeerManager(
            identity=net.node_keys[i],
            network=network,
            chain_id=net.chain_id,
            registry=CollectorRegistry(),
            messages=messages,
            config=config,
            resolve=resolve,
            listen=("127.0.0.1", 0),
            rng=random.Random(i),
        )

    a, b = manager(0, net.network), manager(1, net.network)
    async with trio.open_nursery() as nursery:
        ports["m0"] = await nursery.start(a.run)
        ports["m1"] = await nursery.start(b.run)
        with trio.fail_after(10):
            await a.wait_connected()
        message = Message(type="bench.data", body={"d": b"\x5a" * (size - 20)})
        window = max(8, min(512, (4 * 1024 * 1024) // size))
        received = 0
        progressed = trio.Event()

        async def send() -> None:
            sent = 0
            while sent < count:
                while sent - received >= window:
                    await progressed.wait()
                outcome = a.send_nowait("m1", message)
                if outcome is not SendOutcome.QUEUED:
                    raise RuntimeError(f"bench message not queued: {outcome}")
                sent += 1
                if sent % 64 == 0:
                    await trio.lowlevel.checkpoint()  # let the receiver run

        async def receive() -> None:
            nonlocal received, progressed
            while received < count:
                await b.receive()
                received += 1
                if received % 32 == 0 or received == count:
                    progressed.set()
                    progressed = trio.Event()

        seconds = await timed(send, receive)
        nursery.cancel_scope.cancel()
    return Result(mode="manager", size=size, count=count, seconds=seconds)


async def run(quick: bool) -> list[Result]:
    results = []
    for size in SIZES:
        count = (20_000 if quick else 200_000) if size < 4096 else (500 if quick else 4000)
        for bench in (bench_plain, bench_sealed, bench_manager):
            results.append(await bench(size, count))
    return results


def report(results: list[Result]) -> str:
    base = {r.size: r for r in results if r.mode == "plain"}
    lines = [
        f"{'mode':<8} {'size':>7} {'messages':>9} {'msg/s':>10} {'MB/s':>8} {'vs plain':>9}",
    ]
    for r in results:
        ratio = r.mbps / base[r.size].mbps
        lines.append(
            f"{r.mode:<8} {r.size:>7} {r.count:>9} {r.rate:>10,.0f} {r.mbps:>8.1f} {ratio:>8.2f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    args = parser.parse_args(argv)
    results = trio.run(run, args.quick)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
