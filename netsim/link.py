"""netsim's link layer: one TCP relay per ordered pair of members, with link faults.

Why: netsim runs real ``p2pledger run`` daemons, which talk plain TCP. To delay, cap,
cut or stall the traffic between two members without touching the daemons, each
member dials every peer through a relay: member ``a``'s ``node.toml`` says
``[dial] b = relay_address(a, b)``. The relay of (a, b) accepts a's connection, opens
one to b's real listen address and pumps bytes both ways.

Faults belong to directed edges. A connection carries bytes both ways, so every relay
applies the faults of edge (a, b) to bytes from a to b and those of edge (b, a) to
bytes from b to a, whichever side dialed: b's own dial to a goes through relay (b, a)
and its a-to-b bytes obey edge (a, b) too. A fault change takes effect on live
connections at once.

How each direction of a connection works (``_Pump``): a reader task reads chunks from
the source and queues them with a due time; a writer task writes them to the
destination when they are due. Faults, applied to bytes flowing src to dst:

- latency: a chunk read at time t is due at
  ``max(t + latency + U(0, jitter), due time of the chunk before)``, so order is kept
  (``delivery_time``). Queued chunks keep the due time they were given when read.
  Only trio's clock is read, randomness only comes from the injected ``rng``.
- bandwidth: a serialization delay per direction per connection: a write is cut in
  pieces of at most 20 ms of the rate (at least one byte), and each piece of s bytes
  holds the direction for s / rate seconds before the next may start. A rate change
  applies from the next piece.
- blocked (a partition): bytes read from src, and bytes still queued, are discarded
  (counted as dropped) and the connection is marked *holed*; an end-of-stream from src
  is lost too (holes the connection). At ``heal`` every holed connection is closed on
  both sides, so no daemon ever reads a stream with a gap: it sees a reset and
  redials. A connection accepted while dialer-to-target is blocked is a black hole:
  the relay does not connect to the target (a partition lets no connection through),
  discards what the dialer sends, and is closed at ``heal``.
- stalled: bytes are held in order, the connection stays open; released at ``heal``.
- buffering is bounded: a direction holding ``buffer_limit`` bytes (16 MiB by default;
  latency, bandwidth and stalls all buffer) stops reading, which back-pressures the
  sender through TCP.
- reset: both sockets are closed with SO_LINGER 0, so each peer sees a RST
  (ECONNRESET), not an orderly end. Connections are also closed this way when a
  socket fails, when heal closes holed ones, and when the target is unreachable
  (connection refused or no answer in 5 s): the dialer's accepted connection is
  reset at once, as if the member were down.

Closing: when one side closes (end-of-stream), the relay first writes everything it
read from that side before, when due (latency and bandwidth respected), then closes
both sockets (an orderly close, no RST). Half-closes are therefore not passed on:
p2pledger never half-closes, and a relay that kept a connection open for an
end-of-stream the peer ignores would leak it. When a socket fails the connection is
reset at once. Every task lives in the nursery of ``LinkNet.run``; cancelling it
closes every connection.
"""

from __future__ import annotations

import contextlib
import math
import random
import socket
import struct
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from types import MappingProxyType

import trio

__all__ = [
    "DEFAULT_BUFFER_LIMIT",
    "Edge",
    "EdgeFaults",
    "EdgeStatistics",
    "LinkNet",
    "LinkStatistics",
    "UnknownLink",
    "delivery_time",
]

#: A directed edge (src, dst); also names the relay src dials to reach dst.
Edge = tuple[str, str]

#: Bytes held per direction of a connection before the relay stops reading.
DEFAULT_BUFFER_LIMIT = 16 * 1024 * 1024
#: Largest read from a socket.
READ_SIZE = 64 * 1024
#: Under a bandwidth cap a piece lasts at most this long on the link.
PACE_SLICE_S = 0.02
#: How long the relay waits for the target to accept before giving up.
CONNECT_TIMEOUT_S = 5.0

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


class UnknownLink(LookupError):
    """A fault or address was asked for an edge between names that are not members."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeFaults:
    """The faults applied to the bytes of one directed edge."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    #: Bytes per second; None for no cap.
    bandwidth_bps: int | None = None
    blocked: bool = False
    stalled: bool = False

    def __post_init__(self) -> None:
        for name, value in (("latency_ms", self.latency_ms), ("jitter_ms", self.jitter_ms)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if self.bandwidth_bps is not None and self.bandwidth_bps <= 0:
            raise ValueError(
                f"bandwidth_bps must be a positive number of bytes per second or None "
                f"(no cap), not {self.bandwidth_bps!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeStatistics:
    """Counters of one directed edge (src, dst).

    Byte counts are for bytes flowing src to dst in every connection (whichever side
    dialed); connection counts are for the relay (src, dst), i.e. src's dials to dst.
    """

    src: str
    dst: str
    faults: EdgeFaults
    #: Bytes from src written to dst.
    forwarded: int
    #: Bytes from src discarded because the edge was blocked.
    dropped: int
    #: Bytes from src held now (latency, bandwidth, stall).
    buffered: int
    #: Open connections of relay (src, dst).
    live: int
    #: Connections relay (src, dst) accepted.
    accepted: int
    #: Accepted connections closed at once because dst could not be reached.
    refused: int
    #: Connections of relay (src, dst) closed by ``reset`` or ``heal``.
    resets: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkStatistics:
    """A snapshot of every directed edge."""

    edges: Mapping[Edge, EdgeStatistics]

    def edge(self, src: str, dst: str) -> EdgeStatistics:
        try:
            return self.edges[(src, dst)]
        except KeyError:
            raise UnknownLink(f"no edge {src!r} -> {dst!r} in these statistics") from None

    @property
    def forwarded(self) -> int:
        return sum(e.forwarded for e in self.edges.values())

    @property
    def dropped(self) -> int:
        return sum(e.dropped for e in self.edges.values())


def delivery_time(read_at: float, previous: float, faults: EdgeFaults, rng: random.Random) -> float:
    """When a chunk read at ``read_at`` is due, given the due time of the one before.

    ``read_at + latency + U(0, jitter)``, never before ``previous`` (order is kept).
    Draws from ``rng`` only when there is jitter.
    """
    delay_ms = faults.latency_ms
    if faults.jitter_ms > 0:
        delay_ms += rng.uniform(0.0, faults.jitter_ms)
    return max(read_at + delay_ms / 1000.0, previous)


class _Signal:
    """An edge-triggered wake-up: ``fire`` wakes every task waiting now."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self, deadline: float = math.inf) -> None:
        """Wait for the next ``fire``, or until ``deadline`` (trio clock)."""
        with trio.move_on_at(deadline):
            await self._event.wait()


class _Conn:
    """One accepted connection of a relay, and its fate."""

    __slots__ = ("aborted", "holed", "pair", "rst", "scope")

    def __init__(self, pair: Edge) -> None:
        self.pair = pair
        self.scope = trio.CancelScope()
        #: Some bytes (or an end-of-stream) were lost to a block: reset at heal.
        self.holed = False
        self.aborted = False
        self.rst = False

    def abort(self, *, rst: bool) -> None:
        """Close the connection now (both sockets), with a RST if ``rst``."""
        self.aborted = True
        self.rst = self.rst or rst
        self.scope.cancel()


class _Edge:
    """The mutable state of one directed edge."""

    __slots__ = (
        "accepted",
        "conns",
        "dropped",
        "faults",
        "forwarded",
        "pumps",
        "refused",
        "resets",
    )

    def __init__(self) -> None:
        self.faults = EdgeFaults()
        self.forwarded = 0
        self.dropped = 0
        self.accepted = 0
        self.refused = 0
        self.resets = 0
        #: Every direction of every connection carrying this edge's bytes.
        self.pumps: set[_Pump] = set()
        #: Connections of the relay named by this edge.
        self.conns: set[_Conn] = set()

    def changed(self) -> None:
        for pump in self.pumps:
            pump.data.fire()


@dataclass(slots=True)
class _Chunk:
    view: memoryview
    due: float


class _Pump:
    """One direction of one connection: src's bytes to dst under one edge's faults."""

    def __init__(
        self,
        *,
        conn: _Conn,
        edge: _Edge,
        src: trio.SocketStream,
        dst: trio.SocketStream,
        rng: random.Random,
        buffer_limit: int,
    ) -> None:
        self._conn = conn
        self._edge = edge
        self._src = src
        self._dst = dst
        self._rng = rng
        self._limit = buffer_limit
        self._queue: deque[_Chunk] = deque()
        self.buffered = 0
        self._eof = False
        self._eof_due = 0.0
        self._last_due = -math.inf
        self._free_at = -math.inf
        #: Fired when chunks are queued, an end-of-stream is read, or faults change.
        self.data = _Signal()
        #: Fired when queued bytes are written or dropped.
        self._space = _Signal()

    async def run(self) -> None:
        self._edge.pumps.add(self)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read)
                await self._write()
        finally:
            self._edge.pumps.discard(self)

    async def _read(self) -> None:
        try:
            while True:
                while self.buffered >= self._limit:
                    await self._space.wait()
                data = await self._src.receive_some(READ_SIZE)
                now = trio.current_time()
                faults = self._edge.faults
                if faults.blocked:
                    self._conn.holed = True
                    if not data:
                        return  # the end-of-stream is lost in the partition too
                    self._edge.dropped += len(data)
                    continue
                due = delivery_time(now, self._last_due, faults, self._rng)
                self._last_due = due
                if not data:
                    self._eof, self._eof_due = True, due
                    self.data.fire()
                    return
                self._queue.append(_Chunk(memoryview(data), due))
                self.buffered += len(data)
                self.data.fire()
        except _STREAM_ERRORS:
            self._conn.abort(rst=True)

    def _drop_queue(self) -> None:
        self._edge.dropped += self.buffered
        self._queue.clear()
        self.buffered = 0
        self._space.fire()

    async def _write(self) -> None:
        try:
            while True:
                faults = self._edge.faults
                if not self._queue and not self._eof:
                    await self.data.wait()
                    continue
                if faults.blocked:
                    self._drop_queue()
                    self._conn.holed = True
                    await self.data.wait()
                    continue
                if faults.stalled:
                    await self.data.wait()
                    continue
                now = trio.current_time()
                if not self._queue:  # only the end-of-stream is left
                    if now < self._eof_due:
                        await self.data.wait(self._eof_due)
                        continue
                    self._conn.abort(rst=False)  # src closed: close dst too, now
                    return
                chunk = self._queue[0]
                if now < chunk.due:
                    await self.data.wait(chunk.due)
                    continue
                size = len(chunk.view)
                rate = faults.bandwidth_bps
                if rate is not None:
                    if now < self._free_at:
                        await self.data.wait(self._free_at)
                        continue
                    size = min(size, max(1, int(rate * PACE_SLICE_S)))
                    self._free_at = now + size / rate
                if self._conn.aborted:
                    return
                await self._dst.send_all(chunk.view[:size])
                chunk.view = chunk.view[size:]
                if not chunk.view:
                    self._queue.popleft()
                self.buffered -= size
                self._edge.forwarded += size
                self._space.fire()
        except _STREAM_ERRORS:
            self._conn.abort(rst=True)


def _close(stream: trio.SocketStream, *, rst: bool) -> None:
    """Close now, without awaiting (no task uses the stream any more).

    With ``rst``, SO_LINGER 0 makes the kernel send a RST instead of a FIN.
    """
    if rst:
        with contextlib.suppress(OSError):  # already closed: nothing to reset
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


class LinkNet:
    """One TCP relay per ordered pair of members, with per-direction faults.

    Start it with ``await nursery.start(net.run)``; it serves until cancelled.
    ``targets`` maps each member to its real (host, port) listen address.
    """

    def __init__(
        self,
        targets: Mapping[str, tuple[str, int]],
        *,
        rng: random.Random,
        host: str = "127.0.0.1",
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
    ) -> None:
        if buffer_limit <= 0:
            raise ValueError(f"buffer_limit must be a positive byte count, not {buffer_limit!r}")
        self._targets = dict(targets)
        self._rng = rng
        self._host = host
        self._buffer_limit = buffer_limit
        self._edges: dict[Edge, _Edge] = {
            (src, dst): _Edge() for src in self._targets for dst in self._targets if src != dst
        }
        self._addresses: dict[Edge, tuple[str, int]] = {}
        self._started = False

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self._targets)

    async def run(
        self, *, task_status: trio.TaskStatus[LinkNet] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind every relay (port 0), report started, serve until cancelled."""
        if self._started:
            raise RuntimeError("a LinkNet runs once; make a new one")
        self._started = True
        listeners: dict[Edge, list[trio.SocketListener]] = {}
        try:
            for pair in self._edges:
                listeners[pair] = await trio.open_tcp_listeners(0, host=self._host)
            async with trio.open_nursery() as nursery:
                for pair, bound in listeners.items():
                    port = bound[0].socket.getsockname()[1]
                    self._addresses[pair] = (self._host, port)
                    serve = partial(
                        trio.serve_listeners,
                        partial(self._handle, pair),
                        bound,
                        handler_nursery=nursery,
                    )
                    nursery.start_soon(serve)
                task_status.started(self)
        finally:
            # closed without awaiting: a Cancelled raised in here would hide the error
            # this block may be handling
            self._addresses.clear()
            for bound in listeners.values():
                for listener in bound:
                    listener.socket.close()

    def relay_address(self, dialer: str, target: str) -> tuple[str, int]:
        """Where ``dialer`` must dial to reach ``target`` (only while running)."""
        self._edge(dialer, target)
        if not self._addresses:
            raise RuntimeError("the LinkNet is not running: start it with nursery.start(net.run)")
        return self._addresses[(dialer, target)]

    def dial_addresses(self, dialer: str) -> dict[str, tuple[str, int]]:
        """Every peer of ``dialer`` and the relay address it must dial for it."""
        return {t: self.relay_address(dialer, t) for t in self._targets if t != dialer}

    def faults(self, src: str, dst: str) -> EdgeFaults:
        return self._edge(src, dst).faults

    def set_latency(self, src: str, dst: str, ms: float, jitter_ms: float = 0.0) -> None:
        """One-way delay of src-to-dst bytes: ``ms`` plus U(0, ``jitter_ms``)."""
        edge = self._edge(src, dst)
        self._set(edge, replace(edge.faults, latency_ms=ms, jitter_ms=jitter_ms))

    def set_bandwidth(self, src: str, dst: str, bytes_per_s: int | None) -> None:
        """Cap src-to-dst bytes at ``bytes_per_s`` per connection; None lifts the cap."""
        edge = self._edge(src, dst)
        self._set(edge, replace(edge.faults, bandwidth_bps=bytes_per_s))

    def block(self, edges: Iterable[Edge]) -> None:
        """Partition: discard the bytes of these directed edges until ``heal``."""
        for edge in self._edges_of(edges):
            self._set(edge, replace(edge.faults, blocked=True))

    def stall(self, edges: Iterable[Edge]) -> None:
        """Hold the bytes of these directed edges (connections stay open) until ``heal``."""
        for edge in self._edges_of(edges):
            self._set(edge, replace(edge.faults, stalled=True))

    def reset(self, pairs: Iterable[Edge]) -> None:
        """Close (RST) every live connection between each pair now, either dial direction."""
        for a, b in list(pairs):
            for pair in ((a, b), (b, a)):
                edge = self._edge(*pair)
                for conn in list(edge.conns):
                    if not conn.aborted:
                        conn.abort(rst=True)
                        edge.resets += 1

    def heal(self) -> None:
        """Lift every block and stall; reset holed connections; release held bytes in order.

        Latency and bandwidth stay.
        """
        for edge in self._edges.values():
            for conn in list(edge.conns):
                if conn.holed and not conn.aborted:
                    conn.abort(rst=True)
                    edge.resets += 1
        for edge in self._edges.values():
            if edge.faults.blocked or edge.faults.stalled:
                self._set(edge, replace(edge.faults, blocked=False, stalled=False))

    def clear(self) -> None:
        """Every edge back to no faults: ``heal``, no latency, no bandwidth cap."""
        self.heal()
        for edge in self._edges.values():
            if edge.faults != EdgeFaults():
                self._set(edge, EdgeFaults())

    def statistics(self) -> LinkStatistics:
        edges = {
            (src, dst): EdgeStatistics(
                src=src,
                dst=dst,
                faults=edge.faults,
                forwarded=edge.forwarded,
                dropped=edge.dropped,
                buffered=sum(p.buffered for p in edge.pumps),
                live=len(edge.conns),
                accepted=edge.accepted,
                refused=edge.refused,
                resets=edge.resets,
            )
            for (src, dst), edge in self._edges.items()
        }
        return LinkStatistics(edges=MappingProxyType(edges))

    # --- internals -------------------------------------------------------------------

    def _edge(self, src: str, dst: str) -> _Edge:
        try:
            return self._edges[(src, dst)]
        except KeyError:
            raise UnknownLink(
                f"no link {src!r} -> {dst!r}: both must be different members "
                f"(members: {', '.join(self._targets)})"
            ) from None

    def _edges_of(self, edges: Iterable[Edge]) -> list[_Edge]:
        return [self._edge(src, dst) for src, dst in list(edges)]

    def _set(self, edge: _Edge, faults: EdgeFaults) -> None:
        edge.faults = faults
        edge.changed()

    async def _handle(self, pair: Edge, dialer_stream: trio.SocketStream) -> None:
        dialer, target = pair
        edge = self._edges[pair]
        edge.accepted += 1
        conn = _Conn(pair)
        edge.conns.add(conn)
        target_stream: trio.SocketStream | None = None
        try:
            with conn.scope:
                if edge.faults.blocked:
                    conn.holed = True
                    await self._black_hole(dialer_stream, edge)
                    return
                host, port = self._targets[target]
                try:
                    with trio.fail_after(CONNECT_TIMEOUT_S):
                        target_stream = await trio.open_tcp_stream(host, port)
                except (OSError, trio.TooSlowError):
                    edge.refused += 1
                    conn.rst = True
                    return
                pumps = (
                    _Pump(
                        conn=conn,
                        edge=edge,
                        src=dialer_stream,
                        dst=target_stream,
                        rng=self._rng,
                        buffer_limit=self._buffer_limit,
                    ),
                    _Pump(
                        conn=conn,
                        edge=self._edges[(target, dialer)],
                        src=target_stream,
                        dst=dialer_stream,
                        rng=self._rng,
                        buffer_limit=self._buffer_limit,
                    ),
                )
                async with trio.open_nursery() as nursery:
                    for pump in pumps:
                        nursery.start_soon(pump.run)
        finally:
            edge.conns.discard(conn)
            for stream in (dialer_stream, target_stream):
                if stream is not None:
                    _close(stream, rst=conn.rst)

    async def _black_hole(self, stream: trio.SocketStream, edge: _Edge) -> None:
        """Accept and discard what the dialer sends, until it closes or heal resets."""
        try:
            while data := await stream.receive_some(READ_SIZE):
                edge.dropped += len(data)
        except _STREAM_ERRORS:
            pass
