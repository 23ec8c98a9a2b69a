"""The peer manager: one authenticated connection to every other member, kept alive.

``PeerManager.run`` (started with ``await nursery.start(manager.run)``) listens for
members, dials every other member, and owns every task it starts:

- a dial loop per member: connect when there is no connection, retry with exponential
  backoff and jitter; the connection it dialed is served inside the loop's task;
- one task per accepted connection (owned by the server), which runs the handshake
  under its timeout and then serves the connection;
- per connection, a writer (drains that peer's send queue in batches, sends heartbeats
  when idle, times out a stuck write) and a reader (dead-peer timeout, per-peer
  receive throttle, message decoding, delivery into the fair inbox). One peer's
  reads and writes never wait on another's.

At most one connection per pair of members. When both dial at once, the connection
dialed by the member with the lower node key wins, on both sides: the listener gives
its verdict inside the handshake, before any message is sent, refusing a duplicate
while its own winning dial is pending or up, and cancelling its own losing dial
otherwise. A member that dials while we still hold a connection it dialed earlier
must have lost it (it restarted), so the newer connection replaces the old one.

Sending never blocks: ``send_nowait`` queues into the peer's consensus or gossip lane.
A full gossip lane sheds the message (counted); a full consensus lane is never dropped
silently: the queue is cleared, the loss counted and logged, the peer disconnected,
and it reconnects later. ``receive`` returns messages from all peers, round-robin.
``update_membership`` applies a new member list without a restart.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass

import structlog
import trio
from prometheus_client import CollectorRegistry

from p2pledger import codec
from p2pledger.crypto import PublicKey, SigningKey
from p2pledger.errors import CodecError
from p2pledger.membership import Member, Network
from p2pledger.wire.backoff import Backoff
from p2pledger.wire.channel import SecureChannel
from p2pledger.wire.config import TransportConfig
from p2pledger.wire.errors import (
    HandshakeRefused,
    ListenFailed,
    LocalProtocolError,
    MessageTooLarge,
    PeerUnreachable,
    RefusalReason,
    RemoteProtocolError,
    SessionExhausted,
    UnknownMessageType,
)
from p2pledger.wire.handshake import CHAIN_ID_SIZE, Handshake, Side
from p2pledger.wire.inbox import FairInbox
from p2pledger.wire.messages import (
    HEARTBEAT,
    Lane,
    Message,
    MessageRegistry,
    decode_message,
    encode_message,
)
from p2pledger.wire.metrics import PeerMetrics, WireMetrics
from p2pledger.wire.net import NetworkBackend, TrioNetwork, parse_address
from p2pledger.wire.queues import SendQueue
from p2pledger.wire.ratelimit import ReceiveThrottle
from p2pledger.wire.replay import ReplayCache

__all__ = [
    "Delivery",
    "PeerManager",
    "PeerStatistics",
    "Resolver",
    "SendOutcome",
    "TransportStatistics",
]

#: Where to reach a member: (host, port). The default parses ``member.address``.
Resolver = Callable[[Member], tuple[str, int]]


class SendOutcome(enum.StrEnum):
    """What ``send_nowait`` did with a message."""

    QUEUED = "queued"
    SHED = "shed"  # gossip lane full: dropped and counted
    DISCONNECTED = "disconnected"  # consensus lane full: queue dropped, peer disconnected
    UNKNOWN_PEER = "unknown_peer"  # not a current member (e.g. just removed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """A message received from a member."""

    peer: str
    message: Message
    lane: Lane
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStatistics:
    name: str
    connected: bool
    dialed_by_us: bool | None
    session: bytes | None
    queued_consensus: int
    queued_gossip: int
    #: a dial to this peer is in progress (connecting or in its handshake)
    dialing: bool = False
    #: connections from this peer admitted by our verdict and not yet attached
    incoming: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportStatistics:
    port: int | None
    peers: tuple[PeerStatistics, ...]
    inbox: int

    @property
    def connected(self) -> frozenset[str]:
        return frozenset(p.name for p in self.peers if p.connected)


def _default_resolver(member: Member) -> tuple[str, int]:
    return parse_address(member.address)


def _describe(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    if sock is not None:
        try:
            host, port = sock.getpeername()[:2]
        except OSError:
            return "unknown"
        return f"{host}:{port}"
    return "memory"


class _Connection:
    """A live, authenticated connection and the scope that ends it."""

    __slots__ = ("channel", "dialed_by_us", "draining", "reason", "scope", "waiting_since")

    def __init__(self, channel: SecureChannel, *, dialed_by_us: bool) -> None:
        self.channel = channel
        self.dialed_by_us = dialed_by_us
        self.scope = trio.CancelScope()
        self.reason: str | None = None
        self.waiting_since: float | None = None  # when the reader began waiting for a frame
        self.draining = False  # send what is queued, read nothing more, then close

    def close(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()

    def drain(self, reason: str, timeout: float) -> None:
        """Close once the writer has sent what is queued, or after ``timeout``."""
        if self.reason is None:
            self.reason = reason
        self.draining = True
        self.scope.deadline = min(self.scope.deadline, trio.current_time() + timeout)


class _Peer:
    """Everything the manager keeps about one other member."""

    __slots__ = (
        "conn",
        "counters",
        "dialing",
        "disconnected",
        "incoming",
        "member",
        "queue",
        "removed",
        "scope",
        "throttle",
        "throttled",
        "use_alternate",
        "wakeup",
    )

    def __init__(self, member: Member, config: TransportConfig, counters: PeerMetrics) -> None:
        self.member = member
        self.counters = counters
        self.queue = SendQueue(
            max_messages=config.send_queue_messages, max_bytes=config.send_queue_bytes
        )
        self.conn: _Connection | None = None
        #: dial with the alternate identity next (the last dial with ours was refused)
        self.use_alternate = False
        self.removed = False  # no longer a member: dial no more
        self.dialing: trio.CancelScope | None = None
        self.incoming = 0  # connections admitted by our verdict, not yet attached
        self.scope = trio.CancelScope()  # the dial loop and the connection it serves
        self.wakeup = trio.Event()
        self.disconnected = trio.Event()
        self.disconnected.set()
        self.throttle = ReceiveThrottle(
            messages_per_second=config.receive_rate_messages,
            message_burst=config.receive_burst_messages,
            bytes_per_second=config.receive_rate_bytes,
            byte_burst=config.receive_burst_bytes,
            now=0.0,  # trio's clock is positive: the buckets start full
        )
        self.throttled = False

    @property
    def name(self) -> str:
        return self.member.name

    def notify_queued(self) -> None:
        self.wakeup.set()
        self.wakeup = trio.Event()

    async def wait_queued(self) -> None:
        while not self.queue:
            await self.wakeup.wait()


class PeerManager:
    """Connections to every other member of ``network``; see the module docstring."""

    def __init__(
        self,
        *,
        identity: SigningKey,
        network: Network,
        chain_id: bytes,
        registry: CollectorRegistry,
        messages: MessageRegistry | None = None,
        config: TransportConfig | None = None,
        net: NetworkBackend | None = None,
        resolve: Resolver | None = None,
        listen: tuple[str, int] | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
        joining: bool = False,
        alternate: SigningKey | None = None,
    ) -> None:
        me = network.member_by_node_key(identity.public_key)
        if me is None and name is None:
            raise LocalProtocolError("this node's key is not a member of the network")
        if me is None and listen is None:
            raise LocalProtocolError("a node that is not a member needs a listen address")
        if len(chain_id) != CHAIN_ID_SIZE:
            raise LocalProtocolError(f"a chain id is {CHAIN_ID_SIZE} bytes")
        self._identity = identity
        #: A next node key during a rotation: a dial refused under ``identity`` is tried
        #: again under this one, in case the others already apply the rotation that this
        #: node has not seen committed yet (it would otherwise never hear of it).
        self._alternate = alternate
        self._me: Member | None = me
        self.name = me.name if me is not None else str(name)
        self._joining = joining and me is None
        self._network = network
        self._chain_id = chain_id
        self._config = config or TransportConfig()
        self._messages = messages or MessageRegistry()
        self._net: NetworkBackend = net or TrioNetwork()
        self._resolve = resolve or _default_resolver
        self._listen = listen
        self._rng = rng or random.Random()
        self.metrics = WireMetrics(registry)
        self._limits = codec.CodecLimits(
            max_size=self._config.max_frame_size, max_depth=self._config.max_nesting
        )
        self._heartbeat = encode_message(Message(type=HEARTBEAT), limits=self._limits)
        self._replay = ReplayCache(self._config.replay_cache_size)
        self._removed: set[bytes] = set()
        self._inbox: FairInbox[Delivery] = FairInbox(
            max_messages=self._config.inbox_messages, max_bytes=self._config.inbox_bytes
        )
        self._peers: dict[str, _Peer] = {}
        self._nursery: trio.Nursery | None = None
        self._port: int | None = None
        self._changed = trio.Event()
        # Unbound lazy logger: structlog's configuration (e.g. capture_logs) applies per call.
        self._log = structlog.get_logger("p2pledger.wire", node=self.name)
        for member in self._wanted(network, me, joining=self._joining).values():
            self._peers[member.name] = _Peer(
                member, self._config, self.metrics.for_peer(member.name)
            )

    # --- lifecycle ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and keep every member connected until cancelled; started(port).

        Raises ListenFailed (a LocalError) when the listening address cannot be bound.
        """
        if self._nursery is not None:
            raise LocalProtocolError("the peer manager is already running")
        if self._listen is not None:
            host, port = self._listen
        elif self._me is not None:
            host, port = self._resolve(self._me)
        else:
            raise LocalProtocolError("this node is no longer a member")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                bound: int = await nursery.start(
                    self._net.serve_tcp, self._handle_incoming, host, port
                )
                self._port = bound
                for peer in self._peers.values():
                    self._start_dialer(peer)
                self._log.info("transport.started", host=host, port=bound)
                task_status.started(bound)
        except* ListenFailed as group:
            raise ListenFailed(str(group.exceptions[0])) from group
        finally:
            self._nursery = None
            self._log.info("transport.stopped")

    @property
    def port(self) -> int | None:
        """The bound listening port while running."""
        return self._port

    @property
    def identity(self) -> SigningKey:
        """The node key this manager authenticates with."""
        return self._identity

    def _wanted(self, network: Network, me: Member | None, *, joining: bool) -> dict[str, Member]:
        """The members to keep connections to: every other member; while joining (not
        named yet), every member; once removed (or named under another key), none."""
        if me is None and not joining:
            return {}
        skip = me.name if me is not None else self.name
        return {m.name: m for m in network.members if m.name != skip}

    def update_membership(
        self, network: Network, *, identity: SigningKey | None = None, joining: bool = False
    ) -> None:
        """Apply a new member list: close removed members, dial new ones, no restart.

        A member whose node key changed counts as removed and added again. A new
        ``identity`` (this node's key was rotated) closes every connection, so that
        each comes back authenticated by the new key. ``joining``: this node is not
        named yet and keeps dialing every member; otherwise a network that does not
        name this node's key means it was removed, and every connection closes.
        """
        rotated = identity is not None and identity.public_key != self._identity.public_key
        if identity is not None:
            self._identity = identity
        if rotated or (
            self._alternate is not None and self._alternate.public_key == self._identity.public_key
        ):
            self._alternate = None  # the rotation is done
        me = network.member_by_node_key(self._identity.public_key)
        self._network = network
        self._me = me
        self._joining = joining and me is None
        if me is not None:
            self.name = me.name
        wanted = self._wanted(network, me, joining=self._joining)
        for name, peer in list(self._peers.items()):
            member = wanted.get(name)
            if member is None or member.node_key != peer.member.node_key:
                self._remove_peer(peer)
            else:
                peer.member = member
                if rotated:
                    if peer.dialing is not None:
                        peer.dialing.cancel()
                    if peer.conn is not None:
                        peer.conn.close("identity_changed")
        if rotated:
            self._log.info("transport.identity_changed", key=self._identity.public_key.short)
        for name, member in wanted.items():
            self._removed.discard(member.node_key.raw)
            if name not in self._peers:
                peer = _Peer(member, self._config, self.metrics.for_peer(member.name))
                self._peers[name] = peer
                self._log.info("peer.added", peer=name)
                if self._nursery is not None:
                    self._start_dialer(peer)
        if me is None and not self._joining:
            self._log.warning("transport.self_removed")
        self._notify()

    def _remove_peer(self, peer: _Peer) -> None:
        """Forget ``peer``: no more dials or sends. What is already queued for it is
        still written (bounded by ``drain_timeout``), then its connection closes."""
        del self._peers[peer.name]
        self._removed.add(peer.member.node_key.raw)
        peer.removed = True
        if peer.dialing is not None:
            peer.dialing.cancel()
        queued = len(peer.queue)
        if peer.conn is not None and queued:
            peer.conn.drain("removed_member", self._config.drain_timeout)
        else:
            peer.scope.cancel()
            if peer.conn is not None:
                peer.conn.close("removed_member")
        self._log.info("peer.removed", peer=peer.name, draining=queued if peer.conn else 0)

    # --- sending and receiving ----------------------------------------------------

    def send_nowait(self, peer: str, message: Message) -> SendOutcome:
        """Queue ``message`` for ``peer``; never blocks (see SendOutcome)."""
        lane, payload = self._encode(message)
        target = self._peers.get(peer)
        if target is None:
            return SendOutcome.UNKNOWN_PEER
        return self._enqueue(target, lane, payload)

    def broadcast_nowait(self, message: Message) -> dict[str, SendOutcome]:
        """Queue ``message`` for every other current member."""
        lane, payload = self._encode(message)
        return {name: self._enqueue(p, lane, payload) for name, p in list(self._peers.items())}

    async def receive(self) -> Delivery:
        """The next message from any member (fair across members)."""
        return await self._inbox.get()

    def receive_nowait(self) -> Delivery:
        """The next message, or trio.WouldBlock."""
        return self._inbox.get_nowait()

    def _encode(self, message: Message) -> tuple[Lane, bytes]:
        lane = self._messages.lane_of(message.type)
        if lane is None or lane is Lane.CONTROL:
            raise UnknownMessageType(f"message type {message.type!r} is not registered")
        try:
            return lane, encode_message(message, limits=self._limits)
        except CodecError as exc:
            raise MessageTooLarge(f"cannot send {message.type}: {exc}") from exc

    def _enqueue(self, peer: _Peer, lane: Lane, payload: bytes) -> SendOutcome:
        if peer.queue.offer(lane, payload):
            peer.notify_queued()
            return SendOutcome.QUEUED
        if lane is Lane.GOSSIP:
            peer.counters.shed.inc()
            return SendOutcome.SHED
        dropped = peer.queue.clear() + 1
        self.metrics.queue_overflows.labels(peer.name).inc()
        self.metrics.messages_lost.labels(peer.name, lane.value).inc(dropped)
        connected = peer.conn is not None
        self._log.warning(
            "peer.queue_overflow",
            peer=peer.name,
            lane=lane.value,
            dropped=dropped,
            connected=connected,
        )
        if peer.conn is not None:
            peer.conn.close("send_queue_full")
        return SendOutcome.DISCONNECTED

    # --- observing ----------------------------------------------------------------

    def connected_peers(self) -> frozenset[str]:
        return frozenset(name for name, p in self._peers.items() if p.conn is not None)

    def session_with(self, peer: str) -> bytes | None:
        """The transcript hash of the connection to ``peer`` (equal on both ends)."""
        p = self._peers.get(peer)
        return p.conn.channel.transcript if p is not None and p.conn is not None else None

    async def wait_connected(self, peers: Collection[str] | None = None) -> None:
        """Wait until every one of ``peers`` (default: all members) is connected."""
        while True:
            want = set(self._peers) if peers is None else set(peers)
            if want <= self.connected_peers():
                return
            await self._changed.wait()

    async def wait_disconnected(self, peer: str) -> None:
        """Wait until there is no connection to ``peer``."""
        while peer in self.connected_peers():
            await self._changed.wait()

    def statistics(self) -> TransportStatistics:
        peers = tuple(
            PeerStatistics(
                name=p.name,
                connected=p.conn is not None,
                dialed_by_us=p.conn.dialed_by_us if p.conn is not None else None,
                session=p.conn.channel.transcript if p.conn is not None else None,
                queued_consensus=p.queue.depth(Lane.CONSENSUS)[0],
                queued_gossip=p.queue.depth(Lane.GOSSIP)[0],
                dialing=p.dialing is not None,
                incoming=p.incoming,
            )
            for p in self._peers.values()
        )
        return TransportStatistics(port=self._port, peers=peers, inbox=len(self._inbox))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # --- handshakes ---------------------------------------------------------------

    def set_alternate_identity(self, key: SigningKey | None) -> None:
        """The next node key during a rotation (None: there is none)."""
        if key is not None and key.public_key == self._identity.public_key:
            key = None
        self._alternate = key

    def _handshake(
        self, side: Side, expected: PublicKey | None, identity: SigningKey | None = None
    ) -> Handshake:
        return Handshake(
            side=side,
            identity=identity or self._identity,
            chain_id=self._chain_id,
            network=self._network,
            removed_keys=self._removed,
            expected_peer=expected,
            replay_cache=self._replay,
            version=self._config.protocol_version,
            session_message_limit=self._config.session_message_limit,
        )

    def _refused(self, exc: HandshakeRefused, *, side: Side, remote: str) -> None:
        reason = exc.refusal.value
        self.metrics.refusals.labels(reason, side.value).inc()
        quiet = exc.refusal in (RefusalReason.DUPLICATE, RefusalReason.CLOSED)
        emit = self._log.info if quiet else self._log.warning
        emit("handshake.failed", reason=reason, peer=remote, side=side.value, detail=exc.detail)

    def _we_win(self, peer: _Peer) -> bool:
        """Whether a connection we dial to ``peer`` beats one it dials to us."""
        return self._identity.public_key.raw < peer.member.node_key.raw

    def _admit(self, member: Member) -> RefusalReason | None:
        peer = self._peers.get(member.name)
        if peer is None or peer.member.node_key != member.node_key:
            if member.node_key.raw in self._removed:
                return RefusalReason.REMOVED_MEMBER
            return RefusalReason.UNKNOWN_KEY
        if self._we_win(peer):
            if peer.dialing is not None or (peer.conn is not None and peer.conn.dialed_by_us):
                return RefusalReason.DUPLICATE
        elif peer.dialing is not None:
            peer.dialing.cancel()  # their dial wins over ours
        return None

    async def _handle_incoming(self, stream: trio.abc.Stream) -> None:
        remote = _describe(stream)
        channel = SecureChannel(stream, self._handshake(Side.LISTENER, None), config=self._config)
        admitted: list[_Peer] = []

        def admit(member: Member) -> RefusalReason | None:
            # Between our verdict and attaching the connection, the verdict is still
            # being written: the dial loop must not start a rival connection meanwhile.
            reason = self._admit(member)
            if reason is None:
                peer = self._peers[member.name]
                peer.incoming += 1
                admitted.append(peer)
            return reason

        try:
            member = await channel.do_handshake(admit)
        except HandshakeRefused as exc:
            self._refused(exc, side=Side.LISTENER, remote=remote)
            return
        finally:
            for admitted_peer in admitted:
                admitted_peer.incoming -= 1
        # No checkpoint from here until _serve attaches the connection.
        peer = self._peers.get(member.name)
        if peer is None or peer.member.node_key != member.node_key:  # removed meanwhile
            await trio.aclose_forcefully(channel)
            return
        await self._serve(peer, channel, dialed_by_us=False)

    def _start_dialer(self, peer: _Peer) -> None:
        assert self._nursery is not None
        peer.scope = trio.CancelScope()  # a scope is entered once; run() may run again
        self._nursery.start_soon(self._dial_loop, peer, name=f"dial:{peer.name}")

    async def _dial_loop(self, peer: _Peer) -> None:
        cfg = self._config
        backoff = Backoff(
            initial=cfg.backoff_initial,
            maximum=cfg.backoff_max,
            jitter=cfg.backoff_jitter,
            rng=self._rng,
        )
        with peer.scope:
            while True:
                await peer.disconnected.wait()
                await trio.sleep(backoff.next_delay())
                if peer.removed:
                    return
                if peer.conn is not None or peer.incoming:
                    continue
                if await self._dial_once(peer):
                    backoff.reset()

    async def _dial_once(self, peer: _Peer) -> bool:
        """One attempt; serves the connection if it succeeds. True if it connected."""
        cfg = self._config
        try:
            host, port = self._resolve(peer.member)
        except (PeerUnreachable, LookupError) as exc:
            self.metrics.dials.labels("unreachable").inc()
            self._log.debug("dial.failed", peer=peer.name, reason="unresolved", detail=str(exc))
            return False
        remote = f"{host}:{port}"
        channel: SecureChannel | None = None
        alternate = self._alternate if peer.use_alternate else None
        with trio.CancelScope() as scope:
            peer.dialing = scope
            try:
                with trio.fail_after(cfg.connect_timeout):
                    stream = await self._net.open_tcp_stream(host, port)
                handshake = self._handshake(Side.DIALER, peer.member.node_key, alternate)
                channel = SecureChannel(stream, handshake, config=cfg)
                await channel.do_handshake()
            except (PeerUnreachable, trio.TooSlowError) as exc:
                self.metrics.dials.labels("unreachable").inc()
                self._log.debug("dial.failed", peer=peer.name, remote=remote, detail=str(exc))
                return False
            except HandshakeRefused as exc:
                self.metrics.dials.labels("refused").inc()
                self._refused(exc, side=Side.DIALER, remote=remote)
                # refused: try the other identity next time, if a rotation is under way
                peer.use_alternate = self._alternate is not None and not peer.use_alternate
                return False
            finally:
                peer.dialing = None
        if scope.cancelled_caught or channel is None:  # the peer's own dial won
            if channel is not None:
                await trio.aclose_forcefully(channel)
            self.metrics.dials.labels("superseded").inc()
            return False
        self.metrics.dials.labels("connected").inc()
        if alternate is not None:
            self._log.info(
                "dial.alternate_identity", peer=peer.name, key=alternate.public_key.short
            )
        await self._serve(peer, channel, dialed_by_us=True)
        return True

    # --- a live connection --------------------------------------------------------

    async def _serve(self, peer: _Peer, channel: SecureChannel, *, dialed_by_us: bool) -> None:
        conn = _Connection(channel, dialed_by_us=dialed_by_us)
        if peer.conn is not None:
            peer.conn.close("replaced")
        peer.conn = conn
        peer.disconnected = trio.Event()
        side = Side.DIALER if dialed_by_us else Side.LISTENER
        self.metrics.handshakes.labels(side.value).inc()
        self.metrics.connections.inc()
        self._log.info(
            "peer.connected", peer=peer.name, side=side.value, session=channel.transcript[:4].hex()
        )
        self._notify()
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, peer, conn)
                    nursery.start_soon(self._reader, peer, conn)
                    nursery.start_soon(self._watchdog, conn)
        finally:
            if peer.conn is conn:
                peer.conn = None
                peer.disconnected.set()
            reason = conn.reason or "stopped"
            self.metrics.connections.dec()
            self.metrics.disconnects.labels(peer.name, reason).inc()
            self._log.info("peer.disconnected", peer=peer.name, reason=reason)
            self._notify()
            await trio.aclose_forcefully(channel)

    async def _writer(self, peer: _Peer, conn: _Connection) -> None:
        cfg = self._config
        counters = peer.counters
        sent = counters.sent
        batch: list[tuple[Lane, bytes]] = []
        try:
            while True:
                room = conn.channel.frames_left - 1  # keep one frame for a heartbeat
                if room <= 0:
                    conn.close("session_exhausted")  # queued messages wait for the next one
                    return
                batch = peer.queue.take_batch(cfg.batch_bytes, room)
                if not batch and conn.draining:
                    conn.close("removed_member")  # everything queued is written
                    return
                if not batch:
                    with trio.move_on_after(cfg.heartbeat_interval):
                        await peer.wait_queued()
                        continue
                    batch = [(Lane.CONTROL, self._heartbeat)]
                with trio.move_on_after(cfg.dead_after) as timer:
                    await conn.channel.send_many([payload for _, payload in batch])
                if timer.cancelled_caught:
                    conn.close("write_timeout")
                    return
                size = 0
                for lane, payload in batch:
                    sent[lane].inc()
                    size += len(payload)
                counters.bytes_sent.inc(size)
                counters.writes.inc()
                batch = []
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            conn.close("connection_lost")
        except SessionExhausted:  # pragma: no cover - frames_left keeps us below the limit
            conn.close("session_exhausted")
        finally:
            # A batch taken from the queue but not known to be written: count and log it,
            # whatever ended the connection (a failed write, a timeout, cancellation).
            self._lost(peer, batch)

    def _lost(self, peer: _Peer, batch: list[tuple[Lane, bytes]]) -> None:
        lost = [lane for lane, _ in batch if lane is not Lane.CONTROL]
        if not lost:
            return
        for lane in set(lost):
            self.metrics.messages_lost.labels(peer.name, lane.value).inc(lost.count(lane))
        self._log.warning("peer.write_failed", peer=peer.name, lost=len(lost))

    async def _reader(self, peer: _Peer, conn: _Connection) -> None:
        counters = peer.counters
        clock = trio.current_time
        try:
            while True:
                conn.waiting_since = clock()
                data = await conn.channel.receive()
                conn.waiting_since = None
                delay = peer.throttle.delay(clock(), len(data))
                if delay > 0:
                    self._throttling(peer, delay)
                    await trio.sleep(delay)
                else:
                    peer.throttled = False
                message = decode_message(data, limits=self._limits)
                lane = self._messages.lane_of(message.type)
                if lane is None:
                    counters.unknown.inc()
                    self._log.debug("message.unknown_type", peer=peer.name, type=message.type)
                    continue
                counters.received[lane].inc()
                counters.bytes_received.inc(len(data))
                if lane is Lane.CONTROL or conn.draining:
                    continue  # (a removed member's messages are no longer delivered)
                delivery = Delivery(peer=peer.name, message=message, lane=lane, size=len(data))
                await self._inbox.put(peer.name, delivery, len(data))
        except trio.EndOfChannel:
            conn.close("closed_by_peer")
        except RemoteProtocolError as exc:
            self._log.warning("peer.protocol_error", peer=peer.name, reason=exc.code)
            conn.close(exc.code)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            conn.close("connection_lost")

    async def _watchdog(self, conn: _Connection) -> None:
        """Close the connection when the reader has waited ``dead_after`` for a frame.

        Time the reader spends throttled or waiting for the inbox does not count: the
        peer is not silent then, we are just not reading.
        """
        dead_after = self._config.dead_after
        while True:
            since = conn.waiting_since
            now = trio.current_time()
            if since is not None and now - since >= dead_after:
                conn.close("heartbeat_timeout")
                return
            await trio.sleep_until((since if since is not None else now) + dead_after)

    def _throttling(self, peer: _Peer, delay: float) -> None:
        peer.counters.throttled.inc()
        if not peer.throttled:
            peer.throttled = True
            self._log.warning(
                "peer.throttled",
                peer=peer.name,
                delay_ms=round(delay * 1000, 1),
                rate_messages=self._config.receive_rate_messages,
                rate_bytes=self._config.receive_rate_bytes,
            )
