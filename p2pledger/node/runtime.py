"""The member node: every part of the daemon wired into one nursery.

``Node.run`` opens the ledger and the Raft log, starts the transport, the Raft
driver, the block cutter, gossip and (optionally) the HTTP API, and reports itself
started. ``Node.stop`` begins a graceful shutdown: stop accepting, let pending
transactions commit for a bounded time, finish the write in flight, then close.

Ordering: the leader cuts a block from its mempool when it is full enough or the
batch timeout passed, and only when every entry of its log is applied, so the block
is executed on the final state of its parent. Each committed Raft entry carries one
block, which every member checks, re-executes and stores in one LMDB transaction.
A member whose result differs stops (``NodeDiverged``) rather than serve wrong answers.

Membership: the network in force is the ledger's (``Ledger.network``), not node.toml's
network file, which stays the founding file (genesis, chain id). A block whose
``config.update`` changes the Raft configuration (a member added, removed or re-roled)
is proposed as that Raft configuration change, with the block as its context, so the
ordering service and the ledger change together; every other block is a normal
entry. After each commit that changes the version, everything that depends on the
membership follows: the transport's members and this daemon's identity (a rotated
node key), the entry checks, the block limits, health and status. A daemon that the
membership in force does not name is *joining* (it follows and catches up until an
update names it) or *removed* (it takes no part and serves read-only queries).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

import structlog
import trio

from p2pledger.api.app import create_app
from p2pledger.api.errors import TxRejected, Unavailable
from p2pledger.api.server import serve_api
from p2pledger.chain import Block, Transaction, TxResult, chain_id_of
from p2pledger.config import NodeConfig, load_network, load_node, parse_address
from p2pledger.crypto import SigningKey, load_signing_key
from p2pledger.errors import (
    BlockRejected,
    InvalidBlock,
    LocalError,
    P2PLedgerError,
    RemoteError,
)
from p2pledger.gossip import Mempool, MempoolFull, SeenCache
from p2pledger.ledger import Ledger, NotPipelinable
from p2pledger.membership import Member, Network, Role
from p2pledger.node.environment import Environment
from p2pledger.node.gossip import Gossip
from p2pledger.node.metrics import NodeMetrics
from p2pledger.node.ordering import Ordering
from p2pledger.node.protocol import (
    GOSSIP_TXS,
    RAFT,
    STATUS_HEIGHT,
    SYNC_BLOCKS,
    SYNC_REQUEST,
    message_types,
)
from p2pledger.node.reconfig import (
    KeyNotInForce,
    Standing,
    StandingKind,
    TooManyConfChanges,
    conf_change_of,
    conf_of,
    hold_back,
    standing_of,
)
from p2pledger.node.service import NodeService
from p2pledger.node.verify import Verifier, default_verify_threads
from p2pledger.raft import (
    BadMessage,
    ConfChange,
    ConfChangePending,
    Config,
    Entry,
    EntryKind,
    InvalidConfChange,
    RawNode,
    SnapshotMeta,
    message_from_value,
)
from p2pledger.raft import Message as RaftMessage
from p2pledger.raft.errors import RaftError
from p2pledger.store.raft_log import RaftLog
from p2pledger.wire import Delivery, Message, PeerManager, TransportConfig

__all__ = ["Node", "NodeDiverged", "NodeSettings"]

_T = TypeVar("_T")
_Args = TypeVarTuple("_Args")

_SYNC_BYTES = 2 * 1024 * 1024
#: How many of its blocks a leader has proposed and not yet applied at most: it cuts
#: block N+1 on N's pending state while N is being replicated and applied.
_PIPELINE_DEPTH = 2


class _CommitWaiter:
    """Clients waiting for a set of transactions: set once the last of them commits."""

    __slots__ = ("done", "remaining")

    def __init__(self, tx_ids: set[bytes]) -> None:
        self.remaining = tx_ids
        self.done = trio.Event()

    def committed(self, tx_id: bytes) -> None:
        self.remaining.discard(tx_id)
        if not self.remaining:
            self.done.set()


@dataclass(frozen=True, slots=True)
class _InFlight:
    """A block this leader proposed in ``term`` (Raft entry ``index``), not applied."""

    hash: bytes
    height: int
    index: int
    term: int
    ids: frozenset[bytes]
    size: int
    changes_membership: bool


class NodeDiverged(LocalError):
    """A committed block does not check out against this member's ledger: stop."""


#: How often a running daemon looks whether its node.toml changed (a next key added).
NODE_FILE_POLL_S = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSettings:
    """Timing and batching of the runtime (the limits live in node.toml)."""

    tick_seconds: float = 0.1
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    gossip_interval_s: float = 0.005
    drain_timeout_s: float = 5.0
    catch_up_timeout_s: float = 5.0
    raft_keep_entries: int = 2048
    serve_api: bool = True


class Node:
    """One member of the consortium; see the module docstring."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        env: Environment | None = None,
        settings: NodeSettings | None = None,
        network: Network | None = None,
        key: SigningKey | None = None,
        next_key: SigningKey | None = None,
        config_file: Path | None = None,
    ) -> None:
        """``network`` is the founding file's (default: node.toml's ``network``); ``key``
        and ``next_key`` the node keys (default: ``key_file``, ``next_key_file``).
        ``config_file`` is node.toml itself: when an update gives this member a key it
        does not hold, its ``next_key_file`` is read again from there, so a key rotation
        needs no restart."""
        self.config = config
        self._config_file = config_file
        self.env = env or Environment()
        self.settings = settings or NodeSettings()
        #: The founding network: it fixes genesis and the chain id, nothing more.
        self.founding = network or load_network(config.network)
        self._key = key or load_signing_key(config.key_file)
        if next_key is None and config.next_key_file is not None:
            next_key = load_signing_key(config.next_key_file)
        self._next_key = next_key
        #: The key this daemon speaks with now (signs blocks, authenticates to members).
        self.key = self._key
        self.name = config.name
        self.chain_id = chain_id_of(self.founding)
        self._network = self.founding
        #: Keys that signed under an earlier membership than the one in force (revoked
        #: users, removed members' keys): their transactions that another member
        #: accepted before the change are still ordered, and recorded invalid.
        self._former_signers: set[bytes] = set()
        self.standing: Standing | None = None
        self.metrics = NodeMetrics(self.env.registry)
        limits = config.limits
        self.mempool = Mempool(
            max_transactions=limits.mempool_max_txs, max_bytes=limits.mempool_max_bytes
        )
        self.seen = SeenCache(4 * limits.mempool_max_txs)
        self._in_loop = not limits.worker_threads
        self.verifier = Verifier(
            threads=0 if self._in_loop else limits.verify_threads or default_verify_threads(),
            cache_size=4 * limits.mempool_max_txs,
        )
        self._recently_committed = SeenCache(4 * limits.mempool_max_txs)
        self.ledger: Ledger | None = None
        self.ordering: Ordering | None = None
        self.peers: PeerManager | None = None
        self.gossip: Gossip | None = None
        self.api_address: tuple[str, int] | None = None
        self.transport_port: int | None = None
        self._ledger_lock = trio.Lock()
        #: Worker threads of the ordering path (Raft's writes, building and applying
        #: blocks), apart from trio's shared ones that client reads use. With
        #: ``worker_threads`` off only Raft's writes use them (an fsync stays off the
        #: loop; moving it on saved little).
        self._core_threads = trio.CapacityLimiter(2)
        #: Where recently committed transactions are, with their verdicts, so that
        #: answering a client that waited for one reads no block from the store.
        self.recent_results: OrderedDict[bytes, tuple[int, int, TxResult]] = OrderedDict()
        self._recent_max = 2 * limits.mempool_max_txs
        self._wake = trio.Event()
        self._waiters: dict[bytes, list[_CommitWaiter]] = {}
        self._accepted_at: dict[bytes, float] = {}
        self._batch_started: float | None = None
        #: this leader's proposed blocks not yet applied, oldest first (see _cut_base)
        self._inflight: list[_InFlight] = []
        self._accepting = False
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._catching_up = False
        #: Membership updates are held back while the version is this one (Raft refused
        #: the configuration change the last one made).
        self._updates_refused_at: int | None = None
        #: The last height each other member announced (for status and lag).
        self.peer_heights: dict[str, int] = {}
        self._sync_replies: trio.MemorySendChannel[tuple[str, Any]] | None = None
        self._nursery: trio.Nursery
        self._log = structlog.get_logger("p2pledger.node", member=self.name)

    # --- lifecycle --------------------------------------------------------------------

    def stop(self) -> None:
        """Begin a graceful shutdown (idempotent; ``run`` returns when it is done)."""
        self._stop.set()

    async def wait_stopped(self) -> None:
        """Wait until ``run`` has finished (after ``stop`` or a failure)."""
        await self._stopped.wait()

    @property
    def network(self) -> Network:
        """The membership in force: the ledger's at its tip (the founding file's until
        the ledger is open)."""
        return self._network

    @property
    def role(self) -> Role | None:
        """This member's role in the membership in force (None: not named)."""
        me = self._network.member(self.name)
        return me.role if me is not None and self.standing_kind is StandingKind.MEMBER else None

    @property
    def standing_kind(self) -> StandingKind | None:
        return self.standing.kind if self.standing is not None else None

    async def run(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        ledger = await trio.to_thread.run_sync(self._open_ledger)
        self.ledger = ledger
        try:
            self._network = ledger.network
            self._former_signers = _signer_keys(self.founding) - _signer_keys(ledger.network)
            self.metrics.membership_version.set(self._network.version)
            self.standing = standing_of(
                self._network,
                self.name,
                key=self._key,
                next_key=self._next_key,
                was_member=self._was_member(ledger),
            )
            self.key = self.standing.identity
            await self._run(ledger, task_status)
        finally:
            await trio.to_thread.run_sync(ledger.close)
            self._stopped.set()
            self._log.info("node.stopped", height=ledger.tip.height)

    def _open_ledger(self) -> Ledger:
        data = self.config.data_dir
        if not (data / "ledger.lmdb").exists():
            # A wiped (or new) member starts from genesis and catches up from the others.
            return Ledger.create(data, self.founding)
        return Ledger.open(data, chain_id=self.chain_id)

    def _was_member(self, ledger: Ledger) -> bool:
        """Whether this member was named once, so that, not named now, it was removed
        rather than still joining: the founding file names it. (A member that joined
        later and was then removed restarts as joining, refused by every member: the
        ledger's history does not keep each version's member names.)"""
        return ledger.founding_network.member(self.name) is not None

    def _ledger_point(self) -> SnapshotMeta:
        """The Raft point the ledger has reached: the index and term of the entry that
        carried its tip, and the configuration of the membership in force there (the
        one Raft held at that index: every change to it is that block's entry)."""
        assert self.ledger is not None
        return SnapshotMeta(
            index=self.ledger.store.applied_raft_index(),
            term=self.ledger.tip.header.term,
            conf=conf_of(self.ledger.network),
        )

    async def _run(self, ledger: Ledger, task_status: trio.TaskStatus[Node]) -> None:
        # A fresh Raft log starts at the founding configuration: the configuration
        # entries in the log (or a later snapshot point) bring it to the one in force.
        log = await trio.to_thread.run_sync(
            lambda: RaftLog(ledger.store, initial_conf=conf_of(self.founding))
        )
        point = await trio.to_thread.run_sync(self._ledger_point)
        applied = max(point.index, log.snapshot().index)
        ahead = applied > log.initial_state().commit
        if ahead:
            # A crash after a block catch-up, before Raft persisted the restore: start
            # at the persisted commit and restore the ledger's point right away.
            applied = max(log.initial_state().commit, log.snapshot().index)
        raw = RawNode(
            Config(
                id=self.name,
                storage=log,
                rng=self.env.rng,
                election_tick=self.settings.election_ticks,
                heartbeat_tick=self.settings.heartbeat_ticks,
                applied=applied,
                logger=structlog.get_logger("p2pledger.raft", member=self.name).info,
            )
        )
        if ahead:
            raw.restore(point)
        listen = parse_address(self.config.listen)
        limits = self.config.limits
        standing = self.standing
        assert standing is not None
        self.peers = peers = PeerManager(
            identity=self.key,
            network=self._network,
            name=self.name,
            joining=standing.kind is StandingKind.JOINING,
            chain_id=self.chain_id,
            registry=self.env.registry,
            messages=message_types(),
            config=TransportConfig(
                max_frame_size=limits.max_frame_bytes,
                handshake_timeout=limits.handshake_timeout_s,
                send_queue_messages=limits.peer_queue_max_messages,
                send_queue_bytes=limits.peer_queue_max_bytes,
            ),
            net=self.env.net,
            listen=(listen.host, listen.port),
            rng=self.env.rng,
            resolve=self._dial_address,
            alternate=self._next_key,
        )
        self.ordering = ordering = Ordering(
            raw=raw,
            log=log,
            send=self._send_raft,
            apply=self._apply_entries,
            catch_up=self._start_catch_up,
            tick_seconds=self.settings.tick_seconds,
            keep_entries=self.settings.raft_keep_entries,
            limiter=self._core_threads,
        )
        self.gossip = gossip = Gossip(
            peers,
            pending=lambda: [
                t.raw
                for t in self.mempool.batch(max_transactions=len(self.mempool), max_bytes=1 << 62)
            ],
            interval_s=self.settings.gossip_interval_s,
            batch_txs=512,
            batch_bytes=limits.max_frame_bytes // 2,
        )
        self.metrics.height.set(ledger.tip.height)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.transport_port = await nursery.start(peers.run)
            await nursery.start(ordering.run)
            nursery.start_soon(self._receive_loop, nursery)
            nursery.start_soon(self._cutter)
            nursery.start_soon(self._relay_changes)
            nursery.start_soon(self._watch_peers)
            nursery.start_soon(self._announce_height)
            nursery.start_soon(self._watch_node_file)
            nursery.start_soon(gossip.run)
            api_stop = trio.Event()
            if self.settings.serve_api:
                address = parse_address(self.config.api)
                app = create_app(NodeService(self), self.env.registry)
                bound = await nursery.start(
                    partial(
                        serve_api, app, address.host, address.port, shutdown_trigger=api_stop.wait
                    )
                )
                self.api_address = (bound.host, bound.port)
            self._accepting = True
            self._log.info(
                "node.started",
                height=ledger.tip.height,
                transport_port=self.transport_port,
                api=self.api_address,
                membership_version=self._network.version,
                standing=standing.kind.value,
            )
            self._log_standing(standing)
            task_status.started(self)
            await self._stop.wait()
            self._log.info("node.stopping", pending=len(self.mempool))
            self._accepting = False
            api_stop.set()
            with trio.move_on_after(self.settings.drain_timeout_s):
                while len(self.mempool) and ordering.statistics().lead is not None:
                    await ordering.wait_changed()
            nursery.cancel_scope.cancel()

    def _dial_address(self, member: Member) -> tuple[str, int]:
        """Where to dial ``member``: node.toml's ``[dial]`` entry, else its address."""
        address = parse_address(self.config.dial.get(member.name, member.address))
        return address.host, address.port

    # --- messages from peers ----------------------------------------------------------

    async def _receive_loop(self, nursery: trio.Nursery) -> None:
        assert self.peers is not None and self.ordering is not None
        while True:
            delivery = await self.peers.receive()
            kind = delivery.message.type
            try:
                if kind == RAFT:
                    self.ordering.step_nowait(_raft_message(delivery))
                elif kind == GOSSIP_TXS:
                    await self._on_gossip(delivery)
                elif kind == SYNC_REQUEST:
                    nursery.start_soon(self._serve_sync, delivery)
                elif kind == STATUS_HEIGHT:
                    height = delivery.message.body.get("height")
                    if not isinstance(height, int) or height < 0:
                        raise BadMessage("status.height carries a non-negative height")
                    self.peer_heights[delivery.peer] = height
                elif kind == SYNC_BLOCKS and self._sync_replies is not None:
                    with contextlib.suppress(trio.WouldBlock):
                        self._sync_replies.send_nowait((delivery.peer, delivery.message.body))
                elif kind == SYNC_BLOCKS:
                    # Unasked: the blocks that removed this member (see _send_farewells).
                    nursery.start_soon(self._apply_farewell, delivery)
            except (BadMessage, RemoteError) as exc:
                self._log.warning(
                    "peer.message.refused", peer=delivery.peer, type=kind, error=str(exc)
                )

    async def _watch_peers(self) -> None:
        """Tell Raft when a member's connection drops or comes back, so the leader
        re-probes that member's log instead of trusting what it last knew."""
        assert self.peers is not None and self.ordering is not None
        sessions: dict[str, bytes | None] = {}
        while True:
            for member in self.network.members:
                if member.name == self.name:
                    continue
                session = self.peers.session_with(member.name)
                if sessions.get(member.name) != session:
                    # dropped, or replaced by a new connection (the member restarted)
                    self.ordering.report_unreachable_nowait(member.name)
                    sessions[member.name] = session
            await trio.sleep(self.settings.tick_seconds)

    async def _announce_height(self) -> None:
        """Tell every member our height once a second (for their status and lag)."""
        assert self.peers is not None and self.ledger is not None
        while True:
            self.peers.broadcast_nowait(
                Message(type=STATUS_HEIGHT, body={"height": self.ledger.tip.height})
            )
            await trio.sleep(1.0)

    def _send_raft(self, message: RaftMessage) -> None:
        assert self.peers is not None
        self.peers.send_nowait(
            message.recipient, Message(type=RAFT, body={"m": message.to_value()})
        )

    # --- transactions in --------------------------------------------------------------

    async def submit(self, raw: bytes) -> bytes:
        """Entry checks, then the mempool, then gossip; return the transaction id."""
        (result,) = await self.submit_many([raw])
        if isinstance(result, Exception):
            raise result
        return result

    async def submit_many(self, raws: Sequence[bytes]) -> list[bytes | P2PLedgerError]:
        """``submit`` for each of ``raws``, in order: its id, or what refused it
        (``TxRejected``, ``MempoolFull``). The entry checks run in the verification
        threads, with one LMDB read per chunk for the already committed ones."""
        if not self._accepting:
            raise Unavailable(
                5.0, "shutting_down", "this member is shutting down; submit to another member"
            )
        if self.standing is not None and self.standing.problem is not None:
            raise Unavailable(
                5.0, "not_a_member", f"this daemon is {self.standing.problem}; submit to a member"
            )
        assert self.ledger is not None
        checked, committed = await self.verifier.check(
            raws,
            chain_id=self.chain_id,
            network=self.network,
            max_tx_bytes=self.config.limits.max_tx_bytes,
            committed=self.ledger.store.committed_ids,
        )
        out: list[bytes | P2PLedgerError] = []
        now = trio.current_time()
        admitted = 0
        for tx in checked:
            if isinstance(tx, TxRejected):
                out.append(tx)
            elif tx.id in self.mempool:
                out.append(
                    TxRejected("already_pending", f"transaction {tx.id.hex()} is already pending")
                )
            elif tx.id in committed or tx.id in self._recently_committed:
                out.append(
                    TxRejected(
                        "already_committed", f"transaction {tx.id.hex()} is already committed"
                    )
                )
            else:
                try:
                    self._admit(tx)
                except MempoolFull as exc:
                    out.append(exc)
                    continue
                admitted += 1
                self._accepted_at[tx.id] = now
                out.append(tx.id)
        if admitted:
            self.metrics.received_api.inc(admitted)
            self._update_mempool_metrics()
            self._wake.set()
        return out

    def _admit(self, tx: Transaction) -> None:
        if not self.mempool:
            self._batch_started = trio.current_time()
        self.mempool.add(tx)  # MempoolFull propagates, changing nothing
        self.seen.add(tx.id)
        assert self.gossip is not None
        self.gossip.push(tx.raw)

    async def _on_gossip(self, delivery: Delivery) -> None:
        body = delivery.message.body
        txs = body.get("txs")
        if not isinstance(txs, list) or not all(isinstance(t, bytes) for t in txs):
            raise BadMessage("gossip.txs carries a list of transactions")
        fresh = [
            raw
            for raw in txs
            if self.seen.add(tx_id := hashlib.sha256(raw).digest())
            and tx_id not in self._recently_committed
        ]
        if not fresh:
            return
        assert self.ledger is not None
        checked, committed = await self.verifier.check(
            fresh,
            chain_id=self.chain_id,
            network=self.network,
            max_tx_bytes=self.config.limits.max_tx_bytes,
            committed=self.ledger.store.committed_ids,
            former_signers=self._former_signers,
        )
        received = 0
        for tx in checked:
            if isinstance(tx, TxRejected):
                self.metrics.rejected.labels(tx.reason).inc()
                continue
            if tx.id in committed or tx.id in self.mempool or tx.id in self._recently_committed:
                continue  # (it may have committed while we checked it)
            try:
                if not self.mempool:
                    self._batch_started = trio.current_time()
                self.mempool.add(tx)
            except MempoolFull:
                self.metrics.rejected.labels("mempool_full").inc()
                break
            received += 1
        if received:
            self.metrics.received_gossip.inc(received)
        self._update_mempool_metrics()
        self._wake.set()

    def _update_mempool_metrics(self) -> None:
        stats = self.mempool.statistics()
        self.metrics.mempool_txs.set(stats.transactions)
        self.metrics.mempool_bytes.set(stats.bytes)

    # --- the leader cuts blocks -------------------------------------------------------

    async def _relay_changes(self) -> None:
        assert self.ordering is not None
        while True:
            await self.ordering.wait_changed()
            stats = self.ordering.statistics()
            self.metrics.term.set(stats.term)
            self.metrics.is_leader.set(1 if self.ordering.is_leader else 0)
            self._wake.set()

    async def _cutter(self) -> None:
        assert self.ordering is not None
        while True:
            limits = self.network.limits  # the membership in force sets them
            timeout = limits.batch_timeout_ms / 1000
            now = trio.current_time()
            deadline: float | None = None
            if self.mempool and self._accepting_blocks():
                may, _ = self._cut_base()
                waiting, size = self._waiting() if may else (0, 0)
                if may and waiting > 0:
                    started = self._batch_started if self._batch_started is not None else now
                    full = waiting >= limits.max_transactions or size >= limits.max_bytes
                    if full or now >= started + timeout:
                        await self._cut()
                        continue
                    deadline = started + timeout
            self._wake = trio.Event()
            if deadline is None:
                await self._wake.wait()
            else:
                with trio.move_on_at(deadline):
                    await self._wake.wait()

    def _waiting(self) -> tuple[int, int]:
        """How many pooled transactions, and how many bytes of them, no block in flight
        carries. A block in flight keeps its ids in the pool until it commits (the
        commit removes both at once), so subtracting its id count spares the cutter a
        pool lookup per id at every wake-up. Should an id have left the pool anyway,
        that count is low, never high; when it leaves nothing, the lookups decide, so
        a waiting transaction is never missed."""
        stats = self.mempool.statistics()
        inflight = self._inflight
        waiting = stats.transactions - sum(len(f.ids) for f in inflight)
        size = stats.bytes - sum(f.size for f in inflight)
        if waiting <= 0 and inflight:
            pool = self.mempool
            waiting = stats.transactions - sum(sum(1 for i in f.ids if i in pool) for f in inflight)
        return waiting, size

    def _cut_base(self) -> tuple[bool, bytes | None]:
        """Whether this member may cut a block now, and the block to build it on
        (None: the tip). An idle leader builds on the tip. A leader with blocks in
        flight builds on the last of them when every entry of its log past the applied
        one is one of them (all proposed in this term), none changes the membership,
        and fewer than ``_PIPELINE_DEPTH`` are in flight; otherwise it waits. A lost
        term or leadership forgets them: their transactions are still in the mempool
        and are cut again."""
        assert self.ordering is not None
        ordering = self.ordering
        inflight = self._inflight
        if not ordering.is_leader:
            inflight.clear()
            return False, None
        stats = ordering.statistics()
        if inflight and inflight[0].term != stats.term:
            inflight.clear()
        if stats.applied == stats.last_index:
            inflight.clear()
            return True, None
        if not inflight or len(inflight) >= _PIPELINE_DEPTH:
            return False, None
        last = inflight[-1]
        if last.changes_membership or stats.last_index != last.index:
            return False, None
        return True, last.hash

    def _accepting_blocks(self) -> bool:
        return not self._catching_up and self.standing_kind is StandingKind.MEMBER

    async def _cut(self) -> None:
        assert self.ordering is not None and self.ledger is not None
        limits = self.network.limits
        _, base = self._cut_base()
        skip = frozenset().union(*(f.ids for f in self._inflight)) if base else frozenset()
        batch = self.mempool.batch(
            max_transactions=limits.max_transactions, max_bytes=limits.max_bytes, skip=skip
        )
        # One membership update a block, and none while Raft would refuse its change,
        # nor in a block cut while others are in flight (it would follow their state).
        pending = (
            self.ordering.conf_change_pending
            or self._updates_refused_at == self.network.version
            or base is not None
        )
        txs, held = hold_back(batch, conf_change_pending=pending)
        async with self._ledger_lock:
            may, now_base = self._cut_base()
            if not may or now_base != base:
                return  # something committed or changed meanwhile: look again
            term = self.ordering.statistics().term
            before = self.ledger.network
            try:
                block, after, stale = await self._on_core_thread(self._build, txs, term, base)
            except NotPipelinable as exc:
                self._log.info("block.pipeline.reset", error=str(exc))
                self._inflight.clear()
                return
        if stale:
            self.mempool.remove(stale)
            self._update_mempool_metrics()
        self._batch_started = trio.current_time() if self.mempool else None
        if held:
            self._log.debug("block.updates_held", held=len(held), pending=pending)
        if block is None:
            return
        try:
            change = conf_change_of(before, after) if after is not None else None
        except TooManyConfChanges as exc:  # the state machine refuses these: a bug
            self._log.error("block.propose.refused", height=block.height, error=str(exc))
            self._updates_refused_at = before.version
            return
        try:
            if change is None:
                entry = await self.ordering.propose(block.encode(), term=term)
            else:
                carried = ConfChange(op=change.op, node=change.node, context=block.encode())
                entry = await self.ordering.propose_conf_change(carried, term=term)
                self._log.info(
                    "membership.change.proposed",
                    height=block.height,
                    op=change.op.name.lower(),
                    of=change.node,
                    version=after.version if after is not None else None,
                )
        except InvalidConfChange as exc:
            # Raft's configuration and the ledger's membership disagree: hold updates
            # back until the membership changes, and keep ordering everything else.
            self._log.error("block.propose.refused", height=block.height, error=str(exc))
            self._updates_refused_at = before.version
            return
        except ConfChangePending as exc:
            self._log.info("block.propose.held", height=block.height, error=str(exc))
            return
        except RaftError as exc:
            self._log.info("block.propose.failed", height=block.height, error=str(exc))
            return
        if self._inflight and self._inflight[-1].height + 1 != block.height:
            self._inflight.clear()
        if block.height > self.ledger.tip.height:  # (not applied yet)
            self._inflight.append(
                _InFlight(
                    hash=block.hash,
                    height=block.height,
                    index=entry.index,
                    term=term,
                    ids=frozenset(t.id for t in txs).difference(stale),
                    size=sum(len(raw) for raw in block.txs),
                    changes_membership=change is not None or after is not None,
                )
            )

    async def _on_core_thread(self, fn: Callable[[*_Args], _T], *args: *_Args) -> _T:
        """``fn(*args)`` in an ordering worker thread, or on the loop's own thread when
        ``worker_threads`` is off (the ledger lock keeps either from racing a commit)."""
        if self._in_loop:
            await trio.lowlevel.checkpoint()
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args, limiter=self._core_threads)

    def _build(
        self, txs: list[Transaction], term: int, base: bytes | None = None
    ) -> tuple[Block | None, Network | None, list[bytes]]:
        """The next block of ``txs`` (less those already committed) after the tip or
        after ``base`` (a block in flight), and the membership it puts in force if it
        changes it."""
        assert self.ledger is not None
        store = self.ledger.store
        stale = list(store.committed_ids(t.id for t in txs))
        if stale:
            gone = set(stale)
            txs = [t for t in txs if t.id not in gone]
        if not txs:
            return None, None, stale
        block, outcome = self.ledger.execute_proposal(
            txs, key=self.key, time_ms=self.env.wall_ms(), term=term, after=base
        )
        return block, outcome.network, stale

    # --- committed entries ------------------------------------------------------------

    async def _apply_entries(self, entries: Sequence[Entry]) -> None:
        blocks: list[tuple[int, bytes, ConfChange | None]] = []
        for e in entries:
            if e.kind is EntryKind.NORMAL:
                blocks.append((e.index, e.data, None))
            elif e.kind is EntryKind.CONF_CHANGE:
                try:
                    change = e.conf_change()
                except BadMessage as exc:
                    raise NodeDiverged(
                        f"committed Raft entry {e.index} is not a membership change: {exc}"
                    ) from exc
                blocks.append((e.index, change.context, change))
        if not blocks:
            return
        verified = self.verifier.verified
        async with self._ledger_lock:
            committed = await self._on_core_thread(self._apply_sync, blocks, verified)
        self._after_commit(committed)

    def _apply_sync(
        self, blocks: list[tuple[int, bytes, ConfChange | None]], verified: Container[bytes]
    ) -> list[tuple[int, Block]]:
        assert self.ledger is not None
        done: list[tuple[int, Block]] = []
        for raft_index, data, change in blocks:
            try:
                block = Block.decode(data)
            except InvalidBlock as exc:
                raise NodeDiverged(
                    f"committed Raft entry {raft_index} is not a block: {exc}"
                ) from exc
            if self._commit_one(block, raft_index, verified, carried=change, check_conf=True):
                done.append((raft_index, block))
        return done

    def _commit_one(
        self,
        block: Block,
        raft_index: int,
        verified: Container[bytes],
        *,
        carried: ConfChange | None = None,
        check_conf: bool = False,
    ) -> bool:
        """Commit a block that arrived through Raft or catch-up; False if skipped.

        With ``check_conf`` (the block came in a Raft entry), the Raft change the entry
        ``carried`` (None: a normal entry) must be the one the block's membership
        update makes: otherwise Raft and the ledger would disagree on the members.
        """
        assert self.ledger is not None
        tip = self.ledger.tip
        if block.height <= tip.height:
            have = self.ledger.store.block(block.height)
            if have.hash != block.hash:
                raise NodeDiverged(
                    f"block {block.height} committed by Raft ({block.hash.hex()[:16]}) differs "
                    f"from the stored one ({have.hash.hex()[:16]}): this member has diverged"
                )
            return False  # already applied (a replay after restart)
        if block.height != tip.height + 1 or block.header.prev != tip.hash:
            self._log.warning(
                "block.skipped", height=block.height, tip=tip.height, reason="does not extend tip"
            )
            return False
        before = self.ledger.network
        try:
            # the mempool's transactions are decoded and verified already (a lookup
            # from this worker thread while the loop changes the dict is safe)
            outcome = self.ledger.commit(
                block, verified_tx_ids=verified, raft_index=raft_index, known=self.mempool.get
            )
        except (InvalidBlock, BlockRejected) as exc:
            raise NodeDiverged(
                f"committed block {block.height} fails on this member: {exc}; "
                "stopping rather than serving a diverged ledger"
            ) from exc
        if check_conf:
            self._check_carried(block, raft_index, carried, before, outcome.network)
        return True

    @staticmethod
    def _check_carried(
        block: Block,
        raft_index: int,
        carried: ConfChange | None,
        before: Network,
        after: Network | None,
    ) -> None:
        try:
            made = conf_change_of(before, after) if after is not None else None
        except TooManyConfChanges as exc:
            raise NodeDiverged(f"block {block.height}: {exc}") from exc
        want = None if made is None else (made.op, made.node)
        got = None if carried is None else (carried.op, carried.node)
        if want != got:
            raise NodeDiverged(
                f"block {block.height} came in Raft entry {raft_index} carrying the "
                f"configuration change {got}, but its membership update makes {want}: "
                "Raft and the ledger disagree on the members; stopping"
            )

    def _after_commit(self, committed: list[tuple[int, Block]]) -> None:
        now = trio.current_time()
        blocks = [block for _, block in committed]
        for block in blocks:
            inflight = self._inflight
            if any(f.height == block.height and f.hash != block.hash for f in inflight):
                inflight.clear()  # another block took that height: ours are void
            else:
                inflight[:] = [f for f in inflight if f.height > block.height]
        for block in blocks:
            ids = [hashlib.sha256(raw).digest() for raw in block.txs]
            self.mempool.remove(ids)
            recent = self.recent_results
            recently = self._recently_committed
            accepted_at = self._accepted_at
            waiters = self._waiters
            observe = self.metrics.commit_latency.observe
            height = block.height
            valid = 0
            for index, (tx_id, result) in enumerate(zip(ids, block.results, strict=True)):
                recently.add(tx_id)
                recent[tx_id] = (height, index, result)
                valid += result.valid
                started = accepted_at.pop(tx_id, None)
                if started is not None:
                    observe(now - started)
                if tx_id in waiters:
                    for waiter in waiters.pop(tx_id):
                        waiter.committed(tx_id)
            if valid:
                self.metrics.committed_valid.inc(valid)
            if valid < len(ids):
                self.metrics.committed_invalid.inc(len(ids) - valid)
            self.metrics.blocks.inc()
        while len(self.recent_results) > self._recent_max:
            self.recent_results.popitem(last=False)
        if blocks:
            self.metrics.height.set(blocks[-1].height)
            self._log.debug("blocks.committed", height=blocks[-1].height, count=len(blocks))
            self._follow_membership(committed)
        if not self.mempool:
            self._batch_started = None
        self._update_mempool_metrics()
        self._wake.set()

    # --- the membership in force ------------------------------------------------------

    def _follow_membership(self, committed: list[tuple[int, Block]]) -> None:
        """After a commit: if the ledger's membership changed, make everything follow
        it (standing, identity, transport). Synchronous, so the next block is cut and
        signed under the new membership."""
        assert self.ledger is not None and self.standing is not None
        network = self.ledger.network
        if network.version == self._network.version:
            return
        old, self._network = self._network, network
        self._former_signers |= _signer_keys(old) - _signer_keys(network)
        if self.peers is not None:
            self._send_farewells(old, network, committed)
        self.metrics.membership_version.set(network.version)
        before = self.standing
        self._reload_next_key(network)
        try:
            standing = standing_of(
                network,
                self.name,
                key=self._key,
                next_key=self._next_key,
                was_member=before.kind is not StandingKind.JOINING,
            )
        except KeyNotInForce as exc:
            standing = Standing(kind=StandingKind.REMOVED, identity=self.key, problem=str(exc))
            self._log.error("node.key.unknown", version=network.version, error=str(exc))
        self.standing = standing
        self._log.info(
            "membership.changed",
            version=network.version,
            height=self.ledger.tip.height,
            members=[m.name for m in network.members],
        )
        rotated = standing.identity is not self.key
        if rotated:
            self.key = standing.identity
            self._log.info(
                "node.key.rotated", version=network.version, key=self.key.public_key.short
            )
        if self.peers is not None:
            self.peers.update_membership(
                network,
                identity=self.key,
                joining=standing.kind is StandingKind.JOINING,
            )
        if standing.kind is not before.kind:
            self._log_standing(standing)

    def _reload_next_key(self, network: Network) -> None:
        """If ``network`` gives this member a key it does not hold, read node.toml's
        ``next_key_file`` again (an admin adds it while the daemon runs)."""
        me = network.member(self.name)
        held = {k.public_key for k in (self._key, self._next_key) if k is not None}
        if me is None or me.node_key in held:
            return
        key = self._read_next_key()
        if key is not None and key.public_key == me.node_key:
            self._take_next_key(key)

    def _read_next_key(self) -> SigningKey | None:
        """node.toml's ``next_key_file`` as it is now (None: none, or unreadable)."""
        if self._config_file is None:
            return None
        try:
            path = load_node(self._config_file).next_key_file
            return None if path is None else load_signing_key(path)
        except P2PLedgerError as exc:
            self._log.error("node.next_key.unreadable", file=str(self._config_file), error=str(exc))
            return None

    def _take_next_key(self, key: SigningKey) -> None:
        if key.public_key == self.key.public_key or (
            self._next_key is not None and self._next_key.public_key == key.public_key
        ):
            return
        self._next_key = key
        if self.peers is not None:
            self.peers.set_alternate_identity(key)
        self._log.info("node.next_key.loaded", key=key.public_key.short)

    async def _watch_node_file(self) -> None:
        """Pick up a ``next_key_file`` added to node.toml while running, before the
        rotation commits: a member that misses the commit then still gets back in by
        dialing under the next key (the others already expect it)."""
        if self._config_file is None:
            return
        seen: float | None = None
        while True:
            try:
                mtime = self._config_file.stat().st_mtime
            except OSError:
                mtime = None
            changed = seen is not None and mtime is not None and mtime != seen
            if changed or (seen is None and self._next_key is None):
                key = self._read_next_key()
                if key is not None:
                    self._take_next_key(key)
            seen = mtime if mtime is not None else seen
            await trio.sleep(NODE_FILE_POLL_S)

    def _send_farewells(
        self, old: Network, new: Network, committed: list[tuple[int, Block]]
    ) -> None:
        """Send each removed member the blocks just committed that it may lack: Raft
        stops replicating to it as soon as its removal is appended, so without them its
        ledger would never show the removal. They are queued before the transport drops
        it, and so still written."""
        assert self.peers is not None
        for member in old.members:
            name = member.name
            if name == self.name or new.member(name) is not None:
                continue
            since = self.peer_heights.get(name, 0)
            blocks = [[i, b.encode()] for i, b in committed if b.height > since]
            if blocks:
                self.peers.send_nowait(name, Message(type=SYNC_BLOCKS, body={"blocks": blocks}))
                self._log.info("membership.farewell", peer=name, blocks=len(blocks))

    def _log_standing(self, standing: Standing) -> None:
        if standing.kind is StandingKind.JOINING:
            self._log.warning(
                "node.joining",
                version=self._network.version,
                members=[m.name for m in self._network.members],
                detail=standing.problem,
            )
        elif standing.kind is StandingKind.REMOVED:
            self._log.error("node.removed", version=self._network.version, detail=standing.problem)
        elif self._network.version:
            self._log.info("node.member", version=self._network.version, role=self.role)

    async def wait_committed(self, tx_id: bytes) -> None:
        """Return once ``tx_id`` is committed on this member (the caller bounds it)."""
        await self.wait_all_committed((tx_id,))

    async def wait_all_committed(self, tx_ids: Iterable[bytes]) -> None:
        """Return once every one of ``tx_ids`` is committed on this member (the caller
        bounds it): one waiter for a client's whole batch, not a task each."""
        assert self.ledger is not None
        recently = self._recently_committed
        waiter = _CommitWaiter({t for t in tx_ids if t not in recently})
        if not waiter.remaining:
            return
        watched = list(waiter.remaining)
        for tx_id in watched:
            self._waiters.setdefault(tx_id, []).append(waiter)
        try:
            # A pending transaction is not committed (it leaves the mempool when it
            # commits, and its waiters are told then): only the others are looked up.
            unknown = [t for t in watched if t not in self.mempool]
            if unknown:
                found = await trio.to_thread.run_sync(self.ledger.store.committed_ids, unknown)
                for tx_id in found:
                    waiter.committed(tx_id)
            await waiter.done.wait()
        finally:
            for tx_id in watched:
                waiting = self._waiters.get(tx_id)
                if waiting is not None and waiter in waiting:
                    waiting.remove(waiter)
                    if not waiting:
                        del self._waiters[tx_id]

    # --- catch-up from blocks (the ledger is Raft's snapshot) -------------------------

    def _start_catch_up(self, snapshot: SnapshotMeta) -> None:
        if self._catching_up:
            return
        self._catching_up = True
        self._nursery.start_soon(self._catch_up, snapshot)

    async def _catch_up(self, snapshot: SnapshotMeta) -> None:
        assert self.peers is not None and self.ordering is not None and self.ledger is not None
        send, receive = trio.open_memory_channel[tuple[str, Any]](16)
        self._sync_replies = send
        self._log.info("catchup.started", target_index=snapshot.index)
        try:
            while await trio.to_thread.run_sync(self.ledger.store.applied_raft_index) < (
                snapshot.index
            ):
                peers = sorted(self.peers.connected_peers())
                lead = self.ordering.statistics().lead
                if lead in peers:
                    peers.remove(lead)
                    peers.insert(0, lead)
                if not peers:
                    await trio.sleep(self.settings.catch_up_timeout_s / 5)
                    continue
                progressed = False
                for peer in peers:
                    self.peers.send_nowait(
                        peer, Message(type=SYNC_REQUEST, body={"from": self.ledger.tip.height + 1})
                    )
                    with trio.move_on_after(self.settings.catch_up_timeout_s):
                        frm, body = await receive.receive()
                        progressed = await self._apply_sync_blocks(frm, body)
                    if progressed:
                        break
                if not progressed:
                    await trio.sleep(self.settings.catch_up_timeout_s / 5)
            # Restore Raft at the point the ledger reached (at or past the leader's
            # snapshot point), with the configuration of the membership in force there.
            point = await trio.to_thread.run_sync(self._ledger_point)
            await self.ordering.restore(point)
            self._log.info("catchup.complete", height=self.ledger.tip.height, index=point.index)
        finally:
            self._sync_replies = None
            self._catching_up = False

    async def _apply_sync_blocks(self, peer: str, body: dict[str, Any]) -> bool:
        items = body.get("blocks")
        if not isinstance(items, list) or not items:
            return False
        parsed: list[tuple[int, Block]] = []
        for item in items:
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not isinstance(item[0], int)
                or not isinstance(item[1], bytes)
            ):
                raise BadMessage("sync.blocks holds [raft_index, block] pairs")
            parsed.append((item[0], Block.decode(item[1])))
        async with self._ledger_lock:
            committed = await self._on_core_thread(self._apply_synced, parsed)
        self._after_commit(committed)
        self._log.info(
            "catchup.progress", peer=peer, height=self.ledger.tip.height if self.ledger else 0
        )
        return bool(committed)

    async def _apply_farewell(self, delivery: Delivery) -> None:
        try:
            await self._apply_sync_blocks(delivery.peer, delivery.message.body)
        except (BadMessage, InvalidBlock) as exc:
            self._log.warning(
                "peer.message.refused", peer=delivery.peer, type=SYNC_BLOCKS, error=str(exc)
            )

    def _apply_synced(self, blocks: list[tuple[int, Block]]) -> list[tuple[int, Block]]:
        done = []
        for raft_index, block in blocks:
            if self._commit_one(block, raft_index, frozenset()):
                done.append((raft_index, block))
        return done

    async def _serve_sync(self, delivery: Delivery) -> None:
        assert self.ledger is not None and self.peers is not None
        start = delivery.message.body.get("from")
        if not isinstance(start, int) or start < 1:
            raise BadMessage("sync.request needs a positive 'from' height")
        store = self.ledger.store

        def read() -> list[list[Any]]:
            out: list[list[Any]] = []
            size = 0
            for block in store.blocks(start):
                data = block.encode()
                if out and size + len(data) > _SYNC_BYTES:
                    break
                out.append([store.raft_index_of(block.height) or 0, data])
                size += len(data)
            return out

        blocks = await trio.to_thread.run_sync(read)
        self.peers.send_nowait(delivery.peer, Message(type=SYNC_BLOCKS, body={"blocks": blocks}))

    # --- what the API and operators see -----------------------------------------------

    def log_fields(self) -> dict[str, int]:
        """The term and height to put on every log line."""
        fields: dict[str, int] = {}
        if self.ordering is not None:
            fields["term"] = self.ordering.statistics().term
        if self.ledger is not None:
            fields["height"] = self.ledger.tip.height
        return fields

    def health_problem(self) -> str | None:
        """Why this member is not healthy (for /health), or None when it is."""
        if self.ledger is None or self.ordering is None:
            return "the store is not open yet"
        if self.standing is not None and self.standing.problem is not None:
            return self.standing.problem
        if self.ordering.statistics().lead is None:
            return "no quorum or leader is in reach"
        return None

    def healthy(self) -> bool:
        return self.health_problem() is None


def _raft_message(delivery: Delivery) -> RaftMessage:
    value = delivery.message.body.get("m")
    message = message_from_value(value)
    if message.sender != delivery.peer:
        raise BadMessage(f"a Raft message from {delivery.peer} claims to be from {message.sender}")
    return message


def _signer_keys(network: Network) -> set[bytes]:
    """Every key that may sign a transaction under ``network`` (users and admins)."""
    return {k.raw for m in network.members for k in (*m.users, *m.admins)}
