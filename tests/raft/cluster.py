"""An in-memory cluster of Raft cores with a hand-driven network, for tests.

Each member has durable parts (a ``MemoryStorage`` and its applied entries, the
state machine) and a volatile part (the ``RawNode``), so a crash drops the node and
a restart rebuilds it from what was persisted. Every message is round-tripped
through the real codec (``codec.encode(m.to_value())`` and back) and compared.
Messages wait in ``inflight`` until a test (or the simulation's scheduler) delivers
or drops them; a partition is a set of blocked directed links. Every Ready goes
through the ``Checker``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from p2pledger import codec
from p2pledger.raft import (
    Config,
    ConfState,
    Entry,
    EntryKind,
    MemoryStorage,
    Message,
    RawNode,
    Ready,
    Role,
    SnapshotMeta,
    message_from_value,
)
from p2pledger.raft.storage import fold_conf
from tests.raft.checker import Checker

__all__ = ["Cluster", "Member", "roundtrip"]


_ROUNDTRIPPED: dict[Message, Message] = {}


def roundtrip(m: Message) -> Message:
    """``m`` after the wire: encoded, decoded and rebuilt; must compare equal.

    Every distinct message value goes through the codec once; an identical value (a
    repeated heartbeat) encodes to identical bytes, so its earlier result is reused.
    """
    back = _ROUNDTRIPPED.get(m)
    if back is None:
        back = message_from_value(codec.decode(codec.encode(m.to_value())))
        if back != m:
            raise AssertionError(f"codec round trip changed {m} into {back}")
        if len(_ROUNDTRIPPED) > 50_000:
            _ROUNDTRIPPED.clear()
        _ROUNDTRIPPED[m] = back
    return back


@dataclass
class Member:
    id: str
    storage: MemoryStorage
    rng: random.Random
    node: RawNode | None = None
    applied: list[Entry] = field(default_factory=list)  # the durable state machine
    catch_up: SnapshotMeta | None = None
    restarts: int = 0

    @property
    def up(self) -> bool:
        return self.node is not None

    @property
    def n(self) -> RawNode:
        assert self.node is not None, f"{self.id} is down"
        return self.node


class Cluster:
    """Members plus undelivered messages; nothing happens unless a test says so."""

    def __init__(
        self,
        voters: Iterable[str] = ("n1", "n2", "n3"),
        *,
        learners: Iterable[str] = (),
        spares: Iterable[str] = (),
        seed: int = 0,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_msg_bytes: int = 1 << 20,
        max_inflight_msgs: int = 64,
        snapshot_retry_ticks: int = 0,
        checker: Checker | None = None,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.genesis = ConfState(voters=frozenset(voters), learners=frozenset(learners))
        self.seed = seed
        self.settings = {
            "election_tick": election_tick,
            "heartbeat_tick": heartbeat_tick,
            "pre_vote": pre_vote,
            "check_quorum": check_quorum,
            "max_msg_bytes": max_msg_bytes,
            "max_inflight_msgs": max_inflight_msgs,
            "snapshot_retry_ticks": snapshot_retry_ticks,
        }
        self.checker = checker or Checker()
        self.trace = trace
        self.members: dict[str, Member] = {}
        self.inflight: list[Message] = []
        self.blocked: set[tuple[str, str]] = set()
        self.sent = 0
        self.sent_log: list[Message] | None = None  # every message sent, if a list
        self.on_apply: Callable[[str, Entry], None] | None = None
        self.crash_after_persist: set[str] = set()
        for member in sorted(self.genesis.members | set(spares)):
            self.add_member(member)

    # --- membership of the harness -------------------------------------------------------

    def add_member(self, member: str) -> Member:
        """A member process with the bootstrap log (every member starts from genesis)."""
        rng = random.Random(f"{self.seed}:{member}")
        m = Member(id=member, storage=MemoryStorage(self.genesis), rng=rng)
        self.members[member] = m
        self.start(member)
        return m

    def _config(self, m: Member, applied: int) -> Config:
        return Config(
            id=m.id,
            storage=m.storage,
            rng=m.rng,
            applied=applied,
            logger=self._logger(m.id) if self.trace else None,
            **self.settings,  # type: ignore[arg-type]
        )

    def _logger(self, member: str) -> Callable[..., None]:
        trace = self.trace
        assert trace is not None

        def log(event: str, /, **fields: object) -> None:
            fields.pop("node", None)
            text = " ".join(f"{k}={v}" for k, v in fields.items())
            trace(f"  {member} {event} {text}")

        return log

    def start(self, member: str) -> None:
        m = self.members[member]
        commit = m.storage.initial_state().commit
        applied = len(m.applied)
        m.node = RawNode(self._config(m, min(applied, commit)))
        m.catch_up = None
        if applied > commit:
            # The ledger was caught up but the restore was not persisted: restore again.
            meta = SnapshotMeta(
                index=applied, term=m.applied[-1].term, conf=self.conf_after(m.applied)
            )
            m.node.restore(meta)
        self.flush(member)

    def conf_after(self, entries: list[Entry]) -> ConfState:
        return fold_conf(self.genesis, entries)

    def crash(self, member: str) -> None:
        """Lose the member's volatile state (unpersisted entries, unsent messages)."""
        m = self.members[member]
        m.node = None
        m.catch_up = None
        self.checker.on_restart(member)
        if self.trace:
            self.trace(f"crash {member}")

    def restart(self, member: str) -> None:
        m = self.members[member]
        if m.up:
            self.crash(member)
        m.restarts += 1
        if self.trace:
            self.trace(f"restart {member}")
        self.start(member)

    # --- driving ------------------------------------------------------------------------

    def flush(self, member: str) -> None:
        """Process every Ready of ``member`` under the contract."""
        m = self.members[member]
        node = m.node
        if node is None:
            return
        while node.has_ready():
            rd = node.ready()
            self._persist(m, node, rd)
            if member in self.crash_after_persist:
                self.crash_after_persist.discard(member)
                self.crash(member)
                return
            for msg in rd.messages:
                self.inflight.append(roundtrip(msg))
                self.sent += 1
                if self.sent_log is not None:
                    self.sent_log.append(msg)
            for e in rd.committed_entries:
                self.checker.on_apply(member, len(m.applied), e)
                m.applied.append(e)
                if self.on_apply is not None:
                    self.on_apply(member, e)
            if rd.catch_up is not None:
                m.catch_up = rd.catch_up
            node.advance(rd)
        self.checker.observe(member, node)

    def _persist(self, m: Member, node: RawNode, rd: Ready) -> None:
        m.storage.save(snapshot=rd.snapshot, entries=rd.entries, hard_state=rd.hard_state)
        self.checker.on_persist(m.id, node, rd)

    def flush_all(self) -> None:
        for member in self.members:
            self.flush(member)

    def can_deliver(self, m: Message) -> bool:
        to = self.members.get(m.recipient)
        return to is not None and to.up and (m.sender, m.recipient) not in self.blocked

    def deliver(self, m: Message) -> bool:
        """Step ``m`` into its recipient if the link is open and it is up."""
        if not self.can_deliver(m):
            return False
        if self.trace:
            self.trace(f"  {describe(m)}")
        self.members[m.recipient].n.step(m)
        self.flush(m.recipient)
        return True

    def deliver_all(self, drop: Callable[[Message], bool] | None = None) -> int:
        """Deliver everything in flight now (not what that produces); return how many."""
        batch, self.inflight = self.inflight, []
        n = 0
        for m in batch:
            if drop is not None and drop(m):
                continue
            n += self.deliver(m)
        return n

    def stabilize(self, max_rounds: int = 1000) -> None:
        """Deliver until no message is in flight."""
        self.flush_all()
        for _ in range(max_rounds):
            if not self.inflight:
                return
            self.deliver_all()
        raise AssertionError("the cluster did not stabilize")

    def tick(self, member: str, n: int = 1) -> None:
        for _ in range(n):
            m = self.members[member]
            if m.up:
                m.n.tick()
                self.flush(member)

    def tick_all(self, n: int = 1, *, stabilize: bool = True) -> None:
        for _ in range(n):
            for member in self.members:
                self.tick(member)
            if stabilize:
                self.stabilize()

    def elect(self, member: str) -> None:
        """Make ``member`` the leader through a campaign, and settle the cluster."""
        self.members[member].n.campaign()
        self.stabilize()
        assert self.members[member].n.role is Role.LEADER, f"{member} did not win"

    def propose(self, member: str, data: bytes) -> Entry:
        e = self.members[member].n.propose(data)
        self.flush(member)
        return e

    def complete_catch_up(self, member: str) -> bool:
        """Bring ``member``'s state machine to its pending catch-up point from the
        applied entries of any member that has them (the ledger), then restore."""
        m = self.members[member]
        meta = m.catch_up
        if meta is None or not m.up:
            return False
        sources = [o for o in self.members.values() if len(o.applied) >= meta.index]
        if not sources:
            return False
        src = sources[0]
        for e in src.applied[len(m.applied) : meta.index]:
            self.checker.on_apply(member, len(m.applied), e)
            m.applied.append(e)
        m.catch_up = None
        m.n.restore(meta)
        self.flush(member)
        return True

    # --- faults --------------------------------------------------------------------------

    def isolate(self, member: str) -> None:
        for other in self.members:
            if other != member:
                self.blocked.add((member, other))
                self.blocked.add((other, member))

    def partition(self, *groups: Iterable[str]) -> None:
        """Only members of the same group can talk."""
        where = {m: n for n, g in enumerate(groups) for m in g}
        self.blocked = {
            (a, b)
            for a in self.members
            for b in self.members
            if a != b and where.get(a, -1) != where.get(b, -2)
        }

    def heal(self) -> None:
        self.blocked.clear()

    # --- queries ------------------------------------------------------------------------

    def leader(self) -> str | None:
        """The up member that leads the highest term, if any."""
        best: tuple[int, str] | None = None
        for m in self.members.values():
            if m.up and m.n.role is Role.LEADER and (best is None or m.n.term > best[0]):
                best = (m.n.term, m.id)
        return best[1] if best else None

    def applied_data(self, member: str) -> list[bytes]:
        return [e.data for e in self.members[member].applied if e.kind is EntryKind.NORMAL]


def describe(m: Message) -> str:
    """A one-line rendering of a message, for traces."""
    head = f"{m.sender}->{m.recipient} {type(m).__name__} t{m.term}"
    fields = {
        f.name: getattr(m, f.name)
        for f in dataclasses.fields(m)
        if f.name not in {"term", "sender", "recipient", "entries", "snapshot"}
    }
    parts = [head, *(f"{k}={v}" for k, v in fields.items())]
    entries = getattr(m, "entries", None)
    if entries:
        parts.append("entries=[" + ",".join(f"{e.term}/{e.index}" for e in entries) + "]")
    snap = getattr(m, "snapshot", None)
    if snap is not None:
        parts.append(f"snapshot={snap.term}/{snap.index}")
    return " ".join(parts)
