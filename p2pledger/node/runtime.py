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
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
import trio

from p2pledger.api.admission import check_entry
from p2pledger.api.app import create_app
from p2pledger.api.errors import MempoolFull as ApiMempoolFull
from p2pledger.api.errors import TxRejected
from p2pledger.api.server import serve_api
from p2pledger.chain import Block, Transaction, chain_id_of
from p2pledger.config import NodeConfig, load_network, parse_address
from p2pledger.crypto import SigningKey, load_signing_key
from p2pledger.errors import BlockRejected, InvalidBlock, LocalError, RemoteError
from p2pledger.gossip import Mempool, MempoolFull, SeenCache
from p2pledger.ledger import Ledger
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
from p2pledger.node.service import NodeService
from p2pledger.raft import (
    BadMessage,
    Config,
    ConfState,
    Entry,
    EntryKind,
    RawNode,
    SnapshotMeta,
    message_from_value,
)
from p2pledger.raft import Message as RaftMessage
from p2pledger.raft.errors import RaftError
from p2pledger.store.raft_log import RaftLog
from p2pledger.wire import Delivery, Message, PeerManager, TransportConfig

__all__ = ["Node", "NodeDiverged", "NodeSettings"]

_SYNC_BYTES = 2 * 1024 * 1024


class NodeDiverged(LocalError):
    """A committed block does not check out against this member's ledger: stop."""


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
    ) -> None:
        self.config = config
        self.env = env or Environment()
        self.settings = settings or NodeSettings()
        self.network = network or load_network(config.network)
        self.key = key or load_signing_key(config.key_file)
        me = self.network.member(config.name)
        if me is None or me.node_key != self.key.public_key:
            raise LocalError(
                f"{config.key_file} is not the node key network.toml gives {config.name}"
            )
        self.name = config.name
        self.role = me.role
        self.chain_id = chain_id_of(self.network)
        self.metrics = NodeMetrics(self.env.registry)
        limits = config.limits
        self.mempool = Mempool(
            max_transactions=limits.mempool_max_txs, max_bytes=limits.mempool_max_bytes
        )
        self.seen = SeenCache(4 * limits.mempool_max_txs)
        self._recently_committed = SeenCache(4 * limits.mempool_max_txs)
        self.ledger: Ledger | None = None
        self.ordering: Ordering | None = None
        self.peers: PeerManager | None = None
        self.gossip: Gossip | None = None
        self.api_address: tuple[str, int] | None = None
        self.transport_port: int | None = None
        self._ledger_lock = trio.Lock()
        self._wake = trio.Event()
        self._waiters: dict[bytes, list[trio.Event]] = {}
        self._accepted_at: dict[bytes, float] = {}
        self._batch_started: float | None = None
        self._accepting = False
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._catching_up = False
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

    async def run(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        ledger = await trio.to_thread.run_sync(self._open_ledger)
        self.ledger = ledger
        try:
            await self._run(ledger, task_status)
        finally:
            await trio.to_thread.run_sync(ledger.close)
            self._stopped.set()
            self._log.info("node.stopped", height=ledger.tip.height)

    def _open_ledger(self) -> Ledger:
        data = self.config.data_dir
        if not (data / "ledger.lmdb").exists():
            # A wiped (or new) member starts from genesis and catches up from the others.
            return Ledger.create(data, self.network)
        return Ledger.open(data, chain_id=self.chain_id)

    async def _run(self, ledger: Ledger, task_status: trio.TaskStatus[Node]) -> None:
        log = await trio.to_thread.run_sync(
            lambda: RaftLog(ledger.store, initial_conf=conf_of(self.network))
        )
        applied = await trio.to_thread.run_sync(ledger.store.applied_raft_index)
        raw = RawNode(
            Config(
                id=self.name,
                storage=log,
                rng=self.env.rng,
                election_tick=self.settings.election_ticks,
                heartbeat_tick=self.settings.heartbeat_ticks,
                applied=max(applied, log.snapshot().index),
                logger=structlog.get_logger("p2pledger.raft", member=self.name).info,
            )
        )
        listen = parse_address(self.config.listen)
        limits = self.config.limits
        self.peers = peers = PeerManager(
            identity=self.key,
            network=self.network,
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
        )
        self.ordering = ordering = Ordering(
            raw=raw,
            log=log,
            send=self._send_raft,
            apply=self._apply_entries,
            catch_up=self._start_catch_up,
            tick_seconds=self.settings.tick_seconds,
            keep_entries=self.settings.raft_keep_entries,
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
            )
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
        if not self._accepting:
            raise ApiMempoolFull(5.0, "this member is shutting down; submit to another member")
        tx = check_entry(
            raw,
            chain_id=self.chain_id,
            network=self.network,
            max_tx_bytes=self.config.limits.max_tx_bytes,
        )
        if tx.id in self.mempool:
            raise TxRejected("already_pending", f"transaction {tx.id.hex()} is already pending")
        assert self.ledger is not None
        if await trio.to_thread.run_sync(self.ledger.store.tx_location, tx.id) is not None:
            raise TxRejected("already_committed", f"transaction {tx.id.hex()} is already committed")
        self._admit(tx)
        self.metrics.received.labels("api").inc()
        self._accepted_at[tx.id] = trio.current_time()
        return tx.id

    def _admit(self, tx: Transaction) -> None:
        if not self.mempool:
            self._batch_started = trio.current_time()
        self.mempool.add(tx)  # MempoolFull propagates, changing nothing
        self.seen.add(tx.id)
        assert self.gossip is not None
        self.gossip.push(tx.raw)
        self._update_mempool_metrics()
        self._wake.set()

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
        accepted, rejected = await trio.to_thread.run_sync(self._check_gossip, fresh)
        for reason in rejected:
            self.metrics.rejected.labels(reason).inc()
        for tx in accepted:
            if tx.id in self.mempool or tx.id in self._recently_committed:
                continue  # (it may have committed while we checked it)
            try:
                if not self.mempool:
                    self._batch_started = trio.current_time()
                self.mempool.add(tx)
            except MempoolFull:
                self.metrics.rejected.labels("mempool_full").inc()
                break
            self.metrics.received.labels("gossip").inc()
        self._update_mempool_metrics()
        self._wake.set()

    def _check_gossip(self, raws: list[bytes]) -> tuple[list[Transaction], list[str]]:
        assert self.ledger is not None
        ok: list[Transaction] = []
        rejected: list[str] = []
        for raw in raws:
            try:
                tx = check_entry(
                    raw,
                    chain_id=self.chain_id,
                    network=self.network,
                    max_tx_bytes=self.config.limits.max_tx_bytes,
                )
            except TxRejected as exc:
                rejected.append(exc.reason)
                continue
            if self.ledger.store.tx_location(tx.id) is None:
                ok.append(tx)
        return ok, rejected

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
        limits = self.network.limits
        timeout = limits.batch_timeout_ms / 1000
        while True:
            now = trio.current_time()
            deadline: float | None = None
            if self.ordering.idle_leader and self.mempool and self._accepting_blocks():
                stats = self.mempool.statistics()
                started = self._batch_started if self._batch_started is not None else now
                full = (
                    stats.transactions >= limits.max_transactions or stats.bytes >= limits.max_bytes
                )
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

    def _accepting_blocks(self) -> bool:
        return not self._catching_up

    async def _cut(self) -> None:
        assert self.ordering is not None and self.ledger is not None
        limits = self.network.limits
        txs = self.mempool.batch(
            max_transactions=limits.max_transactions, max_bytes=limits.max_bytes
        )
        async with self._ledger_lock:
            if not self.ordering.idle_leader:
                return
            term = self.ordering.statistics().term
            block, stale = await trio.to_thread.run_sync(self._build, txs, term)
        if stale:
            self.mempool.remove(stale)
            self._update_mempool_metrics()
        self._batch_started = trio.current_time() if self.mempool else None
        if block is None:
            return
        try:
            await self.ordering.propose(block.encode())
        except RaftError as exc:
            self._log.info("block.propose.failed", height=block.height, error=str(exc))

    def _build(self, txs: list[Transaction], term: int) -> tuple[Block | None, list[bytes]]:
        assert self.ledger is not None
        store = self.ledger.store
        stale = [t.id for t in txs if store.tx_location(t.id) is not None]
        if stale:
            gone = set(stale)
            txs = [t for t in txs if t.id not in gone]
        if not txs:
            return None, stale
        block = self.ledger.propose(txs, key=self.key, time_ms=self.env.wall_ms(), term=term)
        return block, stale

    # --- committed entries ------------------------------------------------------------

    async def _apply_entries(self, entries: Sequence[Entry]) -> None:
        blocks = [(e.index, e.data) for e in entries if e.kind is EntryKind.NORMAL]
        if not blocks:
            return
        verified = frozenset(self.mempool.ids())
        async with self._ledger_lock:
            committed = await trio.to_thread.run_sync(self._apply_sync, blocks, verified)
        self._after_commit(committed)

    def _apply_sync(
        self, blocks: list[tuple[int, bytes]], verified: frozenset[bytes]
    ) -> list[Block]:
        assert self.ledger is not None
        done: list[Block] = []
        for raft_index, data in blocks:
            try:
                block = Block.decode(data)
            except InvalidBlock as exc:
                raise NodeDiverged(
                    f"committed Raft entry {raft_index} is not a block: {exc}"
                ) from exc
            if self._commit_one(block, raft_index, verified):
                done.append(block)
        return done

    def _commit_one(self, block: Block, raft_index: int, verified: frozenset[bytes]) -> bool:
        """Commit a block that arrived through Raft or catch-up; False if skipped."""
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
        try:
            self.ledger.commit(block, verified_tx_ids=verified, raft_index=raft_index)
        except (InvalidBlock, BlockRejected) as exc:
            raise NodeDiverged(
                f"committed block {block.height} fails on this member: {exc}; "
                "stopping rather than serving a diverged ledger"
            ) from exc
        return True

    def _after_commit(self, blocks: list[Block]) -> None:
        now = trio.current_time()
        for block in blocks:
            ids = [hashlib.sha256(raw).digest() for raw in block.txs]
            self.mempool.remove(ids)
            for tx_id, result in zip(ids, block.results, strict=True):
                self._recently_committed.add(tx_id)
                self.metrics.committed.labels("valid" if result.valid else "invalid").inc()
                started = self._accepted_at.pop(tx_id, None)
                if started is not None:
                    self.metrics.commit_latency.observe(now - started)
                for event in self._waiters.pop(tx_id, ()):
                    event.set()
            self.metrics.blocks.inc()
        if blocks:
            self.metrics.height.set(blocks[-1].height)
            self._log.debug("blocks.committed", height=blocks[-1].height, count=len(blocks))
        if not self.mempool:
            self._batch_started = None
        self._update_mempool_metrics()
        self._wake.set()

    async def wait_committed(self, tx_id: bytes) -> None:
        """Return once ``tx_id`` is committed on this member (the caller bounds it)."""
        assert self.ledger is not None
        event = trio.Event()
        self._waiters.setdefault(tx_id, []).append(event)
        try:
            if await trio.to_thread.run_sync(self.ledger.store.tx_location, tx_id) is not None:
                return
            await event.wait()
        finally:
            waiting = self._waiters.get(tx_id)
            if waiting is not None and event in waiting:
                waiting.remove(event)
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
            await self.ordering.restore(snapshot)
            self._log.info("catchup.complete", height=self.ledger.tip.height)
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
            committed = await trio.to_thread.run_sync(self._apply_synced, parsed)
        self._after_commit(committed)
        self._log.info(
            "catchup.progress", peer=peer, height=self.ledger.tip.height if self.ledger else 0
        )
        return bool(committed)

    def _apply_synced(self, blocks: list[tuple[int, Block]]) -> list[Block]:
        done = []
        for raft_index, block in blocks:
            if self._commit_one(block, raft_index, frozenset()):
                done.append(block)
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

    def healthy(self) -> bool:
        return (
            self.ledger is not None
            and self.ordering is not None
            and self.ordering.statistics().lead is not None
        )


def conf_of(network: Network) -> ConfState:
    """The Raft configuration of a membership: voters vote, observers learn."""
    return ConfState(
        voters=frozenset(m.name for m in network.members if m.role is Role.VOTER),
        learners=frozenset(m.name for m in network.members if m.role is Role.OBSERVER),
    )


def _raft_message(delivery: Delivery) -> RaftMessage:
    value = delivery.message.body.get("m")
    message = message_from_value(value)
    if message.sender != delivery.peer:
        raise BadMessage(f"a Raft message from {delivery.peer} claims to be from {message.sender}")
    return message
