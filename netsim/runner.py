"""Runs a scenario: cluster, relays, workload, faults, sampling, convergence, verdict.

``run_scenario`` does a whole run in one trio nursery, in this order:

1. Generate the work directory, start a ``LinkNet`` relay for every ordered pair of
   members, point every member's ``[dial]`` at its relays, set the region latency
   matrix (half the RTT each way), start the daemons, wait until every member is
   healthy and all agree on one leader. That moment is t = 0 of the run.
2. Side by side until the load window (``duration_s``) ends: the workload (setup,
   then open-loop load from ``workload.start_s``), the fault executor (each action of
   ``nemesis.timeline`` at its time on the run's own clock; ``fault.start`` and
   ``fault.end`` events), a sampler (every ``SAMPLE_S``: heights, leader and term as
   ``sample`` events, a ``leader`` event when either changes) and, with
   ``progress``, one live status line on stderr.
3. End every fault still running (heal the links, resume paused members, start
   killed ones), then poll every member's latest block until all report the same
   height and hash (``converged``) or ``recovery_bound_s`` passes
   (``not_converged``). Wait for the workload's last answers, and for the tips to
   agree and hold still once more, so that stopping does not race a last block.
4. Stop every daemon gracefully, export and audit each ledger, judge the run with
   ``checker.check`` and write the report.

Everything the run starts lives under that nursery and ``Cluster``'s context
manager, so an error or Ctrl-C (trio cancellation, KeyboardInterrupt) still stops
every daemon and closes every relay.

``LinkPlan`` (the link faults in force, layered on the base latency) and
``FaultOps`` (applying and ending one fault, resolving ``leader`` and ``follower``
from the members' status) are shared with ``netsim up`` (``netsim.control``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio
from rich.console import Console
from rich.live import Live
from rich.text import Text

from netsim import report
from netsim.checker import AuditResult, Verdict, check
from netsim.cluster import (
    ChangeNotFollowed,
    Cluster,
    ClusterError,
    ClusterSpec,
    ConfigUpdate,
    MemberFailed,
    MembershipRefused,
)
from netsim.history import Event, HistoryWriter, Outcome, Request, read_events, read_history
from netsim.link import Edge, LinkNet
from netsim.nemesis import FaultEvent, Phase, schedule, timeline
from netsim.partition import PartitionSpecError, blocked_edges, parse_partition
from netsim.scenario import Fault, FaultKind, Placement, Scenario, link_target
from netsim.workload import Workload, WorkloadSpec
from p2pledger.errors import P2PLedgerError
from p2pledger.membership import Role

__all__ = [
    "SAMPLE_S",
    "Applied",
    "EventLog",
    "FaultOps",
    "LinkPlan",
    "RecoveryWatcher",
    "RunError",
    "RunPaths",
    "RunResult",
    "Sampler",
    "agreed_leader",
    "run_scenario",
    "tips",
]

#: Seconds between two samples of the members' status.
SAMPLE_S: Final = 0.5
#: Every how many samples the members' memory and CPU time are read too.
RESOURCE_EVERY: Final = 10
#: Seconds between two looks at the tips while waiting for convergence.
TIP_POLL_S: Final = 0.25
#: How long the cluster may take to start and agree on a leader before t = 0.
STARTUP_TIMEOUT_S: Final = 90.0
#: How long a fault on "leader" waits for the members to know one.
LEADER_WAIT_S: Final = 10.0
#: How long a member restarted in a rolling restart may take to be healthy again.
ROLLING_HEALTHY_S: Final = 60.0
#: How long the workload's last requests may take beyond their own commit timeout.
DRAIN_MARGIN_S: Final = 30.0
#: Export and audit side by side, at most this many at once (2-core machines).
LEDGER_JOBS: Final = 2
#: The client number of the admins' membership updates in the history.
ADMIN_CLIENT: Final = 1_000_000
#: The op of a membership update (p2pledger's config.update).
CONFIG_UPDATE_OP: Final = "config.update"


class RunError(Exception):
    """A run could not be carried out (not a verdict about the cluster)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPaths:
    """Where a run left its files (netsim/DESIGN.md, "The work directory")."""

    workdir: Path
    events: Path
    history: Path
    ledgers: Path
    report_json: Path
    report_txt: Path
    timeline_png: Path

    @classmethod
    def of(cls, workdir: Path) -> RunPaths:
        return cls(
            workdir=workdir,
            events=workdir / "events.jsonl",
            history=workdir / "history.jsonl",
            ledgers=workdir / "ledgers",
            report_json=workdir / "report.json",
            report_txt=workdir / "report.txt",
            timeline_png=workdir / "timeline.png",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """A finished run: the verdict, the report's text and where the files are."""

    scenario: Scenario
    verdict: Verdict
    text: str
    paths: RunPaths
    converged: bool

    @property
    def ok(self) -> bool:
        return self.verdict.ok


# --- the links --------------------------------------------------------------------


class LinkPlan:
    """The link faults in force, by fault id, pushed to a ``LinkNet``.

    An edge's latency is the latest latency fault on it, or the base (half the
    region RTT); its bandwidth cap the latest bandwidth fault, or none. Blocked and
    stalled edges are the union of the partitions and stalls in force. ``LinkNet``
    lifts blocks and stalls only all at once (``heal``), so when the set shrinks the
    plan heals and puts back what is still in force.
    """

    def __init__(self, net: LinkNet, members: Sequence[str], placement: Placement) -> None:
        self.net = net
        self.members = tuple(members)
        self.edges: tuple[Edge, ...] = tuple(
            (a, b) for a in self.members for b in self.members if a != b
        )
        self.base: dict[Edge, tuple[float, float]] = {
            e: (placement.one_way(*e), placement.jitter_ms if not placement.empty else 0.0)
            for e in self.edges
        }
        self.blocks: dict[int, frozenset[Edge]] = {}
        self.stalls: dict[int, frozenset[Edge]] = {}
        self.latency: dict[int, tuple[frozenset[Edge], float, float]] = {}
        self.bandwidth: dict[int, tuple[frozenset[Edge], int]] = {}
        self._blocked: set[Edge] = set()
        self._stalled: set[Edge] = set()
        self._latency: dict[Edge, tuple[float, float]] = {}
        self._bandwidth: dict[Edge, int | None] = {}

    def remove(self, fault_id: int) -> None:
        for table in (self.blocks, self.stalls, self.latency, self.bandwidth):
            table.pop(fault_id, None)

    def clear(self) -> None:
        """Only the base latency left."""
        for table in (self.blocks, self.stalls, self.latency, self.bandwidth):
            table.clear()

    def apply(self) -> None:
        """Push the faults in force to the relays (only what changed)."""
        blocked = set().union(*self.blocks.values()) if self.blocks else set()
        stalled = set().union(*self.stalls.values()) if self.stalls else set()
        if not (self._blocked <= blocked and self._stalled <= stalled):
            self.net.heal()
            self._blocked, self._stalled = set(), set()
        if blocked - self._blocked:
            self.net.block(sorted(blocked - self._blocked))
            self._blocked = blocked
        if stalled - self._stalled:
            self.net.stall(sorted(stalled - self._stalled))
            self._stalled = stalled
        for edge in self.edges:
            delay = self.base[edge]
            for edges, ms, jitter in self.latency.values():  # later faults win
                if edge in edges:
                    delay = (ms, jitter)
            if self._latency.get(edge) != delay:
                self.net.set_latency(*edge, delay[0], delay[1])
                self._latency[edge] = delay
            cap: int | None = None
            for edges, rate in self.bandwidth.values():
                if edge in edges:
                    cap = rate
            if self._bandwidth.get(edge, None) != cap:
                self.net.set_bandwidth(*edge, cap)
                self._bandwidth[edge] = cap

    def describe(self) -> dict[str, Any]:
        """What is in force, for ``netsim status``."""
        return {
            "blocked": sorted(f"{a}->{b}" for a, b in self._blocked),
            "stalled": sorted(f"{a}->{b}" for a, b in self._stalled),
            "latency_ms": {
                f"{a}->{b}": list(v) for (a, b), v in sorted(self._latency.items()) if v != (0, 0)
            },
            "bandwidth": {
                f"{a}->{b}": v for (a, b), v in sorted(self._bandwidth.items()) if v is not None
            },
        }


# --- asking the members ------------------------------------------------------------


def agreed_leader(statuses: Mapping[str, Mapping[str, Any] | None]) -> tuple[str | None, int]:
    """The leader the answering members name at the highest term they report, if a
    majority of those naming one at that term agree; and that term."""
    answering = [s for s in statuses.values() if s is not None]
    terms = [s.get("term") for s in answering]
    term = max((t for t in terms if isinstance(t, int)), default=0)
    named = [s.get("leader") for s in answering if s.get("term") == term and s.get("leader")]
    if not named:
        return None, term
    best = max(sorted(set(named), key=str), key=named.count)
    if named.count(best) * 2 <= len(named):
        return None, term
    return str(best), term


async def tips(cluster: Cluster, names: Iterable[str]) -> dict[str, tuple[int, str] | None]:
    """Each member's latest block (height, hash) from its API; None if it does not
    answer (down, paused, or too slow)."""
    out: dict[str, tuple[int, str] | None] = {}

    async def one(name: str) -> None:
        out[name] = None
        if name not in cluster.running():
            return
        client = cluster.api(name)
        with trio.move_on_after(client.timeout_s + 1):
            try:
                block = await trio.to_thread.run_sync(client.block, abandon_on_cancel=True)
            except P2PLedgerError:
                return
            height = block.get("header", {}).get("height")
            digest = block.get("hash")
            if isinstance(height, int) and isinstance(digest, str):
                out[name] = (height, digest)

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(one, name)
    return out


def _agree(found: Mapping[str, tuple[int, str] | None]) -> tuple[int, str] | None:
    values = set(found.values())
    if len(values) == 1:
        (only,) = values
        return only
    return None


# --- faults ---------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Applied:
    """A fault that was started and is in force until ``FaultOps.end``."""

    id: int
    kind: FaultKind
    target: str | list[str]
    members: list[str]
    fault: Fault
    ended: bool = False
    #: Why the fault could not be applied (it was recorded and ended at once).
    error: str | None = None

    def label(self) -> str:
        target = self.target if isinstance(self.target, str) else ",".join(self.target)
        return f"#{self.id} {self.kind} {target}"


EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class MembershipDone:
    """A membership fault that went through: what, on whom, and the update."""

    action: str
    member: str
    role: str | None
    update: ConfigUpdate


#: Told of every membership change that committed (the runner points the load at the
#: members in force); awaited before the fault's events are written.
MembershipHook = Callable[[MembershipDone], Awaitable[None]]
#: Told of every config.update transaction sent, with its outcome, for the history.
AdminRecorder = Callable[[str, str, float, Outcome, ConfigUpdate | None, str | None], None]


class FaultOps:
    """Starts and ends faults on a cluster and its links, and records each as
    ``fault.start`` / ``fault.end`` events through ``emit``."""

    def __init__(
        self,
        cluster: Cluster,
        links: LinkPlan,
        emit: EventSink,
        rng: random.Random,
        voters: Sequence[str],
        *,
        on_membership: MembershipHook | None = None,
        record_admin: AdminRecorder | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.cluster = cluster
        self.links = links
        self.emit = emit
        self.rng = rng
        self._voters = tuple(voters)
        self.active: dict[int, Applied] = {}
        self.on_membership = on_membership
        self.record_admin = record_admin
        self.clock = clock or trio.current_time

    @property
    def names(self) -> tuple[str, ...]:
        """The members in force (partitions and link targets are drawn among them)."""
        return tuple(self.cluster.names)

    @property
    def voters(self) -> tuple[str, ...]:
        """The voters in force (the scenario's, until a membership change)."""
        network = self.cluster.network
        if network.version == 0:
            return self._voters
        return tuple(m.name for m in network.members if m.role is Role.VOTER)

    async def leader(self, *, wait_s: float = LEADER_WAIT_S) -> str | None:
        """The leader the running members agree on, waiting up to ``wait_s`` for one."""
        deadline = trio.current_time() + wait_s
        while True:
            lead, _ = agreed_leader(await self.cluster.statuses())
            if lead is not None or trio.current_time() >= deadline:
                return lead
            await trio.sleep(0.2)  # a poll interval

    async def resolve(self, target: str) -> tuple[str, dict[str, Any]]:
        """A process fault's member: ``target`` itself, or the leader or a follower now."""
        if target not in ("leader", "follower"):
            return target, {}
        lead = await self.leader()
        note: dict[str, Any] = {"as": target}
        if lead is None:
            note["leader_unknown"] = True
        if target == "leader" and lead is not None:
            return lead, note
        running = set(self.cluster.running())
        pool = [m for m in self.voters if m != lead and m in running] or [
            m for m in self.voters if m != lead
        ]
        return self.rng.choice(pool), note

    async def start(self, fault_id: int, fault: Fault, *, origin: str = "explicit") -> Applied:
        """Apply ``fault`` now and write its ``fault.start``; an instant fault (or one
        that could not be applied) gets its ``fault.end`` at once."""
        kind = fault.kind
        detail: dict[str, Any] = fault.detail()
        target: str | list[str] = fault.target
        members: list[str] = []
        instant = kind not in _LASTING or (kind is FaultKind.WIPE and fault.duration_s is None)
        try:
            if kind is FaultKind.PARTITION:
                lead = await self.leader() if "leader" in fault.target else None
                partition = parse_partition(fault.target)
                edges = blocked_edges(partition, self.names, leader=lead)
                detail["cut"] = partition.describe(self.names, leader=lead)
                members = sorted({m for e in edges for m in e}, key=_order)
                self.links.blocks[fault_id] = edges
                self.links.apply()
            elif kind in _LINK_FAULTS:
                lead = await self.leader() if fault.target == "leader" else None
                where = link_target(fault.target, self.names)
                edges = where.edges(self.names, leader=lead)
                if where.src is not None and where.dst is not None:
                    members = [where.src, where.dst]
                elif where.text == "all":
                    members = list(self.names)
                else:  # one member's links
                    members = [m for m in (lead if where.text == "leader" else where.text,) if m]
                    target = members[0] if members else fault.target
                detail["edges"] = len(edges)
                if kind is FaultKind.LATENCY:
                    self.links.latency[fault_id] = (edges, fault.ms or 0.0, fault.jitter_ms or 0.0)
                elif kind is FaultKind.BANDWIDTH:
                    assert fault.bytes_per_s is not None
                    self.links.bandwidth[fault_id] = (edges, fault.bytes_per_s)
                elif kind is FaultKind.STALL:
                    self.links.stalls[fault_id] = edges
                if kind is FaultKind.RESET:
                    self.net_reset(edges)
                else:
                    self.links.apply()
            elif kind is FaultKind.MEMBERSHIP:
                member, note = await self._membership(fault, detail)
                detail.update(note)
                target, members = member, [member]
            elif kind is FaultKind.ROLLING_RESTART:
                if fault.target == "all":  # followers first, the leader last
                    lead = await self.leader()
                    members = [m for m in self.names if m != lead]
                    members += [lead] if lead is not None else []
                else:
                    members = [m.strip() for m in fault.target.split(",")]
                target = members
                self.emit(
                    "fault.start", _fault_data(fault_id, kind, target, members, detail, origin)
                )
                try:
                    await self._rolling(members, 2.0 if fault.gap_s is None else fault.gap_s)
                except ClusterError as exc:
                    detail["error"] = str(exc)
                return self._ended_now(fault_id, kind, target, members, fault, detail)
            else:
                member, note = await self.resolve(fault.target)
                detail.update(note)
                target, members = member, [member]
                await self._process_start(kind, member, fault)
        except (ClusterError, PartitionSpecError, ValueError) as exc:
            detail["error"] = str(exc)
            if kind is FaultKind.MEMBERSHIP:
                detail["failed"] = True
            self.emit("fault.start", _fault_data(fault_id, kind, target, members, detail, origin))
            return self._ended_now(fault_id, kind, target, members, fault, detail)
        self.emit("fault.start", _fault_data(fault_id, kind, target, members, detail, origin))
        if instant:
            return self._ended_now(fault_id, kind, target, members, fault, detail)
        applied = Applied(id=fault_id, kind=kind, target=target, members=members, fault=fault)
        self.active[fault_id] = applied
        return applied

    async def _membership(self, fault: Fault, detail: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Carry out a membership fault through the admins' CLI; the member it is
        about and what to add to its event's detail (version, height, transaction,
        the API it went through, who signed, the change lines, how long it took)."""
        action = fault.action or ""
        started = self.clock()
        if fault.target in ("leader", "follower"):
            member, note = await self.resolve(fault.target)
        else:
            member, note = fault.target, {}
        target_for_detail = member
        detail["member"] = target_for_detail
        via = await self._via(member, action)
        note["via"] = via
        c = self.cluster
        try:
            if action == "add":
                update = await c.add_member(member, role=fault.role or "voter", via=via)
            elif action == "remove":
                update = await c.remove_member(member, via=via)
            elif action in ("promote", "demote"):
                update = await c.set_role(
                    member, "voter" if action == "promote" else "observer", via=via
                )
            elif action == "revoke-user":
                update = await c.revoke_user(member, via=via)
            elif action == "rotate-key":
                update = await c.rotate_key(member, via=via)
            else:  # pragma: no cover - the scenario checks the action
                raise ValueError(f"{action!r} is not a membership action")
        except MembershipRefused as exc:
            if self.record_admin is not None and exc.tx_id is not None:
                self.record_admin(exc.tx_id, via, started, Outcome.UNKNOWN, None, str(exc))
            raise
        except ChangeNotFollowed as exc:
            # the update committed, the member did not follow (e.g. did not catch up)
            if self.record_admin is not None:
                self.record_admin(
                    exc.update.tx_id, via, started, Outcome.COMMITTED, exc.update, None
                )
            detail.update(version=exc.update.version, height=exc.update.height, tx=exc.update.tx_id)
            raise ClusterError(f"{action} {member}: {_first_line(exc)} (see {exc.log})") from exc
        except MemberFailed as exc:
            raise ClusterError(f"{action} {member}: {_first_line(exc)} (see {exc.log})") from exc
        finally:
            note["took_s"] = round(self.clock() - started, 3)
        if self.record_admin is not None:
            self.record_admin(update.tx_id, via, started, Outcome.COMMITTED, update, None)
        note.update(
            version=update.version,
            height=update.height,
            tx=update.tx_id,
            signers=list(update.signers),
            changes=list(update.changes),
        )
        if self.on_membership is not None:
            await self.on_membership(
                MembershipDone(action=action, member=member, role=fault.role, update=update)
            )
        return member, note

    async def _via(self, member: str, action: str) -> str:
        """Whose API an admin sends a change about ``member`` to: the leader, unless
        the change is the leader's removal or key rotation (then another voter the
        leader can reach)."""
        lead = await self.leader()
        running = set(self.cluster.running())
        if (
            lead is not None
            and lead in running
            and not (lead == member and action in ("remove", "rotate-key"))
        ):
            return lead
        blocked = set().union(*self.links.blocks.values()) if self.links.blocks else set()
        pool = [
            m
            for m in self.voters
            if m != member
            and m in running
            and (lead is None or m == lead or (m, lead) not in blocked)
        ]
        if not pool:
            raise ClusterError(f"no running member to send the {action} of {member} through")
        return pool[0]

    def net_reset(self, edges: Iterable[Edge]) -> None:
        pairs = {tuple(sorted(e)) for e in edges}
        self.links.net.reset([(a, b) for a, b in sorted(pairs)])

    def _ended_now(
        self,
        fault_id: int,
        kind: FaultKind,
        target: str | list[str],
        members: list[str],
        fault: Fault,
        detail: Mapping[str, Any],
    ) -> Applied:
        data = _fault_data(fault_id, kind, target, members, {}, None)
        if "error" in detail:
            data["error"] = detail["error"]
        self.emit("fault.end", data)
        return Applied(
            id=fault_id,
            kind=kind,
            target=target,
            members=members,
            fault=fault,
            ended=True,
            error=detail.get("error"),
        )

    async def _process_start(self, kind: FaultKind, member: str, fault: Fault) -> None:
        c = self.cluster
        c.member(member)
        if kind is FaultKind.KILL or (kind is FaultKind.WIPE and fault.duration_s is not None):
            await c.kill(member)
        elif kind is FaultKind.WIPE:
            await c.wipe(member)
        elif kind is FaultKind.RESTART:
            await self._restart(member, graceful=False)
        elif kind is FaultKind.GRACEFUL_RESTART:
            await self._restart(member, graceful=True)
        elif kind is FaultKind.PAUSE:
            await c.pause(member)
        else:  # pragma: no cover - every process kind is handled above
            raise ValueError(f"{kind} is not a process fault")

    async def _restart(self, member: str, *, graceful: bool) -> None:
        if member in self.cluster.paused():
            await self.cluster.resume(member)
        if self.cluster.pid(member) is None:
            await self.cluster.start(member)
        else:
            await self.cluster.restart(member, graceful=graceful)

    async def _rolling(self, members: Sequence[str], gap_s: float) -> None:
        for i, member in enumerate(members):
            await self._restart(member, graceful=True)
            await self.cluster.wait_healthy([member], timeout_s=ROLLING_HEALTHY_S)
            if i + 1 < len(members):
                await trio.sleep(gap_s)  # the operator's pause between two members

    async def end(self, fault_id: int) -> None:
        """End a fault in force (heal, resume, start) and write its ``fault.end``."""
        applied = self.active.pop(fault_id, None)
        if applied is None or applied.ended:
            return
        applied.ended = True
        data = _fault_data(fault_id, applied.kind, applied.target, applied.members, {}, None)
        try:
            if applied.kind in (FaultKind.PARTITION, *_LINK_FAULTS):
                self.links.remove(fault_id)
                self.links.apply()
            else:
                member = applied.members[0]
                if applied.kind is FaultKind.PAUSE:
                    if member in self.cluster.paused():
                        await self.cluster.resume(member)
                elif applied.kind is FaultKind.WIPE:
                    await self.cluster.wipe(member)
                elif self.cluster.pid(member) is None:
                    await self.cluster.start(member)
        except ClusterError as exc:
            data["error"] = str(exc)
        self.emit("fault.end", data)

    async def end_all(self) -> None:
        """End every fault in force, oldest first."""
        for fault_id in sorted(self.active):
            await self.end(fault_id)

    def current(self) -> list[str]:
        return [a.label() for a in self.active.values()]


_LASTING: Final = frozenset(
    {
        FaultKind.PARTITION,
        FaultKind.KILL,
        FaultKind.PAUSE,
        FaultKind.WIPE,
        FaultKind.LATENCY,
        FaultKind.BANDWIDTH,
        FaultKind.STALL,
    }
)
_LINK_FAULTS: Final = (FaultKind.LATENCY, FaultKind.BANDWIDTH, FaultKind.RESET, FaultKind.STALL)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _order(name: str) -> tuple[int, str]:
    digits = name[1:]
    return (int(digits), name) if digits.isdigit() else (1 << 30, name)


def _fault_data(
    fault_id: int,
    kind: FaultKind,
    target: str | list[str],
    members: Sequence[str],
    detail: Mapping[str, Any],
    origin: str | None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": fault_id,
        "fault": str(kind),
        "target": target,
        "members": list(members),
    }
    if origin is not None:
        data["origin"] = origin
    if detail:
        data["detail"] = dict(detail)
    return data


# --- sampling and progress -------------------------------------------------------------


@dataclass(slots=True)
class Sampler:
    """Samples the members' status; the last sample is what the progress line shows."""

    cluster: Cluster
    emit: EventSink
    heights: dict[str, int | None] = field(default_factory=dict)
    leader: str | None = None
    term: int = 0
    statuses: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    count: int = 0

    async def sample(self) -> None:
        statuses = await self.cluster.statuses()
        self.statuses = statuses
        self.heights = {
            n: (s["height"] if s is not None and isinstance(s.get("height"), int) else None)
            for n, s in statuses.items()
        }
        lead, term = agreed_leader(statuses)
        data: dict[str, Any] = {"heights": dict(self.heights), "leader": lead, "term": term}
        if self.count % RESOURCE_EVERY == 0:  # memory and CPU of each member, from /proc
            data["resources"] = {
                n: {"rss_bytes": r["rss_bytes"], "cpu_s": r["cpu_s"]}
                for n, r in self.cluster.resources().items()
            }
        self.count += 1
        self.emit("sample", data)
        if lead is not None and (lead, term) != (self.leader, self.term):
            self.emit("leader", {"leader": lead, "term": term})
        if lead is not None:
            self.leader, self.term = lead, term

    async def run(self, start_at: float) -> None:
        """Sample every ``SAMPLE_S`` on the run's clock until cancelled."""
        k = 1
        while True:
            await trio.sleep_until(start_at + k * SAMPLE_S)
            await self.sample()
            behind = math.floor((trio.current_time() - start_at) / SAMPLE_S)
            k = max(k + 1, behind + 1)  # a slow sample skips the ticks it overran


#: The committed tx/s on the progress line is over about this many seconds.
_RATE_WINDOW_S: Final = 5.0


class _Progress:
    """One status line: elapsed time, heights, committed tx/s, faults in force."""

    def __init__(
        self,
        console: Console,
        sampler: Sampler,
        ops: FaultOps,
        committed: Callable[[], int],
        window_s: float,
    ) -> None:
        self.console = console
        self.sampler = sampler
        self.ops = ops
        self.committed = committed
        self.window_s = window_s
        self.phase = "load"
        self._marks: list[tuple[float, int]] = []

    def line(self, elapsed: float) -> Text:
        count = self.committed()
        old = [m for m in self._marks if elapsed - m[0] >= _RATE_WINDOW_S]
        self._marks = old[-1:] + [m for m in self._marks if elapsed - m[0] < _RATE_WINDOW_S]
        self._marks.append((elapsed, count))
        t_first, c_first = self._marks[0]
        rate = (count - c_first) / (elapsed - t_first) if elapsed > t_first else 0.0
        heights = " ".join(
            f"{n}:{'-' if h is None else h}" for n, h in self.sampler.heights.items()
        )
        faults = ", ".join(self.ops.current()) or "none"
        lead = self.sampler.leader or "?"
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{elapsed:6.1f}/{self.window_s:g} s ", style="bold")
        text.append(f"[{self.phase}] ")
        text.append(f"{heights}  leader {lead} (term {self.sampler.term})  ")
        text.append(f"{rate:5.1f} tx/s  ", style="green")
        text.append(f"faults: {faults}", style="yellow" if self.ops.active else "")
        return text

    async def run(self, start_at: float) -> None:
        if self.console.is_terminal:
            with Live(console=self.console, auto_refresh=False, transient=False) as live:
                while True:
                    live.update(self.line(trio.current_time() - start_at), refresh=True)
                    await trio.sleep(0.5)  # the refresh period of the line
        while True:
            self.console.print(self.line(trio.current_time() - start_at), soft_wrap=True)
            await trio.sleep(5.0)  # a line every 5 s in a log


# --- the run ------------------------------------------------------------------------------


class EventLog:
    """events.jsonl, with times on the run's clock (seconds since ``t0``)."""

    def __init__(self, writer: HistoryWriter, t0: float) -> None:
        self.writer = writer
        self.t0 = t0

    def now(self) -> float:
        return max(0.0, trio.current_time() - self.t0)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.writer.write(Event(t=round(self.now(), 3), kind=kind, data=data))


def cluster_spec(scenario: Scenario) -> ClusterSpec:
    c = scenario.cluster
    return ClusterSpec(
        members=c.members,
        observers=c.observers,
        max_transactions=c.max_transactions,
        batch_timeout_ms=c.batch_timeout_ms,
        chain_name=f"netsim-{scenario.name}",
        seed=scenario.seed,
        spares=c.spares,
        worker_threads=c.worker_threads,
    )


async def start_behind_relays(
    cluster: Cluster,
    nursery: trio.Nursery,
    placement: Placement,
    rng: random.Random,
) -> tuple[LinkNet, LinkPlan]:
    """Generate the cluster, start its relays and members, wait for a leader."""
    await trio.to_thread.run_sync(cluster.generate)
    names = cluster.all_names  # spares too: their own dials go through relays
    net = LinkNet({n: cluster.member(n).listen for n in names}, rng=rng)
    await nursery.start(net.run)
    founding = set(cluster.names)
    cluster.set_dial(
        {
            m: {peer: a for peer, a in net.dial_addresses(m).items() if peer in founding}
            for m in names
        }
    )
    links = LinkPlan(net, names, placement)
    links.apply()
    await cluster.start_all()
    await cluster.wait_healthy(timeout_s=STARTUP_TIMEOUT_S)
    deadline = trio.current_time() + STARTUP_TIMEOUT_S
    while agreed_leader(await cluster.statuses())[0] is None:
        if trio.current_time() >= deadline:
            raise RunError(f"the members agreed on no leader within {STARTUP_TIMEOUT_S:g} s")
        await trio.sleep(0.2)  # a poll interval
    return net, links


async def run_scenario(
    scenario: Scenario,
    workdir: Path,
    *,
    duration_override: float | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> RunResult:
    """Run ``scenario`` in ``workdir`` (created; must not hold a cluster yet)."""
    if duration_override is not None:
        scenario = scenario.with_duration(duration_override)
    console = console or Console(stderr=True)
    paths = RunPaths.of(Path(workdir).absolute())
    paths.workdir.mkdir(parents=True, exist_ok=True)
    plan = schedule(scenario)
    seeds = random.Random(scenario.seed)
    link_rng = random.Random(seeds.getrandbits(64))
    fault_rng = random.Random(seeds.getrandbits(64))
    load_rng = random.Random(seeds.getrandbits(64))
    voters = scenario.cluster.voters
    converged = False
    async with Cluster(paths.workdir, cluster_spec(scenario)) as cluster:
        async with trio.open_nursery() as relays:
            _, links = await start_behind_relays(cluster, relays, scenario.placement, link_rng)
            with (
                HistoryWriter(paths.events) as event_file,
                HistoryWriter(paths.history) as history,
            ):
                events = EventLog(event_file, trio.current_time())
                converged, figures = await _run(
                    scenario,
                    plan,
                    cluster,
                    links,
                    events,
                    history,
                    load_rng,
                    fault_rng,
                    voters,
                    console if progress else None,
                )
                await cluster.stop_all()
                events.emit("run.end", {"converged": converged, **figures})
            relays.cancel_scope.cancel()
        ledgers, audits = await _collect(cluster, paths.ledgers)
    history_records = read_history(paths.history)
    event_records = read_events(paths.events)
    verdict = check(
        ledgers=ledgers,
        audits=audits,
        history=history_records,
        events=event_records,
        recovery_bound_s=scenario.recovery_bound_s,
    )
    files = await trio.to_thread.run_sync(
        functools.partial(
            report.write_report,
            paths.workdir,
            scenario=scenario.name,
            seed=scenario.seed,
            verdict=verdict,
            history=history_records,
            events=event_records,
        )
    )
    text = files.text.read_text(encoding="utf-8")
    return RunResult(
        scenario=scenario, verdict=verdict, text=text, paths=paths, converged=converged
    )


async def _run(
    scenario: Scenario,
    plan: Sequence[FaultEvent],
    cluster: Cluster,
    links: LinkPlan,
    events: EventLog,
    history: HistoryWriter,
    load_rng: random.Random,
    fault_rng: random.Random,
    voters: Sequence[str],
    console: Console | None,
) -> tuple[bool, dict[str, Any]]:
    """Phases 2 and 3: whether the members converged in time, and figures for
    ``run.end`` (the workload's counts, the members' memory and CPU)."""
    t0 = events.t0
    window = scenario.duration_s
    w = scenario.workload
    events.emit(
        "run.start",
        {
            "scenario": scenario.name,
            "seed": scenario.seed,
            "members": list(cluster.names),
            "spares": cluster.spares,
            "duration_s": window,
            "recovery_bound_s": scenario.recovery_bound_s,
            "load_start_s": w.start_s,
            "schedule": [_planned(e) for e in plan],
            "wall_clock": time.time(),
        },
    )
    workload = Workload(
        cluster,
        WorkloadSpec(
            rate=w.rate,
            duration_s=max(0.0, window - w.start_s),
            clients=w.clients,
            transfer=w.transfer,
            wait_timeout_s=w.wait_timeout_s,
            members=w.members or tuple(voters),
            seed=scenario.seed,
        ),
        history,
        started_at=t0,
        rng=load_rng,
    )
    watcher = RecoveryWatcher(cluster, events)

    def emit(kind: str, data: dict[str, Any]) -> None:
        events.emit(kind, data)
        if kind == "fault.end":
            watcher.fault_ended(data["id"])

    default_targets = not w.members

    async def membership_changed(done: MembershipDone) -> None:
        """Point the load at the membership in force."""
        issuers = cluster.issuers()
        workload.set_issuer(issuers[0] if issuers else None)
        role = done.role or "voter"
        if done.action == "add":
            target = default_targets and role == "voter"
            workload.add_member(done.member, cluster.user_of(done.member), target=target)
        elif done.action == "remove":
            workload.remove_member(done.member)
        elif done.action == "revoke-user":
            workload.replace_user(done.member, cluster.user_of(done.member))
        if done.action in ("add", "revoke-user"):  # in the background: faults go on
            nursery.start_soon(functools.partial(workload.fund, done.member, via=done.update.via))

    def record_admin(
        tx_id: str,
        via: str,
        started: float,
        outcome: Outcome,
        update: ConfigUpdate | None,
        error: str | None,
    ) -> None:
        """The admins' config.update in the history: a request like any other (the
        checker holds it to the same promises)."""
        sent = max(0.0, started - t0)
        history.write(
            Request(
                id=tx_id,
                client=ADMIN_CLIENT,
                member=via,
                op=CONFIG_UPDATE_OP,
                sent=sent,
                done=max(sent, events.now()),
                outcome=outcome,
                height=update.height if update is not None else None,
                valid=True if update is not None else None,
                reason=None if update is not None else "membership_failed",
            )
        )

    ops = FaultOps(
        cluster,
        links,
        emit,
        fault_rng,
        voters,
        on_membership=membership_changed,
        record_admin=record_admin,
    )
    watcher.ops = ops
    sampler = Sampler(cluster, events.emit)
    await sampler.sample()
    load_done = trio.Event()
    bar = (
        None
        if console is None
        else _Progress(console, sampler, ops, lambda: workload.statistics().committed, window)
    )

    async def load() -> None:
        await workload.setup()
        await trio.sleep_until(t0 + w.start_s)
        await workload.run()
        load_done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler.run, t0)
        if bar is not None:
            nursery.start_soon(bar.run, t0)
        nursery.start_soon(load)
        watching = trio.CancelScope()
        nursery.start_soon(watcher.run, watching)
        for action in timeline(plan):
            await trio.sleep_until(t0 + action.t)
            if action.phase is Phase.START:
                await ops.start(action.event.id, action.event.fault, origin=action.event.origin)
            else:
                await ops.end(action.event.id)
        await trio.sleep_until(t0 + window)
        watching.cancel()  # from here on, the end of the run checks convergence itself
        if bar is not None:
            bar.phase = "recovery"
        await ops.end_all()
        links.clear()
        links.apply()
        await _restore(cluster)
        converged = await _converge(cluster, events, scenario.recovery_bound_s)
        if bar is not None:
            bar.phase = "drain"
        with trio.move_on_after(w.wait_timeout_s + DRAIN_MARGIN_S):
            await load_done.wait()
        nursery.cancel_scope.cancel()  # the load if still draining, the sampler, the line
    if converged:
        settle = max(1.0, 5 * scenario.cluster.batch_timeout_ms / 1000)
        converged = await _settle(cluster, events, scenario.recovery_bound_s, settle)
    return converged, {
        "workload": dataclasses.asdict(workload.statistics()),
        "resources": cluster.resources(),
    }


class RecoveryWatcher:
    """After a fault ends and none is left in force, watch the tips until every member
    agrees and write ``converged`` (the checker times recovery from the last
    ``fault.end`` to the first ``converged`` after it)."""

    def __init__(self, cluster: Cluster, events: EventLog) -> None:
        self.cluster = cluster
        self.events = events
        self.ops: FaultOps | None = None
        self._after: int | None = None
        self._wake = trio.Event()

    def fault_ended(self, fault_id: int) -> None:
        self._after = fault_id
        self._wake.set()

    def _quiet(self) -> bool:
        return self.ops is None or not self.ops.active

    async def run(self, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._after is not None and self._quiet():
                    after = self._after
                    agreed = _agree(await tips(self.cluster, self.cluster.names))
                    if agreed is not None and self._after == after and self._quiet():
                        self.events.emit(
                            "converged",
                            {"height": agreed[0], "hash": agreed[1], "after_fault": after},
                        )
                        self._after = None
                        break
                    await trio.sleep(TIP_POLL_S)  # a poll interval
                self._after = None if not self._quiet() else self._after


async def _restore(cluster: Cluster) -> None:
    """Every member running again: resume the paused, start the down."""
    for name in cluster.paused():
        await cluster.resume(name)
    for name in cluster.names:
        if cluster.pid(name) is None:
            await cluster.start(name)


async def _converge(cluster: Cluster, events: EventLog, bound_s: float) -> bool:
    """Poll the tips until all agree (``converged``) or ``bound_s`` passes."""
    deadline = trio.current_time() + bound_s
    found: dict[str, tuple[int, str] | None] = {}
    while True:
        found = await tips(cluster, cluster.names)
        agreed = _agree(found)
        if agreed is not None:
            events.emit("converged", {"height": agreed[0], "hash": agreed[1]})
            return True
        if trio.current_time() >= deadline:
            events.emit("not_converged", {"tips": _tips_json(found), "waited_s": bound_s})
            return False
        await trio.sleep(TIP_POLL_S)  # a poll interval


async def _settle(cluster: Cluster, events: EventLog, bound_s: float, hold_s: float) -> bool:
    """After the load: the tips agree and stay put for ``hold_s`` (no block in flight)."""
    deadline = trio.current_time() + bound_s
    since: tuple[float, tuple[int, str]] | None = None
    while True:
        found = await tips(cluster, cluster.names)
        agreed = _agree(found)
        now = trio.current_time()
        if agreed is None or since is None or since[1] != agreed:
            since = None if agreed is None else (now, agreed)
        elif now - since[0] >= hold_s:
            events.emit("converged", {"height": agreed[0], "hash": agreed[1], "final": True})
            return True
        if now >= deadline:
            events.emit(
                "not_converged", {"tips": _tips_json(found), "waited_s": bound_s, "final": True}
            )
            return False
        await trio.sleep(TIP_POLL_S)  # a poll interval


def _tips_json(found: Mapping[str, tuple[int, str] | None]) -> dict[str, Any]:
    return {m: (None if t is None else {"height": t[0], "hash": t[1]}) for m, t in found.items()}


def _planned(e: FaultEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "at_s": e.at_s,
        "end_s": e.end_s,
        "fault": str(e.kind),
        "target": e.target,
        "origin": str(e.origin),
        **e.fault.detail(),
    }


async def _collect(
    cluster: Cluster, directory: Path
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, AuditResult]]:
    """Export and audit every member's ledger (the daemons are stopped)."""
    directory.mkdir(parents=True, exist_ok=True)
    ledgers: dict[str, list[dict[str, Any]]] = {}
    audits: dict[str, AuditResult] = {}
    limiter = trio.CapacityLimiter(LEDGER_JOBS)

    async def one(name: str) -> None:
        async with limiter:
            out = directory / f"{name}.jsonl"
            try:
                await cluster.export(name, out)
                ledgers[name] = await trio.to_thread.run_sync(_read_jsonl, out)
            except (ClusterError, OSError, ValueError) as exc:
                ledgers[name] = []
                audits[name] = AuditResult(member=name, ok=False, message=f"export failed: {exc}")
                return
            ok, text = await cluster.audit(name)
            audits[name] = AuditResult(member=name, ok=ok, message=text.strip())

    ran = [n for n in cluster.all_names if n in cluster.names or n in cluster.removed]
    async with trio.open_nursery() as nursery:
        for name in ran:
            nursery.start_soon(one, name)
    return ledgers, audits


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                value = json.loads(line)
                if not isinstance(value, dict):
                    raise ValueError(f"{path}: a line is not a JSON object")
                out.append(value)
    return out
