"""Every transition of one member's Raft state machine.

How it works
------------
A member is a follower, a pre-candidate, a candidate or the leader. Two inputs move
it: ``tick()`` (time) and ``step(message)`` (a peer). It answers by appending to
``msgs`` (its outbox) and by changing its log and hard state; the driver collects
both through ``RawNode.ready()``. Nothing here does I/O, reads a clock or draws
global randomness.

Terms (``step``): a message from a higher term makes us a follower of that term,
except vote requests inside a leader lease (CheckQuorum: we heard from a leader
less than an election timeout ago) which are ignored, and PreVote traffic, which
never changes a term. A message from a lower term is dropped; a stale leader's
append or heartbeat is answered so that it learns the new term and steps down.

Elections: a voter whose randomized election timeout passes without hearing from a
leader first runs a PreVote round (term + 1 asked for, nothing changed) and only if
a quorum would vote for it becomes a candidate, bumps its term and asks for real
votes. A vote is granted to a candidate whose log is at least as up to date as ours,
once per term. Only hearing from the leader or granting a vote restarts a member's
election timer (a refused candidate does not), so a disruptive member cannot keep
the others in lockstep with its own timer. The winner appends a no-op entry, which
commits the log of earlier terms (a leader only counts replicas of entries from its
own term: Figure 8).

Replication: the leader tracks a ``Progress`` per member (see ``progress``). A
follower accepts an append only if its log holds ``(prev_index, prev_term)``, drops
a conflicting suffix and appends; otherwise it rejects with a hint that lets the
leader skip a term of entries at a time. The commit index is the largest index held
by a majority of the voters whose entry is from the current term. Proposals and
commit advances only mark a broadcast as pending; ``flush_bcast`` (called by
``RawNode.ready``) sends one round per follower, so a burst costs one message each.

CheckQuorum: every election timeout the leader checks that a quorum of voters was
heard from in that time and steps down if not.

Leader transfer: the leader stops accepting proposals, brings the target up to
date, then sends it ``TimeoutNow``; the target campaigns at once, marking its vote
requests as a transfer so that voters ignore their lease. The transfer is abandoned
after an election timeout.

Membership (see ``conf``): a configuration takes effect when its entry is appended
and is undone if that entry is truncated; a leader whose own removal commits hands
over (``TimeoutNow`` to the most caught-up voter) and steps down.

Compaction: when a follower needs entries the leader has discarded, the leader
sends ``SnapshotRequest`` with its compaction point; the follower surfaces it as
``Ready.catch_up`` and waits for the driver's ``restore`` (block catch-up from the
ledger), then answers as if it had appended up to that point.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from p2pledger.raft.conf import ConfChange, ConfHistory
from p2pledger.raft.config import Config
from p2pledger.raft.errors import (
    ConfChangePending,
    InvalidTransfer,
    LogCompacted,
    MisdirectedMessage,
    NotLeader,
    NotVoter,
    RaftStorageError,
    RaftUsageError,
    TransferInProgress,
)
from p2pledger.raft.log import RaftLog
from p2pledger.raft.messages import (
    AppendRequest,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    Message,
    SnapshotMeta,
    SnapshotRequest,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from p2pledger.raft.progress import Progress, ProgressState
from p2pledger.raft.quorum import VoteResult, committed_index, majority, vote_result

__all__ = ["Raft", "Role"]

#: Bytes of entry data read per page when rebuilding the configuration history.
_SCAN_PAGE_BYTES = 4 << 20


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Raft:
    """One member's Raft state machine. Use it through ``RawNode``."""

    def __init__(self, config: Config) -> None:
        self.cfg = config
        self.id = config.id
        storage = config.storage
        self.log = RaftLog(storage)
        snapshot = storage.snapshot()
        self.conf = ConfHistory(snapshot.index, snapshot.conf)
        self._load_conf_history(snapshot.index + 1, storage.last_index())
        hard = storage.initial_state()
        if not self.log.first_index() - 1 <= hard.commit <= self.log.last_index():
            raise RaftStorageError(
                f"commit {hard.commit} outside the stored log "
                f"[{self.log.first_index() - 1}, {self.log.last_index()}]"
            )
        applied = max(config.applied, snapshot.index)
        if applied > hard.commit:
            raise RaftUsageError(f"applied {applied} is beyond the persisted commit {hard.commit}")
        self.term = hard.term
        self.vote: str | None = hard.vote
        self.log.committed = hard.commit
        self.log.applied = applied
        self.role = Role.FOLLOWER
        self.lead: str | None = None
        self.msgs: list[Message] = []
        self.prs: dict[str, Progress] = {}
        self.votes: dict[str, bool] = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.lead_transferee: str | None = None
        self.bcast_pending = False  # new entries or commit to send at the next Ready
        self.term_start_index = 0
        self.pending_catch_up: SnapshotMeta | None = None
        self.catch_up_fresh = False  # pending_catch_up was (re)requested since the last Ready
        self._become_follower(self.term, None)
        self._log(
            "raft.started",
            term=self.term,
            commit=hard.commit,
            applied=applied,
            last_index=self.log.last_index(),
            conf=str(self.conf.current),
        )

    # --- small helpers ---------------------------------------------------------------

    def _log(self, event: str, **fields: object) -> None:
        if self.cfg.logger is not None:
            self.cfg.logger(event, node=self.id, **fields)

    def _send(self, m: Message) -> None:
        self.msgs.append(m)

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def promotable(self) -> bool:
        """Whether this member may campaign: it is a voter and not mid-restore."""
        return self.id in self.conf.current.voters and self.log.unstable_snapshot() is None

    def _load_conf_history(self, lo: int, last: int) -> None:
        while lo <= last:
            page = self.log.storage.entries(lo, last + 1, _SCAN_PAGE_BYTES)
            for e in page:
                if e.kind is EntryKind.CONF_CHANGE:
                    self.conf.append(e.index, e.conf_change().apply(self.conf.current))
            lo = page[-1].index + 1

    def _reset_randomized_timeout(self) -> None:
        tick = self.cfg.election_tick
        self.randomized_election_timeout = tick + self.cfg.rng.randrange(tick)

    # --- role changes ------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.lead = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_timeout()
        self.lead_transferee = None
        self.bcast_pending = False
        self.votes = {}
        self.prs = {}

    def _become_follower(self, term: int, lead: str | None) -> None:
        was = self.role
        self._reset(term)
        self.role = Role.FOLLOWER
        self.lead = lead
        if was is not Role.FOLLOWER:
            self._log("raft.became_follower", term=term, lead=lead, was=was.value)

    def _become_pre_candidate(self) -> None:
        self.role = Role.PRE_CANDIDATE
        self.votes = {}
        self.prs = {}
        self.lead = None
        self._log("raft.became_pre_candidate", term=self.term)

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self._log("raft.became_candidate", term=self.term)

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.lead = self.id
        last = self.log.last_index()
        self._sync_progress(last)
        own = self.prs[self.id]
        own.match = last
        own.become_replicate()
        self.term_start_index = last + 1
        self._log("raft.became_leader", term=self.term, last_index=last)
        self._append_local([Entry(term=self.term, index=last + 1, kind=EntryKind.NOOP)])
        if self.role is Role.LEADER:
            self._bcast_append()

    def _new_progress(self, member: str, next_index: int) -> Progress:
        pr = Progress(
            next_index=next_index,
            is_learner=member in self.conf.current.learners,
            max_inflight=self.cfg.max_inflight_msgs,
            max_inflight_bytes=self.cfg.max_inflight_bytes,
        )
        pr.recent_active = True
        return pr

    def _sync_progress(self, last: int) -> None:
        """Make ``prs`` hold exactly the current members (and ourselves)."""
        conf = self.conf.current
        for member in sorted(conf.members | {self.id}):
            pr = self.prs.get(member)
            if pr is None:
                self.prs[member] = self._new_progress(member, last + 1)
            else:
                pr.is_learner = member in conf.learners
        for member in [m for m in self.prs if m not in conf.members and m != self.id]:
            del self.prs[member]

    # --- elections ---------------------------------------------------------------------

    def _hup(self, *, transfer: bool) -> None:
        if self.role is Role.LEADER or not self.promotable():
            return
        self._log("raft.starting_election", term=self.term, transfer=transfer)
        self._campaign(pre=self.cfg.pre_vote and not transfer, transfer=transfer)

    def _campaign(self, *, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            term = self.term + 1
        else:
            self._become_candidate()
            term = self.term
        self.votes[self.id] = True
        voters = self.conf.current.voters
        if vote_result(voters, self.votes) is VoteResult.WON:
            if pre:
                self._campaign(pre=False, transfer=transfer)
            else:
                self._become_leader()
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for voter in sorted(voters):
            if voter != self.id:
                self._send(
                    VoteRequest(
                        term=term,
                        sender=self.id,
                        recipient=voter,
                        last_index=last_index,
                        last_term=last_term,
                        pre_vote=pre,
                        transfer=transfer,
                    )
                )

    def _handle_vote_request(self, m: VoteRequest) -> None:
        can_vote = (
            self.vote == m.sender
            or (self.vote is None and self.lead is None)
            or (m.pre_vote and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.last_index, m.last_term):
            self._send(
                VoteResponse(
                    term=m.term,
                    sender=self.id,
                    recipient=m.sender,
                    granted=True,
                    pre_vote=m.pre_vote,
                )
            )
            if not m.pre_vote:
                self.election_elapsed = 0
                self.vote = m.sender
        else:
            self._send(
                VoteResponse(
                    term=self.term,
                    sender=self.id,
                    recipient=m.sender,
                    granted=False,
                    pre_vote=m.pre_vote,
                )
            )

    def _handle_vote_response(self, m: VoteResponse) -> None:
        if m.pre_vote != (self.role is Role.PRE_CANDIDATE):
            return
        self.votes.setdefault(m.sender, m.granted)
        result = vote_result(self.conf.current.voters, self.votes)
        if result is VoteResult.WON:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(pre=False, transfer=False)
            else:
                self._become_leader()
        elif result is VoteResult.LOST:
            self._become_follower(self.term, None)

    # --- time ----------------------------------------------------------------------------

    def tick(self) -> None:
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self.election_elapsed += 1
            if self.election_elapsed >= self.randomized_election_timeout and self.promotable():
                self.election_elapsed = 0
                self._hup(transfer=False)

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                if not self._quorum_active():
                    self._log("raft.stepped_down", term=self.term, reason="quorum inactive")
                    self._become_follower(self.term, None)
                    return
                for member, pr in self.prs.items():
                    pr.recent_active = member == self.id
            if self.lead_transferee is not None:
                self._log("raft.transfer_aborted", term=self.term, to=self.lead_transferee)
                self.lead_transferee = None
        retry = self.cfg.snapshot_retry
        for pr in self.prs.values():
            if pr.state is ProgressState.SNAPSHOT:
                pr.snapshot_elapsed += 1
                if pr.snapshot_elapsed >= retry:
                    pr.become_probe()
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat()

    def _quorum_active(self) -> bool:
        voters = self.conf.current.voters
        active = sum(
            1
            for v in voters
            if v == self.id or ((pr := self.prs.get(v)) is not None and pr.recent_active)
        )
        return active >= majority(voters)

    # --- the message dispatcher ------------------------------------------------------------

    def step(self, m: Message) -> None:
        if m.recipient != self.id:
            raise MisdirectedMessage(f"message for {m.recipient} handed to {self.id}")
        if m.term > self.term:
            if isinstance(m, VoteRequest):
                in_lease = (
                    self.cfg.check_quorum
                    and self.lead is not None
                    and self.election_elapsed < self.cfg.election_tick
                )
                if in_lease and not m.transfer:
                    return
                if not m.pre_vote:
                    # Only a granted vote restarts the election timer (Raft paper,
                    # Figure 2): a voter that refuses a disruptive candidate keeps
                    # counting, so it is not kept in lockstep with that candidate.
                    elapsed, timeout = self.election_elapsed, self.randomized_election_timeout
                    self._become_follower(m.term, None)
                    self.election_elapsed = elapsed
                    self.randomized_election_timeout = timeout
            elif isinstance(m, VoteResponse) and m.pre_vote and m.granted:
                pass
            elif isinstance(m, AppendRequest | Heartbeat | SnapshotRequest):
                self._become_follower(m.term, m.sender)
            else:
                self._become_follower(m.term, None)
        elif m.term < self.term:
            if isinstance(m, AppendRequest | Heartbeat):
                if self.cfg.check_quorum or self.cfg.pre_vote:
                    self._send(
                        AppendResponse(term=self.term, sender=self.id, recipient=m.sender, index=0)
                    )
            elif isinstance(m, VoteRequest) and m.pre_vote:
                self._send(
                    VoteResponse(
                        term=self.term,
                        sender=self.id,
                        recipient=m.sender,
                        granted=False,
                        pre_vote=True,
                    )
                )
            return
        if isinstance(m, VoteRequest):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _step_leader(self, m: Message) -> None:
        if isinstance(m, AppendResponse):
            self._handle_append_response(m)
        elif isinstance(m, HeartbeatResponse):
            self._handle_heartbeat_response(m)

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, VoteResponse):
            self._handle_vote_response(m)
        elif isinstance(m, AppendRequest | Heartbeat | SnapshotRequest):
            self._become_follower(self.term, m.sender)
            self._step_follower(m)

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, AppendRequest):
            self.election_elapsed = 0
            self.lead = m.sender
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self.election_elapsed = 0
            self.lead = m.sender
            self.log.commit_to(min(m.commit, self.log.last_index()))
            self._send(HeartbeatResponse(term=self.term, sender=self.id, recipient=m.sender))
        elif isinstance(m, SnapshotRequest):
            self.election_elapsed = 0
            self.lead = m.sender
            self._handle_snapshot(m)
        elif isinstance(m, TimeoutNow):
            self._log("raft.timeout_now", term=self.term, sender=m.sender)
            self._hup(transfer=True)

    # --- follower side of replication --------------------------------------------------------

    def _handle_append(self, m: AppendRequest) -> None:
        log = self.log
        if m.prev_index < log.committed:
            self._reply_append(m.sender, log.committed)
            return
        if log.match_term(m.prev_index, m.prev_term):
            conflict = log.find_conflict(m.entries)
            if conflict:
                if conflict <= log.committed:  # pragma: no cover - would break Log Matching
                    raise RaftStorageError(f"entry {conflict} conflicts with committed entries")
                self._append_entries(m.entries[conflict - m.prev_index - 1 :])
            last_new = m.prev_index + len(m.entries)
            log.commit_to(min(m.commit, last_new))
            self._reply_append(m.sender, last_new)
            return
        hint_index, hint_term = log.find_conflict_by_term(
            min(m.prev_index, log.last_index()), m.prev_term
        )
        self._send(
            AppendResponse(
                term=self.term,
                sender=self.id,
                recipient=m.sender,
                index=m.prev_index,
                reject=True,
                hint_index=hint_index,
                hint_term=hint_term,
            )
        )

    def _reply_append(self, to: str, index: int) -> None:
        self._send(AppendResponse(term=self.term, sender=self.id, recipient=to, index=index))

    def _handle_snapshot(self, m: SnapshotRequest) -> None:
        meta = m.snapshot
        if meta.index <= self.log.committed:
            self._reply_append(m.sender, self.log.committed)
        elif self.log.match_term(meta.index, meta.term):
            self.log.commit_to(meta.index)
            self._reply_append(m.sender, meta.index)
        else:
            # Surface it again even if it is not new: the daemon may have given up.
            if self.pending_catch_up is None or meta.index > self.pending_catch_up.index:
                self._log("raft.catch_up_needed", term=self.term, index=meta.index)
                self.pending_catch_up = meta
            self.catch_up_fresh = True

    def restore(self, meta: SnapshotMeta) -> bool:
        """The driver brought the state machine to ``meta``; see ``RawNode.restore``."""
        log = self.log
        if self.pending_catch_up is not None and self.pending_catch_up.index <= meta.index:
            self.pending_catch_up = None
            self.catch_up_fresh = False
        if meta.index <= log.committed:
            return False
        if log.match_term(meta.index, meta.term):
            log.commit_to(meta.index)
            log.applied = meta.index
        elif self.role is Role.LEADER:
            return False
        else:
            log.restore(meta)
            self.conf.reset(meta.index, meta.conf)
            self._log("raft.restored", term=self.term, index=meta.index, conf=str(meta.conf))
        if self.lead is not None and self.lead != self.id:
            self._reply_append(self.lead, meta.index)
        return True

    # --- the log and the configuration -------------------------------------------------------

    def _append_entries(self, entries: Sequence[Entry]) -> None:
        """Append to our log, tracking the configuration entries in it."""
        first = entries[0].index
        changed = self.conf.index >= first and self.conf.truncate_from(first)
        for e in entries:
            if e.kind is EntryKind.CONF_CHANGE:
                self.conf.append(e.index, e.conf_change().apply(self.conf.current))
                changed = True
        self.log.append(entries)
        if changed:
            self._log("raft.conf_changed", term=self.term, conf=str(self.conf.current))
            if self.role is Role.LEADER:
                self._sync_progress(self.log.last_index())
                if self.lead_transferee not in self.conf.current.voters:
                    self.lead_transferee = None

    def _append_local(self, entries: Sequence[Entry]) -> None:
        """The leader appends new entries of its own."""
        self._append_entries(entries)
        self.prs[self.id].maybe_update(self.log.last_index())
        self._maybe_commit()

    def _maybe_commit(self) -> bool:
        """Advance the commit index to what a quorum of voters holds (current term
        only); a leader whose own removal just committed hands over and steps down."""
        index = committed_index(self.conf.current.voters, self._match_of)
        if not self.log.maybe_commit(index, self.term):
            return False
        if self.id not in self.conf.current.voters and self.conf.index <= self.log.committed:
            self._step_down_removed()
        return True

    def _match_of(self, member: str) -> int:
        pr = self.prs.get(member)
        return pr.match if pr is not None else 0

    def _step_down_removed(self) -> None:
        self._bcast_append()
        last = self.log.last_index()
        caught_up = [v for v in sorted(self.conf.current.voters) if self.prs[v].match == last]
        if caught_up:
            self._send(TimeoutNow(term=self.term, sender=self.id, recipient=caught_up[0]))
        self._log("raft.stepped_down", term=self.term, reason="removed from voters")
        self._become_follower(self.term, None)

    # --- leader side of replication ----------------------------------------------------------

    def _send_append(self, to: str, *, send_if_empty: bool = True) -> bool:
        pr = self.prs[to]
        if pr.is_paused():
            return False
        log = self.log
        prev_index = pr.next - 1
        prev_term = log.term(prev_index)
        entries: Sequence[Entry] | None = None
        if prev_term is not None:
            try:
                entries = log.slice(pr.next, log.last_index() + 1, self.cfg.max_msg_bytes)
            except LogCompacted:
                entries = None
        if prev_term is None or entries is None:
            return self._send_snapshot(to, pr)
        if not entries and not send_if_empty:
            return False
        self._send(
            AppendRequest(
                term=self.term,
                sender=self.id,
                recipient=to,
                prev_index=prev_index,
                prev_term=prev_term,
                commit=log.committed,
                entries=tuple(entries),
            )
        )
        pr.sent_commit = log.committed
        if entries:
            if pr.state is ProgressState.REPLICATE:
                last = entries[-1].index
                pr.next = last + 1
                pr.inflights.add(last, sum(e.size for e in entries))
            else:
                pr.probe_sent = True
        return True

    def _send_snapshot(self, to: str, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        meta = self.log.snapshot_meta()
        self._send(SnapshotRequest(term=self.term, sender=self.id, recipient=to, snapshot=meta))
        pr.become_snapshot(meta.index)
        self._log("raft.snapshot_requested", term=self.term, to=to, index=meta.index)
        return True

    def _bcast_append(self) -> None:
        for member in self.prs:
            if member != self.id:
                self._send_append(member)

    def flush_bcast(self) -> None:
        """Send what proposals and commit advances since the last Ready left pending:
        one round of appends per follower (filling its pipeline), so that many
        proposals or acknowledgements between two Readys cost one message each."""
        if not self.bcast_pending:
            return
        self.bcast_pending = False
        if self.role is not Role.LEADER:
            return
        last, committed = self.log.last_index(), self.log.committed
        for member, pr in self.prs.items():
            if member == self.id or (pr.next > last and pr.sent_commit >= committed):
                continue
            if self._send_append(member):
                while self._send_append(member, send_if_empty=False):
                    pass

    def _bcast_heartbeat(self) -> None:
        committed = self.log.committed
        for member, pr in self.prs.items():
            if member != self.id:
                self._send(
                    Heartbeat(
                        term=self.term,
                        sender=self.id,
                        recipient=member,
                        commit=min(pr.match, committed),
                    )
                )

    def _handle_append_response(self, m: AppendResponse) -> None:
        pr = self.prs.get(m.sender)
        if pr is None or m.index > self.log.last_index():
            return
        pr.recent_active = True
        if m.reject:
            next_probe = m.hint_index
            if m.hint_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.hint_index, m.hint_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.sender)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT:
            if pr.match >= pr.pending_snapshot:
                pr.become_probe()
                pr.become_replicate()
        else:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            if self.role is not Role.LEADER:
                return
            self.bcast_pending = True
        elif was_paused:
            self._send_append(m.sender)
        if m.sender not in self.prs:
            return
        while self._send_append(m.sender, send_if_empty=False):
            pass
        if m.sender == self.lead_transferee and pr.match == self.log.last_index():
            self._send(TimeoutNow(term=self.term, sender=self.id, recipient=m.sender))

    def _handle_heartbeat_response(self, m: HeartbeatResponse) -> None:
        pr = self.prs.get(m.sender)
        if pr is None:
            return
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state is ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()
        # A member in probe (it was unreachable, or restarted) gets a probe even when
        # we think it has everything: a member that lost its disk answers it with a
        # rejection, and we replicate it again from where its log really ends.
        if pr.match < self.log.last_index() or pr.state is ProgressState.PROBE:
            self._send_append(m.sender)

    # --- requests from the driver ------------------------------------------------------------

    def _check_can_propose(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.id, self.lead)
        if self.lead_transferee is not None:
            raise TransferInProgress(f"leadership is moving to {self.lead_transferee}")

    def propose(self, kind: EntryKind, data: bytes) -> Entry:
        self._check_can_propose()
        entry = Entry(term=self.term, index=self.log.last_index() + 1, kind=kind, data=data)
        self._append_local([entry])
        if self.role is Role.LEADER:
            self.bcast_pending = True
        return entry

    def propose_conf_change(self, change: ConfChange) -> Entry:
        self._check_can_propose()
        if self.log.committed < self.term_start_index:
            raise ConfChangePending("the leader has not yet committed an entry of its term")
        if self.conf.index > self.log.committed:
            raise ConfChangePending(
                f"the membership change at index {self.conf.index} is not yet committed"
            )
        change.check(self.conf.current)
        return self.propose(EntryKind.CONF_CHANGE, change.encode())

    def campaign(self) -> None:
        if self.role is Role.LEADER:
            return
        if not self.promotable():
            raise NotVoter(f"{self.id} is not a voter of {self.conf.current}")
        self._hup(transfer=False)

    def transfer_leadership(self, to: str) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.id, self.lead)
        if to not in self.conf.current.voters:
            raise InvalidTransfer(f"{to} is not a voter of {self.conf.current}")
        if to in (self.id, self.lead_transferee):
            return
        self._log("raft.transfer_started", term=self.term, to=to)
        self.lead_transferee = to
        self.election_elapsed = 0
        if self.prs[to].match == self.log.last_index():
            self._send(TimeoutNow(term=self.term, sender=self.id, recipient=to))
        else:
            self._send_append(to)

    def report_unreachable(self, member: str) -> None:
        if self.role is Role.LEADER:
            pr = self.prs.get(member)
            if pr is not None and pr.state is ProgressState.REPLICATE:
                pr.become_probe()
