"""The public face of the Raft core: inputs as method calls, outputs as ``Ready``.

``RawNode`` wraps the state machine in ``core`` with the Ready/advance handshake.
The driver (the daemon's ordering service, or a test) owns the loop; the core never
blocks, sleeps, reads a clock or touches a disk.

The Ready contract
------------------
Inputs may arrive at any time: ``tick()``, ``step(message)``, ``propose(data)``,
``propose_conf_change(change)``, ``campaign()``, ``transfer_leadership(to)``. When
``has_ready()`` is true, the driver takes ``rd = ready()`` and, in this order:

1. **Persist** ``rd.snapshot`` (``apply_snapshot``: the log now starts after it),
   then ``rd.entries`` (an entry at index *i* replaces any stored entry at *i* or
   later), then ``rd.hard_state``, durably and atomically (one LMDB transaction,
   fsynced when ``rd.must_sync``). Nothing of this Ready may be sent before.
2. **Send** ``rd.messages`` to their recipients, each round-tripped through
   ``codec.encode(m.to_value())``. Losing, reordering or duplicating them is safe.
3. **Apply** ``rd.committed_entries`` to the state machine, in order. They may
   include entries of step 1; ``NOOP`` entries carry nothing; ``CONF_CHANGE``
   entries are already in force in the core (the daemon updates its member list).
   If ``rd.catch_up`` is set, start bringing the ledger up to ``rd.catch_up.index``
   from peers (block catch-up) and call ``restore(rd.catch_up)`` when done.
4. Call ``advance(rd)``. Only then may ``ready()`` be called again.

Inputs may be fed between ``ready()`` and ``advance()``; what they produce goes into
the next Ready. ``restore`` may not be called between them. ``soft_state`` (leader
and role) is informational and needs no persistence.

On restart, build a new ``RawNode`` over the storage that was persisted and pass the
state machine's applied index in ``Config.applied`` (the ledger's last block records
the Raft index and term it came from). If the ledger is *ahead* of the persisted
commit index (a crash after a block catch-up but before the restore's Ready was
persisted), pass the persisted commit index instead and call ``restore`` with the
ledger's (index, term, configuration) right away.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from p2pledger.raft.conf import ConfChange, ConfState
from p2pledger.raft.config import Config
from p2pledger.raft.core import Raft, Role
from p2pledger.raft.errors import RaftUsageError
from p2pledger.raft.messages import Entry, EntryKind, HardState, Message, SnapshotMeta
from p2pledger.raft.progress import ProgressState

__all__ = ["ProgressStatus", "RawNode", "Ready", "SoftState", "Status"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftState:
    """Volatile state worth reporting (metrics, logs): who leads and our role."""

    lead: str | None
    role: Role


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """One batch of work for the driver, in the order of the contract above."""

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    snapshot: SnapshotMeta | None = None
    entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    committed_entries: tuple[Entry, ...] = ()
    catch_up: SnapshotMeta | None = None
    #: True when the term, vote or log changed: step 1 must fsync.
    must_sync: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressStatus:
    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool
    inflight: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """A read-only picture of the core, for metrics, health checks and tests."""

    id: str
    term: int
    vote: str | None
    lead: str | None
    role: Role
    commit: int
    applied: int
    first_index: int
    last_index: int
    conf: ConfState
    conf_index: int
    lead_transferee: str | None
    progress: Mapping[str, ProgressStatus] = field(default_factory=dict)


class RawNode:
    """One member's Raft core. Not thread-safe: drive it from one task."""

    def __init__(self, config: Config) -> None:
        self._raft = Raft(config)
        self._prev_hard = self._raft.hard_state()
        self._prev_soft = self._soft_state()
        self._outstanding: Ready | None = None

    @property
    def id(self) -> str:
        return self._raft.id

    # --- inputs ----------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick."""
        self._raft.tick()

    def step(self, message: Message) -> None:
        """Feed a message from a peer. Stale messages are dropped silently; one meant
        for another member raises MisdirectedMessage and changes nothing."""
        self._raft.step(message)

    def propose(self, data: bytes) -> Entry:
        """Append ``data`` as a new entry (leader only) and return it; it is committed
        once it appears in ``committed_entries`` with the same index and term. Raises
        NotLeader or TransferInProgress, having changed nothing."""
        return self._raft.propose(EntryKind.NORMAL, data)

    def propose_conf_change(self, change: ConfChange) -> Entry:
        """Append a single-server membership change (leader only). Raises
        ConfChangePending while another is uncommitted, InvalidConfChange if it makes
        no sense, NotLeader or TransferInProgress; state unchanged on any of them."""
        return self._raft.propose_conf_change(change)

    def campaign(self) -> None:
        """Start an election now (after a PreVote round if enabled). Raises NotVoter."""
        self._raft.campaign()

    def transfer_leadership(self, to: str) -> None:
        """Hand leadership to voter ``to`` (leader only): proposals are refused until it
        succeeds or an election timeout passes."""
        self._raft.transfer_leadership(to)

    def report_unreachable(self, member: str) -> None:
        """The transport could not deliver to ``member``: stop pipelining to it."""
        self._raft.report_unreachable(member)

    def restore(self, snapshot: SnapshotMeta) -> bool:
        """The state machine now reflects the log up to ``snapshot`` (the driver caught
        the ledger up after ``Ready.catch_up``). The core drops its log if it does not
        hold that point, answers the leader, and the next Ready carries ``snapshot``
        to persist. False (and nothing changes) if the core is already past it."""
        if self._outstanding is not None:
            raise RaftUsageError("restore() between ready() and advance()")
        return self._raft.restore(snapshot)

    # --- outputs ---------------------------------------------------------------------

    def _soft_state(self) -> SoftState:
        return SoftState(lead=self._raft.lead, role=self._raft.role)

    def has_ready(self) -> bool:
        """Whether ``ready()`` has work (always False while a Ready is outstanding)."""
        if self._outstanding is not None:
            return False
        r = self._raft
        log = r.log
        return bool(
            r.msgs
            or r.bcast_pending
            or log.last_index() >= log.offset
            or log.unstable_snapshot() is not None
            or log.has_next_committed()
            or (r.term, r.vote, log.committed)
            != (self._prev_hard.term, self._prev_hard.vote, self._prev_hard.commit)
            or (r.lead, r.role) != (self._prev_soft.lead, self._prev_soft.role)
            or (r.catch_up_fresh and r.pending_catch_up is not None)
        )

    def ready(self) -> Ready:
        """Take the next batch of work; see the contract in the module docstring."""
        if self._outstanding is not None:
            raise RaftUsageError("ready() called again before advance()")
        r = self._raft
        r.flush_bcast()
        log = r.log
        hard = r.hard_state()
        soft = self._soft_state()
        entries = log.unstable_entries()
        catch_up = r.pending_catch_up if r.catch_up_fresh else None
        r.catch_up_fresh = False
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            snapshot=log.unstable_snapshot(),
            entries=entries,
            messages=tuple(r.msgs),
            committed_entries=tuple(log.next_committed(r.cfg.max_committed_bytes)),
            catch_up=catch_up,
            must_sync=bool(entries)
            or log.unstable_snapshot() is not None
            or hard.term != self._prev_hard.term
            or hard.vote != self._prev_hard.vote,
        )
        r.msgs.clear()
        self._prev_hard = hard
        self._prev_soft = soft
        self._outstanding = rd
        return rd

    def advance(self, ready: Ready) -> None:
        """The driver has persisted, sent and applied ``ready``."""
        if ready is not self._outstanding:
            raise RaftUsageError("advance() with a Ready that is not the outstanding one")
        log = self._raft.log
        if ready.snapshot is not None:
            log.stable_snapshot_to(ready.snapshot.index)
        if ready.entries:
            last = ready.entries[-1]
            log.stable_to(last.index, last.term)
        if ready.committed_entries:
            log.applied_to(ready.committed_entries[-1].index)
        self._outstanding = None

    def status(self) -> Status:
        r = self._raft
        progress: Mapping[str, ProgressStatus] = {}
        if r.role is Role.LEADER:
            progress = MappingProxyType(
                {
                    member: ProgressStatus(
                        match=pr.match,
                        next=pr.next,
                        state=pr.state,
                        is_learner=pr.is_learner,
                        recent_active=pr.recent_active,
                        inflight=len(pr.inflights),
                    )
                    for member, pr in r.prs.items()
                }
            )
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            lead=r.lead,
            role=r.role,
            commit=r.log.committed,
            applied=r.log.applied,
            first_index=r.log.first_index(),
            last_index=r.log.last_index(),
            conf=r.conf.current,
            conf_index=r.conf.index,
            lead_transferee=r.lead_transferee,
            progress=progress,
        )

    # --- cheap read-only accessors (hot paths, tests and the simulation) ----------------

    @property
    def term(self) -> int:
        return self._raft.term

    @property
    def role(self) -> Role:
        return self._raft.role

    @property
    def lead(self) -> str | None:
        return self._raft.lead

    @property
    def commit(self) -> int:
        return self._raft.log.committed

    @property
    def applied(self) -> int:
        return self._raft.log.applied

    @property
    def first_index(self) -> int:
        return self._raft.log.first_index()

    @property
    def last_index(self) -> int:
        return self._raft.log.last_index()

    @property
    def conf(self) -> ConfState:
        """The configuration in force in the core (set when its entry was appended)."""
        return self._raft.conf.current

    @property
    def conf_change_pending(self) -> bool:
        """Whether ``propose_conf_change`` would raise ConfChangePending now: a change
        is appended but not committed, or (as leader) no entry of this term committed."""
        r = self._raft
        return r.conf.index > r.log.committed or (
            r.role is Role.LEADER and r.log.committed < r.term_start_index
        )

    def term_at(self, index: int) -> int | None:
        """The term of our entry at ``index`` (None if compacted or absent)."""
        return self._raft.log.term(index)
