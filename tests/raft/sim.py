"""A seeded, deterministic simulation of a Raft cluster under faults.

One integer seed decides everything: the cluster size (3, 5 or 7 voters), the fault
mix, and every choice of the scheduler. The scheduler runs in virtual time (ticks,
each split into ``SUBSTEPS`` delivery slots) and

- delivers messages after a random delay, so they arrive reordered; drops and
  duplicates some (every message is round-tripped through the real codec); once
  faults stop, links behave like the daemon's TCP connections: delayed, but in
  order and reliable;
- partitions members in any shape: a split, one isolated member, one-way links, or
  a bridge member that both halves can reach while they cannot reach each other;
- crashes members (sometimes right after persisting a Ready, before sending it) and
  restarts them later from what they had persisted;
- changes membership (add learners, promote, demote, remove, the leader included),
  transfers leadership, compacts logs, and completes catch-ups after a delay;
- proposes unique entries to whichever member leads.

After every delivery and every tick the ``Checker`` verifies the Raft safety
properties. After ``fault_ticks`` the faults stop (links heal, members restart, no
more drops): a proposal must then commit within ``LIVENESS_TICKS`` and every member
of the final configuration must apply it within ``CATCH_UP_TICKS`` more; every
proposal acknowledged as committed must be in every member's state machine at its
index, exactly once.

Replay a seed exactly::

    .venv/bin/python -m tests.raft.sim --seed 1234 --trace
    RAFT_SEED=1234 .venv/bin/pytest tests/raft/test_sim.py -k replay
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from p2pledger.raft import (
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryKind,
    LogCompacted,
    Message,
    ProposalDropped,
    RaftError,
    Role,
)
from tests.raft.cluster import Cluster

__all__ = ["LIVENESS_TICKS", "Outcome", "Plan", "SimulationFailed", "replay_command", "run"]

SUBSTEPS = 4
ELECTION_TICK = 10
#: After faults stop, a proposal commits within this many ticks (asserted). The
#: worst case is a stale lease (up to one election timeout), a CheckQuorum step-down
#: (two), a split PreVote or two (2 x 20), and the commit round trips.
LIVENESS_TICKS = 120
#: ...and every member of the final configuration applies it within this many more.
CATCH_UP_TICKS = 120
#: Seeds from here on get long schedules.
LONG_SEEDS = 1_000_000


def replay_command(seed: int) -> str:
    return f".venv/bin/python -m tests.raft.sim --seed {seed} --trace"


class SimulationFailed(AssertionError):
    """A seed broke a property; the message says how to replay it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The shape of one run, derived from its seed alone."""

    seed: int
    voters: int
    fault_ticks: int
    drop: float
    duplicate: float
    max_delay: int  # in substeps
    partition_rate: float  # per tick
    crash_rate: float
    conf_rate: float
    transfer_rate: float
    compact_rate: float
    propose_rate: float
    pre_vote: bool
    check_quorum: bool
    max_msg_bytes: int
    max_inflight: int
    heartbeat_tick: int

    @classmethod
    def from_seed(cls, seed: int) -> Plan:
        """Seeds below ``LONG_SEEDS`` get short schedules (``make test``); the others
        long ones (``make sim``)."""
        r = random.Random(f"plan:{seed}")
        msg_bytes = r.choice((1, 256, 1 << 20))
        long = seed >= LONG_SEEDS
        return cls(
            seed=seed,
            voters=r.choice((3, 3, 3, 5, 5, 7)),
            fault_ticks=r.randint(60, 240) if long else r.randint(20, 80),
            drop=r.choice((0.0, 0.02, 0.05, 0.2)),
            duplicate=r.choice((0.0, 0.02, 0.1)),
            max_delay=r.choice((1, 2, 4, 8, 12)),
            partition_rate=r.choice((0.0, 0.02, 0.05, 0.1)),
            crash_rate=r.choice((0.0, 0.01, 0.03, 0.06)),
            conf_rate=r.choice((0.0, 0.02, 0.05, 0.1)),
            transfer_rate=r.choice((0.0, 0.01, 0.05)),
            compact_rate=r.choice((0.0, 0.02, 0.1)),
            propose_rate=r.choice((0.1, 0.3, 0.6)),
            pre_vote=r.random() < 0.85,
            check_quorum=r.random() < 0.85,
            max_msg_bytes=msg_bytes,
            # Tiny appends need a deep pipeline to drain a backlog within the bound.
            max_inflight=r.choice((16, 64) if msg_bytes == 1 else (2, 4, 64)),
            heartbeat_tick=r.choice((1, 2, 3)),
        )


@dataclass(slots=True)
class Outcome:
    """What one run did, for coverage assertions and reports."""

    seed: int
    voters: int
    ticks: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    partitions: int = 0
    crashes: int = 0
    restarts: int = 0
    conf_changes: int = 0
    transfers: int = 0
    compactions: int = 0
    catch_ups: int = 0
    acked: int = 0
    max_term: int = 0
    recovery_ticks: int = 0
    checks: int = 0
    final_conf: ConfState = field(default_factory=ConfState)


class Simulation:
    def __init__(self, plan: Plan, trace: Callable[[str], None] | None = None) -> None:
        self.plan = plan
        self.rng = random.Random(f"sched:{plan.seed}")
        self.trace = trace
        voters = [f"n{i}" for i in range(1, plan.voters + 1)]
        self.cluster = Cluster(
            voters,
            seed=plan.seed,
            election_tick=ELECTION_TICK,
            heartbeat_tick=plan.heartbeat_tick,
            pre_vote=plan.pre_vote,
            check_quorum=plan.check_quorum,
            max_msg_bytes=plan.max_msg_bytes,
            max_inflight_msgs=plan.max_inflight,
            snapshot_retry_ticks=3 * ELECTION_TICK,
            trace=trace,
        )
        self.cluster.on_apply = self._on_apply
        self.out = Outcome(seed=plan.seed, voters=plan.voters)
        self.queue: list[tuple[int, int, Message]] = []
        self.link_clock: dict[tuple[str, str], int] = {}
        self.now = 0
        self.tick_no = 0
        self.seq = 0
        self.faulty = True
        self.pending: dict[tuple[int, int], tuple[str, bytes]] = {}
        self.acked: dict[bytes, int] = {}
        self.proposed = 0
        self.down_until: dict[str, int] = {}
        self.catch_up_at: dict[str, int] = {}
        self.spares = 0

    def _say(self, text: str) -> None:
        if self.trace is not None:
            self.trace(f"[t{self.tick_no}] {text}")

    # --- the network ------------------------------------------------------------------

    def _pump(self) -> None:
        """Move what members sent into the delay queue, dropping and duplicating."""
        c, r, p = self.cluster, self.rng, self.plan
        for m in c.inflight:
            if self.faulty and r.random() < p.drop:
                self.out.dropped += 1
                continue
            self.seq += 1
            at = self.now + r.randint(1, p.max_delay)
            if not self.faulty:  # like TCP: in order on each link
                link = (m.sender, m.recipient)
                at = max(at, self.link_clock.get(link, 0))
                self.link_clock[link] = at
            heapq.heappush(self.queue, (at, self.seq, m))
            if self.faulty and r.random() < p.duplicate:
                self.out.duplicated += 1
                self.seq += 1
                later = self.now + r.randint(1, 3 * p.max_delay)
                heapq.heappush(self.queue, (later, self.seq, m))
        c.inflight.clear()

    def _deliver_due(self) -> None:
        due: list[Message] = []
        while self.queue and self.queue[0][0] <= self.now:
            due.append(heapq.heappop(self.queue)[2])
        if self.faulty:
            self.rng.shuffle(due)
        for m in due:
            if self.cluster.deliver(m):
                self.out.delivered += 1
            self._pump()

    # --- proposals and acknowledgements --------------------------------------------------

    def _on_apply(self, member: str, e: Entry) -> None:
        key = (e.index, e.term)
        owner = self.pending.get(key)
        if owner is not None and owner[0] == member and e.data == owner[1]:
            del self.pending[key]
            self.acked[e.data] = e.index
            self.out.acked += 1

    def _propose(self, tag: str) -> bool:
        leaders = [m for m in self.cluster.members.values() if m.up and m.n.role is Role.LEADER]
        if not leaders:
            return False
        leader = self.rng.choice(leaders)
        self.proposed += 1
        data = f"{tag}{self.proposed}".encode()
        try:
            e = leader.n.propose(data)
        except ProposalDropped:
            return False
        self.pending[(e.index, e.term)] = (leader.id, data)
        self.cluster.flush(leader.id)
        self._pump()
        return True

    # --- faults ---------------------------------------------------------------------------

    def _inject_faults(self) -> None:
        r, p = self.rng, self.plan
        if r.random() < p.partition_rate:
            self._partition()
        if r.random() < p.crash_rate:
            self._crash()
        if r.random() < p.conf_rate:
            self._change_membership()
        if r.random() < p.transfer_rate:
            self._transfer()
        if r.random() < p.compact_rate:
            self._compact()

    def _partition(self) -> None:
        c, r = self.cluster, self.rng
        names = sorted(c.members)
        shape = r.choice(("heal", "split", "isolate", "one-way", "bridge"))
        self.out.partitions += 1
        if shape == "heal":
            c.heal()
        elif shape == "split":
            r.shuffle(names)
            k = r.randint(1, len(names) - 1)
            c.partition(names[:k], names[k:])
        elif shape == "isolate":
            c.heal()
            c.isolate(r.choice(names))
        elif shape == "one-way":
            c.heal()
            for _ in range(r.randint(1, len(names))):
                a, b = r.sample(names, 2)
                c.blocked.add((a, b))
        else:
            bridge = r.choice(names)
            rest = [n for n in names if n != bridge]
            r.shuffle(rest)
            k = r.randint(1, max(1, len(rest) - 1))
            left, right = rest[:k], rest[k:]
            c.blocked = {(a, b) for a in left for b in right} | {
                (b, a) for a in left for b in right
            }
        self._say(f"partition {shape}: blocked {sorted(c.blocked)}")

    def _crash(self) -> None:
        c, r = self.cluster, self.rng
        up = sorted(m for m in c.members if c.members[m].up)
        if not up:
            return
        victim = r.choice(up)
        self.out.crashes += 1
        self.down_until[victim] = self.tick_no + r.randint(1, 4 * ELECTION_TICK)
        if r.random() < 0.3:
            self._say(f"crash {victim} after its next persist")
            c.crash_after_persist.add(victim)
        else:
            c.crash(victim)

    def _restart_due(self, *, all_down: bool = False) -> None:
        c = self.cluster
        for member in sorted(c.members):
            m = c.members[member]
            if m.up:
                continue
            if all_down or self.down_until.get(member, 0) <= self.tick_no:
                self.out.restarts += 1
                self.down_until.pop(member, None)
                c.restart(member)
                self._pump()

    def _leader_node(self) -> str | None:
        return self.cluster.leader()

    def _change_membership(self) -> None:
        c, r = self.cluster, self.rng
        leader = self._leader_node()
        if leader is None:
            return
        conf = c.members[leader].n.status().conf
        voters, learners = sorted(conf.voters), sorted(conf.learners)
        options: list[tuple[ConfChangeOp, str]] = []
        if len(conf.members) < 9:
            options.append((ConfChangeOp.ADD_LEARNER, ""))
        if learners and len(voters) < 7:
            options.append((ConfChangeOp.ADD_VOTER, r.choice(learners)))
        if len(voters) > 2:
            options.append((ConfChangeOp.ADD_LEARNER, r.choice(voters)))
            options.append((ConfChangeOp.REMOVE, r.choice(voters)))
        if learners:
            options.append((ConfChangeOp.REMOVE, r.choice(learners)))
        op, node = r.choice(options)
        if not node:
            self.spares += 1
            node = f"s{self.spares}"
        try:
            c.members[leader].n.propose_conf_change(ConfChange(op=op, node=node))
        except (ProposalDropped, RaftError):
            return
        if node not in c.members:
            c.add_member(node)
        self.out.conf_changes += 1
        self._say(f"conf change {op.name} {node} at {leader}")
        c.flush(leader)
        self._pump()

    def _transfer(self) -> None:
        c, r = self.cluster, self.rng
        leader = self._leader_node()
        if leader is None:
            return
        voters = sorted(c.members[leader].n.status().conf.voters)
        to = r.choice(voters)
        try:
            c.members[leader].n.transfer_leadership(to)
        except RaftError:
            return
        self.out.transfers += 1
        self._say(f"transfer {leader} -> {to}")
        c.flush(leader)
        self._pump()

    def _compact(self) -> None:
        c, r = self.cluster, self.rng
        up = sorted(m for m in c.members if c.members[m].up)
        if not up:
            return
        m = c.members[r.choice(up)]
        lo, hi = m.storage.first_index(), min(m.n.applied, m.storage.last_index())
        if hi < lo:
            return
        index = r.randint(lo, hi)
        try:
            m.storage.compact(index)
        except LogCompacted:  # pragma: no cover - guarded above
            return
        self.out.compactions += 1
        self._say(f"compact {m.id} to {index}")

    def _catch_ups_due(self) -> None:
        c = self.cluster
        for member in sorted(c.members):
            m = c.members[member]
            if m.catch_up is None or not m.up:
                self.catch_up_at.pop(member, None)
                continue
            at = self.catch_up_at.setdefault(member, self.tick_no + self.rng.randint(0, 8))
            if at <= self.tick_no:
                del self.catch_up_at[member]
                if c.complete_catch_up(member):
                    self.out.catch_ups += 1
                    self._say(f"catch-up {member}")
                    self._pump()

    # --- the clock -------------------------------------------------------------------------

    def _tick(self) -> None:
        c, r = self.cluster, self.rng
        self.tick_no += 1
        if self.faulty:
            self._inject_faults()
        self._restart_due()
        self._catch_ups_due()
        for member in sorted(c.members):
            if c.members[member].up and not (self.faulty and r.random() < 0.02):
                c.tick(member)
                self._pump()
        if self.faulty and r.random() < self.plan.propose_rate:
            for _ in range(r.choice((1, 1, 2, 4))):  # bursts share appends
                self._propose("p")
        for _ in range(SUBSTEPS):
            self.now += 1
            self._deliver_due()
        for m in c.members.values():
            if m.up:
                self.out.max_term = max(self.out.max_term, m.n.term)

    def _current_conf(self) -> ConfState | None:
        leader = self._leader_node()
        return None if leader is None else self.cluster.members[leader].n.status().conf

    def run(self) -> Outcome:
        c = self.cluster
        for _ in range(self.plan.fault_ticks):
            self._tick()
        # Faults stop: links heal, everyone restarts, nothing more is lost.
        self.faulty = False
        c.heal()
        c.crash_after_persist.clear()
        self._restart_due(all_down=True)
        self._say("faults stop")
        start = self.tick_no
        live: bytes | None = None
        while live is None:
            if self.tick_no - start >= LIVENESS_TICKS:
                raise AssertionError(
                    f"liveness: no proposal committed within {LIVENESS_TICKS} ticks after "
                    f"faults stopped (leader: {self._leader_node()})"
                )
            self._tick()
            mine = [d for d in self.acked if d.startswith(b"live")]
            if mine:
                live = mine[0]
            elif not any(d.startswith(b"live") for _, d in self.pending.values()):
                self._propose("live")
            elif self.tick_no % (2 * ELECTION_TICK) == 0:
                self._propose("live")  # the earlier one may have been lost with its leader
        self.out.recovery_ticks = self.tick_no - start
        target = self.acked[live]
        start = self.tick_no
        while True:
            conf = self._current_conf()
            members = sorted(conf.members) if conf is not None else ["(no leader)"]
            behind = [
                m for m in members if m not in c.members or len(c.members[m].applied) < target
            ]
            if conf is not None and not behind:
                break
            if self.tick_no - start >= CATCH_UP_TICKS:
                raise AssertionError(
                    f"liveness: {behind} did not apply index {target} within {CATCH_UP_TICKS} ticks"
                )
            self._tick()
        self._check_acked(conf)
        self.out.ticks = self.tick_no
        self.out.checks = c.checker.checks
        self.out.final_conf = conf
        return self.out

    def _check_acked(self, conf: ConfState) -> None:
        c = self.cluster
        for member in sorted(conf.members):
            applied = c.members[member].applied
            data = [e.data for e in applied if e.kind is EntryKind.NORMAL]
            if len(set(data)) != len(data):
                raise AssertionError(f"{member} applied an entry twice")
            for d, index in self.acked.items():
                if index > len(applied):
                    continue  # acknowledged after the target; not yet required here
                e = applied[index - 1]
                if e.data != d:
                    raise AssertionError(
                        f"acknowledged {d!r} at {index} but {member} applied {e.data!r} there"
                    )


def run(seed: int, trace: Callable[[str], None] | None = None) -> Outcome:
    """Run the simulation for ``seed``; raise SimulationFailed naming the replay command."""
    plan = Plan.from_seed(seed)
    try:
        return Simulation(plan, trace).run()
    except AssertionError as exc:
        raise SimulationFailed(
            f"seed {seed} failed: {exc}\n  plan: {plan}\n  replay: {replay_command(seed)}"
            f"\n  or: RAFT_SEED={seed} .venv/bin/pytest tests/raft/test_sim.py -k replay"
        ) from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="run one seed")
    parser.add_argument("--count", type=int, default=1, help="run this many seeds from --seed")
    parser.add_argument("--trace", action="store_true", help="print every event")
    args = parser.parse_args(argv)
    first = args.seed if args.seed is not None else 0
    trace = print if args.trace else None
    started = time.perf_counter()
    for seed in range(first, first + args.count):
        try:
            out = run(seed, trace)
        except SimulationFailed as exc:
            print(exc, file=sys.stderr)
            return 1
        if args.count == 1 or args.trace:
            print(out)
    took = time.perf_counter() - started
    print(f"{args.count} seeds from {first}: ok in {took:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
