"""The Raft driver: one task owns the core and honours its Ready contract.

Inputs (ticks, peer messages, proposals, restores) arrive on a channel and are fed
to ``RawNode`` by this task alone. After each batch of inputs it drains every Ready:
the durable part is written to LMDB in a worker thread before any of its messages
are sent, committed entries are handed to ``apply`` in order, and a catch-up request
goes to ``catch_up``. Heartbeats come from ticks, which no client or gossip work can
delay: they share no queue with them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from p2pledger.raft import (
    ConfChange,
    ConfState,
    Entry,
    Message,
    NotLeader,
    ProposalDropped,
    RawNode,
    Ready,
    Role,
    SnapshotMeta,
)
from p2pledger.raft.errors import RaftError
from p2pledger.store.raft_log import RaftLog

__all__ = ["Ordering", "OrderingStatistics"]

_DRAIN: int = 512


@dataclass(frozen=True, slots=True)
class OrderingStatistics:
    term: int
    role: Role
    lead: str | None
    commit: int
    applied: int
    last_index: int
    leader_changes: int


class Ordering:
    """Drives one ``RawNode`` over a ``RaftLog``; see the module docstring."""

    def __init__(
        self,
        *,
        raw: RawNode,
        log: RaftLog,
        send: Callable[[Message], None],
        apply: Callable[[Sequence[Entry]], Awaitable[None]],
        catch_up: Callable[[SnapshotMeta], None],
        tick_seconds: float,
        keep_entries: int = 2048,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        """``limiter`` bounds the worker threads that persist (default: trio's shared
        one); the node gives its ordering path its own, so that client reads in
        worker threads never delay a write that Raft waits on."""
        self._raw = raw
        self._log = log
        self._send = send
        self._apply = apply
        self._catch_up = catch_up
        self._tick_seconds = tick_seconds
        self._keep = keep_entries
        self._limiter = limiter
        self._in, self._out = trio.open_memory_channel[tuple[str, Any]](4096)
        self._changed = trio.Event()
        self._leader_changes = 0
        self._last_lead: str | None = raw.lead
        self._log_events = structlog.get_logger("p2pledger.ordering")

    # --- inputs (any task) ----------------------------------------------------------

    def step_nowait(self, message: Message) -> None:
        """Feed a peer's message; dropped if the inbox is full (Raft tolerates loss)."""
        with contextlib.suppress(trio.WouldBlock):
            self._in.send_nowait(("step", message))

    async def propose(self, data: bytes, *, term: int | None = None) -> Entry:
        """Append ``data`` to the log as leader; raise NotLeader if we are not one,
        ProposalDropped if ``term`` is given and is no longer the current term (a block
        records the term it was cut in, which must be its entry's term)."""
        return await self._propose(data, term)

    async def propose_conf_change(self, change: ConfChange, *, term: int | None = None) -> Entry:
        """Append a single-server membership change as leader (its ``context`` carries
        the block); raise ConfChangePending, InvalidConfChange, NotLeader or
        ProposalDropped (as ``propose``), having changed nothing."""
        return await self._propose(change, term)

    async def _propose(self, item: bytes | ConfChange, term: int | None) -> Entry:
        done: list[Entry | RaftError] = []
        event = trio.Event()
        await self._in.send(("propose", (item, term, done, event)))
        await event.wait()
        result = done[0]
        if isinstance(result, RaftError):
            raise result
        return result

    async def restore(self, snapshot: SnapshotMeta) -> None:
        await self._in.send(("restore", snapshot))

    def report_unreachable_nowait(self, member: str) -> None:
        """A member's connection dropped: the leader re-probes its log before
        replicating again (it may have restarted with less than we think)."""
        with contextlib.suppress(trio.WouldBlock):
            self._in.send_nowait(("unreachable", member))

    async def transfer_leadership(self, to: str) -> None:
        await self._in.send(("transfer", to))

    # --- what others may look at ----------------------------------------------------

    def statistics(self) -> OrderingStatistics:
        raw = self._raw
        return OrderingStatistics(
            term=raw.term,
            role=raw.role,
            lead=raw.lead,
            commit=raw.commit,
            applied=raw.applied,
            last_index=raw.last_index,
            leader_changes=self._leader_changes,
        )

    @property
    def is_leader(self) -> bool:
        return self._raw.role is Role.LEADER

    @property
    def conf_change_pending(self) -> bool:
        """A Raft configuration change is not yet committed (a second would be refused)."""
        return self._raw.conf_change_pending

    @property
    def conf(self) -> ConfState:
        """The Raft configuration in force in the core."""
        return self._raw.conf

    @property
    def idle_leader(self) -> bool:
        """Leader with nothing in flight: every entry of its log is applied."""
        raw = self._raw
        return raw.role is Role.LEADER and raw.applied == raw.last_index

    async def wait_changed(self) -> None:
        """Wait until the role, leader, commit or applied index changes."""
        await self._changed.wait()

    # --- the loop -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ticker)
            task_status.started()
            await self._process_ready()
            async for item in self._out:
                self._handle(*item)
                for _ in range(_DRAIN):
                    try:
                        more = self._out.receive_nowait()
                    except trio.WouldBlock:
                        break
                    self._handle(*more)
                await self._process_ready()

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self._tick_seconds)
            await self._in.send(("tick", None))

    def _handle(self, kind: str, value: Any) -> None:
        raw = self._raw
        if kind == "tick":
            raw.tick()
        elif kind == "step":
            try:
                raw.step(value)
            except RaftError as exc:
                self._log_events.warning("raft.step.failed", error=str(exc))
        elif kind == "propose":
            item, term, done, event = value
            try:
                if term is not None and term != raw.term:
                    raise ProposalDropped(f"cut in term {term}, the term is now {raw.term}")
                if isinstance(item, ConfChange):
                    done.append(raw.propose_conf_change(item))
                else:
                    done.append(raw.propose(item))
            except RaftError as exc:
                done.append(exc)
            event.set()
        elif kind == "unreachable":
            raw.report_unreachable(value)
        elif kind == "restore":
            raw.restore(value)
        elif kind == "transfer":
            try:
                raw.transfer_leadership(value)
            except (RaftError, NotLeader) as exc:
                self._log_events.warning("raft.transfer.failed", error=str(exc))

    async def _process_ready(self) -> None:
        raw = self._raw
        while raw.has_ready():
            rd = raw.ready()
            if rd.snapshot is not None or rd.entries or rd.hard_state is not None:
                await trio.to_thread.run_sync(self._persist, rd, limiter=self._limiter)
            for message in rd.messages:
                self._send(message)
            if rd.committed_entries:
                await self._apply(rd.committed_entries)
            if rd.catch_up is not None:
                self._catch_up(rd.catch_up)
            raw.advance(rd)
            if rd.soft_state is not None and rd.soft_state.lead != self._last_lead:
                self._last_lead = rd.soft_state.lead
                self._leader_changes += 1
                self._log_events.info(
                    "raft.leader.changed", leader=rd.soft_state.lead, term=raw.term
                )
            self._changed.set()
            self._changed = trio.Event()
        await self._maybe_compact()

    def _persist(self, rd: Ready) -> None:
        self._log.save(snapshot=rd.snapshot, entries=rd.entries, hard_state=rd.hard_state)

    async def _maybe_compact(self) -> None:
        applied = self._raw.applied
        if applied - self._log.first_index() > 2 * self._keep:
            upto = applied - self._keep
            await trio.to_thread.run_sync(self._log.compact, upto, limiter=self._limiter)
