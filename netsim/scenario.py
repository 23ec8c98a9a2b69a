"""Scenario files: a netsim run described in TOML, parsed into frozen, checked objects.

A scenario says how many members to run, where they sit (regions and the round-trip
times between them), what load to drive, which faults to inject when (an explicit
``[[faults]]`` schedule, a seeded random ``[nemesis]``, or both), and how soon after
the last fault every member must agree on one tip again. Testers write these files
by hand, so parsing reports every problem of a file at once, each with its key path
(``faults[2].target``), and refuses unknown keys rather than ignoring them.

Pure: ``parse_scenario`` takes text and returns a ``Scenario``; ``load_scenario`` only
adds reading the file. Nothing here reads a clock or touches the network.

Member names follow the cluster's (``netsim.cluster``): ``m0``..``m{N-1}``, of which
the last ``observers`` are observers, then the ``spares`` ``m{N}``.. that are not in
the founding network and join when a ``membership`` fault adds them. A fault target is
checked against them here, so a typo in a target is reported when the file is loaded,
not halfway through a run.

A ``membership`` fault is a change the admins make through the ledger (``action``:
add, remove, promote, demote, revoke-user, rotate-key; ``role`` for add). The
membership faults are checked as a sequence, in the order of their ``at_s``: a spare
is added once, a member is removed once and then no longer a target, at least one
voter remains.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from netsim.partition import PartitionSpecError, blocked_edges, parse_partition

__all__ = [
    "DISRUPTIVE_KINDS",
    "DURATION_KINDS",
    "INSTANT_KINDS",
    "LINK_KINDS",
    "MEMBERSHIP_ACTIONS",
    "NEMESIS_KINDS",
    "PROCESS_KINDS",
    "ClusterConfig",
    "Fault",
    "FaultKind",
    "LinkTarget",
    "NemesisConfig",
    "Placement",
    "Scenario",
    "ScenarioError",
    "ScenarioProblem",
    "WorkloadConfig",
    "link_target",
    "load_scenario",
    "member_names",
    "parse_scenario",
]

#: The most bytes a scenario file may have (a hand-written file is a few kilobytes).
MAX_SCENARIO_BYTES: Final = 1024 * 1024
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_REGION: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_LINK: Final = re.compile(r"(?P<a>[^<>\s-]+)\s*(?P<arrow><->|->)\s*(?P<b>[^<>\s-]+)")


class FaultKind(StrEnum):
    """What a fault does (netsim/DESIGN.md, "Relays and link faults")."""

    PARTITION = "partition"  # block the edges of a partition spec; heal at the end
    KILL = "kill"  # SIGKILL; start again at the end
    RESTART = "restart"  # SIGKILL and start again at once
    PAUSE = "pause"  # SIGSTOP; SIGCONT at the end
    GRACEFUL_RESTART = "graceful-restart"  # SIGTERM, wait for the exit, start again
    ROLLING_RESTART = "rolling-restart"  # graceful restart of each target, one by one
    WIPE = "wipe"  # SIGKILL, delete the ledger, start again (at the end, or at once)
    LATENCY = "latency"  # one-way delay and jitter on links; back to the base at the end
    BANDWIDTH = "bandwidth"  # a byte-rate cap on links; lifted at the end
    RESET = "reset"  # close the live connections on links now
    STALL = "stall"  # hold bytes on links; release them in order at the end
    MEMBERSHIP = "membership"  # an admins' change of the membership, through the ledger


#: Faults on daemon processes: their target is a member, "leader" or "follower".
PROCESS_KINDS: Final = frozenset(
    {
        FaultKind.KILL,
        FaultKind.RESTART,
        FaultKind.PAUSE,
        FaultKind.GRACEFUL_RESTART,
        FaultKind.ROLLING_RESTART,
        FaultKind.WIPE,
    }
)
#: Faults on relays: their target is "a->b", "a<->b", a member (all its links) or "all".
LINK_KINDS: Final = frozenset(
    {FaultKind.LATENCY, FaultKind.BANDWIDTH, FaultKind.RESET, FaultKind.STALL}
)
#: Faults that may last (``duration_s``); without one they last to the load window's end
#: (``wipe`` without one restarts the member at once).
DURATION_KINDS: Final = frozenset(
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
#: Faults that happen at one moment and take no ``duration_s``.
INSTANT_KINDS: Final = frozenset(FaultKind) - DURATION_KINDS
#: Faults that cut members off from the quorum while they last: the random nemesis
#: never runs two of them at once (nor one while a membership change is under way).
DISRUPTIVE_KINDS: Final = PROCESS_KINDS | {
    FaultKind.PARTITION,
    FaultKind.STALL,
    FaultKind.MEMBERSHIP,
}
#: Kinds the random nemesis may draw (a rolling restart has no fixed length to plan;
#: membership changes are written by hand, as admins make them).
NEMESIS_KINDS: Final = frozenset(FaultKind) - {FaultKind.ROLLING_RESTART, FaultKind.MEMBERSHIP}
#: What a membership fault does (``action``).
MEMBERSHIP_ACTIONS: Final = ("add", "remove", "promote", "demote", "revoke-user", "rotate-key")
#: The roles a member added by a membership fault may have (``role``).
ROLES: Final = ("voter", "observer")

#: The partition specs the random nemesis draws from unless told otherwise.
DEFAULT_PARTITIONS: Final = ("halves", "isolate-leader")

#: Targets resolved when the fault starts, from the members' status.
RUNTIME_TARGETS: Final = frozenset({"leader", "follower"})


class ScenarioError(ValueError):
    """A scenario file has one or more problems, all listed in the message."""

    def __init__(self, problems: Collection[ScenarioProblem]) -> None:
        self.problems = tuple(problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} scenario {noun}:\n{lines}")


@dataclass(frozen=True, slots=True)
class ScenarioProblem:
    """One problem in a scenario file: where it is and what is wrong."""

    source: str
    key: str
    reason: str

    def __str__(self) -> str:
        key = f" [{self.key}]" if self.key else ""
        return f"{self.source}{key}: {self.reason}"


# --- the objects --------------------------------------------------------------------


def member_names(members: int, first: int = 0) -> tuple[str, ...]:
    """The names a cluster gives its members, in order (from ``m{first}``)."""
    return tuple(f"m{i}" for i in range(first, first + members))


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """``[cluster]``: how many members (the last ``observers`` of them observers), how
    many ``spares`` (generated, not in the founding network, added by membership
    faults) and how their leaders cut blocks."""

    members: int = 3
    observers: int = 0
    max_transactions: int = 500
    batch_timeout_ms: int = 50
    spares: int = 0
    #: The members' node.toml ``[limits] worker_threads``: false runs their checks and
    #: block work on each one's event loop (members sharing the machine's cores).
    worker_threads: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        """Every founding member, voters first, then observers."""
        return member_names(self.members)

    @property
    def spare_names(self) -> tuple[str, ...]:
        """The spares, after the founding members."""
        return member_names(self.spares, self.members)

    @property
    def all_names(self) -> tuple[str, ...]:
        """Founding members and spares."""
        return self.names + self.spare_names

    @property
    def voters(self) -> tuple[str, ...]:
        return self.names[: self.members - self.observers]


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """``[regions]`` and ``[latency]``: each member's region and the RTT between regions.

    ``rtt_ms`` maps a sorted pair of regions to the round-trip time; a region with
    itself is 0 unless listed. Each direction of a link gets half the RTT.
    """

    regions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    rtt_ms: Mapping[tuple[str, str], float] = field(default_factory=lambda: MappingProxyType({}))
    jitter_ms: float = 0.0

    def rtt(self, a: str, b: str) -> float:
        """The round-trip time in ms between members ``a`` and ``b`` (0 without regions)."""
        if a not in self.regions or b not in self.regions:
            return 0.0
        ra, rb = self.regions[a], self.regions[b]
        return self.rtt_ms.get((min(ra, rb), max(ra, rb)), 0.0)

    def one_way(self, src: str, dst: str) -> float:
        """The base one-way delay in ms of the link from ``src`` to ``dst``."""
        return self.rtt(src, dst) / 2

    @property
    def empty(self) -> bool:
        return not self.regions


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadConfig:
    """``[workload]``: open-loop load from ``start_s`` to the end of the load window.

    ``rate`` is transactions per second over all clients; ``transfer`` the share of
    fund transfers (the rest are document anchors); ``members`` the members clients
    send to (all voters when empty).
    """

    rate: float = 20.0
    clients: int = 4
    transfer: float = 0.7
    start_s: float = 1.0
    wait_timeout_s: float = 10.0
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One ``[[faults]]`` entry (or one the nemesis drew).

    ``target`` is as written: a member, ``leader``, ``follower``, ``all``, a partition
    spec, or ``a->b`` / ``a<->b`` for link faults. ``duration_s`` is None for instant
    faults and for those that last to the load window's end.
    """

    at_s: float
    kind: FaultKind
    target: str
    duration_s: float | None = None
    ms: float | None = None
    jitter_ms: float | None = None
    bytes_per_s: int | None = None
    gap_s: float | None = None
    #: A membership fault's action (MEMBERSHIP_ACTIONS) and, for ``add``, the role.
    action: str | None = None
    role: str | None = None

    @property
    def end_s(self) -> float | None:
        return None if self.duration_s is None else self.at_s + self.duration_s

    def detail(self) -> dict[str, Any]:
        """The kind's parameters, for an event's ``detail``."""
        out: dict[str, Any] = {}
        for key in ("duration_s", "ms", "jitter_ms", "bytes_per_s", "gap_s", "action", "role"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class NemesisConfig:
    """``[nemesis]``: a random fault every ``interval_s`` from ``start_s`` to ``end_s``.

    Each fault lasts between half of ``duration_s`` and all of it. ``partitions``
    are the partition specs it may draw; ``latency_ms``, ``jitter_ms`` and
    ``bytes_per_s`` parameterize the link faults it draws.
    """

    seed: int
    kinds: tuple[FaultKind, ...]
    interval_s: float
    duration_s: float
    start_s: float = 5.0
    end_s: float | None = None
    partitions: tuple[str, ...] = DEFAULT_PARTITIONS
    latency_ms: float = 200.0
    jitter_ms: float = 50.0
    bytes_per_s: int = 32 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A whole scenario file, checked."""

    name: str
    description: str
    duration_s: float
    recovery_bound_s: float
    seed: int = 0
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    placement: Placement = field(default_factory=Placement)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    faults: tuple[Fault, ...] = ()
    nemesis: NemesisConfig | None = None
    source: str = "<scenario>"

    @property
    def members(self) -> tuple[str, ...]:
        return self.cluster.names

    def with_duration(self, duration_s: float) -> Scenario:
        """The same scenario with another load window (``netsim run --duration``).

        The schedule is cut to the new window by ``nemesis.schedule``: faults that
        start after it are left out, those still running at its end end there.
        """
        if not math.isfinite(duration_s) or duration_s <= 0:
            raise ValueError(f"a duration is a positive number of seconds, not {duration_s}")
        nemesis = self.nemesis
        if nemesis is not None and nemesis.end_s is not None:
            nemesis = replace(nemesis, end_s=min(nemesis.end_s, duration_s))
        return replace(self, duration_s=duration_s, nemesis=nemesis)


# --- link targets (shared with the runner) -----------------------------------------


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """A link fault's target: ``a->b`` (one edge), ``a<->b`` (both), a member's
    edges (``m1``, or ``leader``), or every edge (``all``)."""

    text: str
    src: str | None = None
    dst: str | None = None
    both: bool = False

    def edges(self, members: Collection[str], *, leader: str | None) -> frozenset[tuple[str, str]]:
        """The directed edges it names among ``members``; ``leader`` resolves "leader"."""
        names = list(members)
        every = {(a, b) for a in names for b in names if a != b}
        if self.src is not None and self.dst is not None:
            pairs = {(self.src, self.dst)}
            if self.both:
                pairs.add((self.dst, self.src))
            return frozenset(pairs & every)
        if self.text == "all":
            return frozenset(every)
        member = leader if self.text == "leader" else self.text
        if member is None:
            return frozenset()
        return frozenset(e for e in every if member in e)


def link_target(text: str, members: Collection[str]) -> LinkTarget:
    """Parse a link fault's target; ValueError says what is wrong."""
    text = text.strip()
    if text in ("all", "leader"):
        return LinkTarget(text)
    if text in members:
        return LinkTarget(text)
    match = _LINK.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a link target; write a->b, a<->b, a member, 'leader' or 'all'"
        )
    a, b = match["a"], match["b"]
    for name in (a, b):
        if name not in members:
            raise ValueError(f"{name!r} in {text!r} is not a member ({_names(members)})")
    if a == b:
        raise ValueError(f"{text!r} links a member to itself")
    return LinkTarget(text, a, b, match["arrow"] == "<->")


# --- parsing ------------------------------------------------------------------------


def load_scenario(path: Path) -> Scenario:
    """Read and parse a scenario file; ScenarioError for a file that cannot be read."""
    source = str(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SCENARIO_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ScenarioError([ScenarioProblem(source, "", f"cannot read it: {reason}")]) from exc
    if len(data) > MAX_SCENARIO_BYTES:
        problem = ScenarioProblem(source, "", f"is over {MAX_SCENARIO_BYTES} bytes")
        raise ScenarioError([problem])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError([ScenarioProblem(source, "", f"is not UTF-8: {exc}")]) from exc
    return parse_scenario(text, source=source)


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    """The scenario in TOML ``text``; ScenarioError lists every problem found."""
    problems = _Problems(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([ScenarioProblem(source, "", f"is not valid TOML: {exc}")]) from exc
    scenario = _Reader(problems).scenario(data)
    if problems or scenario is None:
        raise problems.error()
    return replace(scenario, source=source)


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[ScenarioProblem] = []

    def add(self, key: str, reason: str) -> None:
        self.items.append(ScenarioProblem(self.source, key, reason))

    def __bool__(self) -> bool:
        return bool(self.items)

    def error(self) -> ScenarioError:
        return ScenarioError(self.items)


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"{type(value).__name__} {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return f"array of {len(value)} items"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def _names(members: Collection[str]) -> str:
    names = list(members)
    return ", ".join(names) if len(names) <= 8 else f"{names[0]}..{names[-1]}"


class _Table:
    """One TOML table, read key by key; getters return None after a problem."""

    def __init__(
        self, data: Mapping[str, Any], path: str, problems: _Problems, allowed: Collection[str]
    ) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        for key in data:
            if key not in allowed:
                shown = ", ".join(sorted(allowed)) or "none"
                problems.add(self.where(key), f"unknown key {key!r}; allowed here: {shown}")

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, reason: str) -> None:
        self.problems.add(self.where(key), reason)

    def raw(self, key: str, *, required: bool) -> Any:
        if key in self.data:
            return self.data[key]
        if required:
            self.problem(key, f"missing required key {key!r}")
        return None

    def string(self, key: str, *, default: str | None = None) -> str | None:
        value = self.raw(key, required=default is None)
        if value is None:
            return default
        if not isinstance(value, str):
            self.problem(key, f"expected a string, got {_describe(value)}")
            return None
        return value

    def boolean(self, key: str, *, default: bool) -> bool | None:
        value = self.raw(key, required=False)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, got {_describe(value)}")
            return None
        return value

    def integer(self, key: str, *, default: int | None = None, minimum: int = 1) -> int | None:
        value = self.raw(key, required=default is None)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"expected an integer, got {_describe(value)}")
            return None
        if value < minimum:
            self.problem(key, f"must be at least {minimum}, got {value}")
            return None
        return value

    def number(
        self,
        key: str,
        *,
        default: float | None = None,
        required: bool = False,
        positive: bool = True,
        maximum: float | None = None,
    ) -> float | None:
        """A finite number (> 0, or >= 0 when not ``positive``); None when absent."""
        value = self.raw(key, required=required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(key, f"expected a number, got {_describe(value)}")
            return None
        number = float(value)
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            must = "a positive" if positive else "a non-negative"
            self.problem(key, f"must be {must} finite number, got {value}")
            return None
        if maximum is not None and number > maximum:
            self.problem(key, f"must be at most {maximum:g}, got {value}")
            return None
        return number

    def strings(self, key: str) -> list[tuple[str, str]] | None:
        """An array of strings as (key path, string) pairs; None when absent."""
        value = self.raw(key, required=False)
        if value is None:
            return None
        if not isinstance(value, list):
            self.problem(key, f"expected an array of strings, got {_describe(value)}")
            return []
        out: list[tuple[str, str]] = []
        for i, item in enumerate(value):
            where = f"{self.where(key)}[{i}]"
            if isinstance(item, str):
                out.append((where, item))
            else:
                self.problems.add(where, f"expected a string, got {_describe(item)}")
        return out

    def table(self, key: str, allowed: Collection[str] | None) -> _Table | None:
        """A sub-table (None when absent or not a table); ``allowed`` None: any key."""
        value = self.raw(key, required=False)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(key, f"expected a table [{self.where(key)}], got {_describe(value)}")
            return None
        return _Table(value, self.where(key), self.problems, value if allowed is None else allowed)

    def tables(self, key: str, allowed: Collection[str]) -> Iterator[_Table]:
        value = self.raw(key, required=False)
        if value is None:
            return
        if not isinstance(value, list):
            self.problem(key, f"expected [[{key}]] tables, got {_describe(value)}")
            return
        for i, item in enumerate(value):
            where = f"{self.where(key)}[{i}]"
            if isinstance(item, dict):
                yield _Table(item, where, self.problems, allowed)
            else:
                self.problems.add(where, f"expected a table, got {_describe(item)}")


_TOP: Final = ("scenario", "cluster", "regions", "latency", "workload", "faults", "nemesis")
_SCENARIO: Final = ("name", "description", "duration_s", "seed", "recovery_bound_s")
_CLUSTER: Final = (
    "members",
    "observers",
    "max_transactions",
    "batch_timeout_ms",
    "spares",
    "worker_threads",
)
_WORKLOAD: Final = ("rate", "clients", "transfer", "start_s", "wait_timeout_s", "members")
_FAULT: Final = (
    "at_s",
    "kind",
    "target",
    "duration_s",
    "ms",
    "jitter_ms",
    "bytes_per_s",
    "gap_s",
    "action",
    "role",
)
_NEMESIS: Final = (
    "seed",
    "kinds",
    "interval_s",
    "duration_s",
    "start_s",
    "end_s",
    "partitions",
    "latency_ms",
    "jitter_ms",
    "bytes_per_s",
)
#: Parameters each kind takes beyond at_s, kind, target and duration_s.
_PARAMETERS: Final[Mapping[FaultKind, frozenset[str]]] = MappingProxyType(
    {
        FaultKind.LATENCY: frozenset({"ms", "jitter_ms"}),
        FaultKind.BANDWIDTH: frozenset({"bytes_per_s"}),
        FaultKind.ROLLING_RESTART: frozenset({"gap_s"}),
        FaultKind.MEMBERSHIP: frozenset({"action", "role"}),
    }
)
_MAX_MEMBERS: Final = 64


class _Reader:
    def __init__(self, problems: _Problems) -> None:
        self.problems = problems

    def scenario(self, data: Mapping[str, Any]) -> Scenario | None:
        top = _Table(data, "", self.problems, _TOP)
        head = top.table("scenario", _SCENARIO)
        if head is None:
            if "scenario" not in data:
                self.problems.add("scenario", "missing required table [scenario]")
            head = _Table({}, "scenario", _Problems(""), _SCENARIO)
        name = head.string("name")
        if name is not None and not _NAME.fullmatch(name):
            head.problem("name", f"{name!r} is not a name: lowercase letters, digits, . _ -")
            name = None
        description = head.string("description")
        duration = head.number("duration_s", required=True)
        seed = head.integer("seed", default=0, minimum=0)
        bound = head.number("recovery_bound_s", required=True)

        cluster = self.cluster(top.table("cluster", _CLUSTER))
        names = cluster.all_names if cluster is not None else ()
        placement = self.placement(
            top.table("regions", None),
            top.table("latency", None),
            names,
            cluster.names if cluster is not None else (),
        )
        if "latency" in data and "regions" not in data:
            top.problem("latency", "[latency] needs [regions] to say where each member is")
        window = duration if duration is not None else math.inf
        workload = self.workload(top.table("workload", _WORKLOAD), cluster, window)
        numbered = [
            (i, f)
            for i, t in enumerate(top.tables("faults", _FAULT))
            if (f := self.fault(t, cluster, window)) is not None
        ]
        faults = tuple(f for _, f in numbered)
        if cluster is not None:
            self.membership_sequence(numbered, cluster)
        nemesis = self.nemesis(top.table("nemesis", _NEMESIS), cluster, window, seed)
        if "nemesis" in data and nemesis is None and not self.problems:
            top.problem("nemesis", "expected a table [nemesis]")
        if (
            name is None
            or description is None
            or duration is None
            or bound is None
            or seed is None
            or cluster is None
            or placement is None
            or workload is None
        ):
            return None
        return Scenario(
            name=name,
            description=description.strip(),
            duration_s=duration,
            recovery_bound_s=bound,
            seed=seed,
            cluster=cluster,
            placement=placement,
            workload=workload,
            faults=faults,
            nemesis=nemesis,
        )

    def cluster(self, t: _Table | None) -> ClusterConfig | None:
        if t is None:
            return ClusterConfig()
        members = t.integer("members", default=3)
        observers = t.integer("observers", default=0, minimum=0)
        max_tx = t.integer("max_transactions", default=500)
        batch = t.integer("batch_timeout_ms", default=50)
        spares = t.integer("spares", default=0, minimum=0)
        workers = t.boolean("worker_threads", default=True)
        if members is not None and spares is not None and members + spares > _MAX_MEMBERS:
            key = "spares" if spares else "members"
            t.problem(key, f"at most {_MAX_MEMBERS} members (spares included) run on one machine")
            return None
        if members is None or observers is None or max_tx is None or batch is None:
            return None
        if spares is None or workers is None:
            return None
        if observers >= members:
            t.problem("observers", f"{observers} of {members} members leaves no voter")
            return None
        return ClusterConfig(
            members=members,
            observers=observers,
            max_transactions=max_tx,
            batch_timeout_ms=batch,
            spares=spares,
            worker_threads=workers,
        )

    def placement(
        self,
        regions: _Table | None,
        latency: _Table | None,
        names: tuple[str, ...],
        required: tuple[str, ...],
    ) -> Placement | None:
        """``names`` may have a region (spares too); each of ``required`` must."""
        if regions is None:
            return Placement()
        where: dict[str, str] = {}
        for member, region in regions.data.items():
            if names and member not in names:
                regions.problem(member, f"{member!r} is not a member ({_names(names)})")
            elif not isinstance(region, str) or not _REGION.fullmatch(region):
                regions.problem(member, f"a region is a lowercase name, got {_describe(region)}")
            else:
                where[member] = region
        missing = [m for m in required if m not in regions.data]
        if missing:
            self.problems.add("regions", f"no region for {', '.join(missing)}")
        rtt: dict[tuple[str, str], float] = {}
        jitter = 0.0
        if latency is not None:
            jitter = latency.number("jitter_ms", default=0.0, positive=False) or 0.0
            used = set(where.values())
            for key in latency.data:
                if key == "jitter_ms":
                    continue
                a, slash, b = key.partition("/")
                if not slash or not _REGION.fullmatch(a) or not _REGION.fullmatch(b):
                    latency.problem(key, f'{key!r} is not a pair of regions; write "a/b" = RTT')
                    continue
                if a not in used or b not in used:
                    unknown = a if a not in used else b
                    latency.problem(key, f"no member is in region {unknown!r}")
                    continue
                pair = (min(a, b), max(a, b))
                value = latency.number(key, positive=False)
                if pair in rtt:
                    latency.problem(key, f"the RTT between {a} and {b} is given twice")
                elif value is not None:
                    rtt[pair] = value
            regions_used = sorted(used)
            absent = [
                f"{a}/{b}"
                for i, a in enumerate(regions_used)
                for b in regions_used[i + 1 :]
                if (a, b) not in rtt
            ]
            if absent:
                self.problems.add("latency", f"no RTT for {', '.join(absent)}")
        elif len(set(where.values())) > 1:
            self.problems.add("latency", "members in several regions need a [latency] table")
        return Placement(
            regions=MappingProxyType(where), rtt_ms=MappingProxyType(rtt), jitter_ms=jitter
        )

    def workload(
        self, t: _Table | None, cluster: ClusterConfig | None, window: float
    ) -> WorkloadConfig | None:
        if t is None:
            return WorkloadConfig()
        rate = t.number("rate", default=20.0)
        clients = t.integer("clients", default=4)
        transfer = t.number("transfer", default=0.7, positive=False, maximum=1.0)
        start = t.number("start_s", default=1.0, positive=False)
        wait = t.number("wait_timeout_s", default=10.0)
        if start is not None and start >= window:
            t.problem("start_s", f"starts at {start:g} s, after the load window ({window:g} s)")
        members: list[str] = []
        for where, name in t.strings("members") or []:
            if cluster is not None and name not in cluster.names:
                self.problems.add(where, f"{name!r} is not a member ({_names(cluster.names)})")
            else:
                members.append(name)
        if rate is None or clients is None or transfer is None or start is None or wait is None:
            return None
        return WorkloadConfig(
            rate=rate,
            clients=clients,
            transfer=transfer,
            start_s=start,
            wait_timeout_s=wait,
            members=tuple(members),
        )

    def fault(self, t: _Table, cluster: ClusterConfig | None, window: float) -> Fault | None:
        at = t.number("at_s", required=True, positive=False)
        if at is not None and at >= window:
            t.problem("at_s", f"at {at:g} s is not inside the load window ({window:g} s)")
        text = t.string("kind")
        kind: FaultKind | None = None
        if text is not None:
            try:
                kind = FaultKind(text)
            except ValueError:
                t.problem("kind", f"{text!r} is not a fault kind: {', '.join(FaultKind)}")
        default_target = "all" if kind is FaultKind.ROLLING_RESTART else None
        target = t.string("target", default=default_target)
        duration = t.number("duration_s")
        ms = t.number("ms", positive=False)
        jitter = t.number("jitter_ms", positive=False)
        rate = t.integer("bytes_per_s", default=0)
        gap = t.number("gap_s", positive=False)
        action = t.string("action", default="") or None
        role = t.string("role", default="") or None
        if kind is None:
            return None
        allowed = _PARAMETERS.get(kind, frozenset())
        for key in ("ms", "jitter_ms", "bytes_per_s", "gap_s", "action", "role"):
            if key in t.data and key not in allowed:
                t.problem(key, f"a {kind} fault takes no {key!r}")
        if "duration_s" in t.data and kind in INSTANT_KINDS:
            t.problem("duration_s", f"a {kind} fault is instant; it takes no duration_s")
        if kind is FaultKind.LATENCY and "ms" not in t.data:
            t.problem("ms", "a latency fault needs ms (the one-way delay)")
        if kind is FaultKind.BANDWIDTH and "bytes_per_s" not in t.data:
            t.problem("bytes_per_s", "a bandwidth fault needs bytes_per_s")
        if kind is FaultKind.MEMBERSHIP:
            action, role = self.membership_fault(t, action, role)
        if target is not None and cluster is not None:
            reason = check_target(kind, target, cluster)
            if reason is not None:
                t.problem("target", reason)
        if at is None or target is None:
            return None
        return Fault(
            at_s=at,
            kind=kind,
            target=target.strip(),
            duration_s=duration if kind in DURATION_KINDS else None,
            ms=ms,
            jitter_ms=jitter,
            bytes_per_s=rate or None,
            gap_s=gap,
            action=action,
            role=role,
        )

    def membership_fault(
        self, t: _Table, action: str | None, role: str | None
    ) -> tuple[str | None, str | None]:
        """A membership fault's action and role, checked (the role defaults to voter)."""
        if "action" not in t.data:
            t.problem(
                "action", f"a membership fault needs an action: {', '.join(MEMBERSHIP_ACTIONS)}"
            )
        elif action not in MEMBERSHIP_ACTIONS:
            t.problem("action", f"{action!r} is not one of {', '.join(MEMBERSHIP_ACTIONS)}")
            action = None
        if role is not None and action is not None and action != "add":
            t.problem("role", f"only an add takes a role; {action} does not")
        elif role is not None and role not in ROLES:
            t.problem("role", f"{role!r} is not a role: {', '.join(ROLES)}")
            role = None
        if action == "add" and role is None:
            role = "voter"
        return action, role

    def membership_sequence(
        self, faults: Sequence[tuple[int, Fault]], cluster: ClusterConfig
    ) -> None:
        """The membership faults, in time order, must fit the members they find: a
        spare added once, a member removed once, at least one voter left."""
        roles: dict[str, str] = {
            m: ("observer" if m not in cluster.voters else "voter") for m in cluster.names
        }
        added: set[str] = set()
        removed: set[str] = set()
        order = sorted(
            ((i, f) for i, f in faults if f.kind is FaultKind.MEMBERSHIP),
            key=lambda item: (item[1].at_s, item[0]),
        )
        for i, f in order:
            where = f"faults[{i}].target"
            target, action = f.target, f.action
            if action is None:
                continue
            if action == "add":
                if target not in cluster.spare_names:
                    spares = ", ".join(cluster.spare_names) or "none: set [cluster] spares"
                    self.problems.add(where, f"an add targets a spare ({spares}), not {target!r}")
                elif target in added:
                    self.problems.add(where, f"{target} is added twice")
                else:
                    added.add(target)
                    roles[target] = f.role or "voter"
                continue
            if target in RUNTIME_TARGETS or target not in cluster.all_names:
                continue  # resolved when the fault starts, or already reported
            if target in removed:
                self.problems.add(where, f"{target} was removed before this {action}")
            elif target not in roles:
                self.problems.add(where, f"{target} is not a member at {f.at_s:g} s (add it first)")
            elif action == "remove":
                removed.add(target)
                roles.pop(target)
            elif action == "promote" and roles[target] == "voter":
                self.problems.add(where, f"{target} is already a voter")
            elif action == "demote" and roles[target] == "observer":
                self.problems.add(where, f"{target} is already an observer")
            elif action in ("promote", "demote"):
                roles[target] = "voter" if action == "promote" else "observer"
            if "voter" not in roles.values():
                self.problems.add(where, f"after this {action} no voter is left")

    def nemesis(
        self, t: _Table | None, cluster: ClusterConfig | None, window: float, seed: int | None
    ) -> NemesisConfig | None:
        if t is None:
            return None
        own_seed = t.integer("seed", default=seed if seed is not None else 0, minimum=0)
        kinds: list[FaultKind] = []
        listed = t.strings("kinds")
        if listed is None:
            t.problem("kinds", "missing required key 'kinds'")
        elif not listed and "kinds" in t.data:
            t.problem("kinds", "list at least one fault kind")
        for where, text in listed or []:
            try:
                kind = FaultKind(text)
            except ValueError:
                self.problems.add(where, f"{text!r} is not a fault kind: {', '.join(FaultKind)}")
                continue
            if kind not in NEMESIS_KINDS:
                self.problems.add(where, f"{kind} is not a random fault; schedule it in [[faults]]")
            elif kind not in kinds:
                kinds.append(kind)
        interval = t.number("interval_s", required=True)
        duration = t.number("duration_s", required=True)
        start = t.number("start_s", default=5.0, positive=False)
        end = t.number("end_s")
        if start is not None and start >= window:
            t.problem("start_s", f"starts at {start:g} s, after the load window ({window:g} s)")
        if end is not None and end > window:
            t.problem("end_s", f"ends at {end:g} s, after the load window ({window:g} s)")
        if start is not None and end is not None and end <= start:
            t.problem("end_s", f"ends at {end:g} s, not after start_s ({start:g} s)")
        partitions: list[str] = []
        for where, spec in t.strings("partitions") or []:
            reason = None if cluster is None else check_target(FaultKind.PARTITION, spec, cluster)
            if reason is not None:
                self.problems.add(where, reason)
            else:
                partitions.append(spec.strip())
        if "partitions" in t.data and not partitions and not self.problems:
            t.problem("partitions", "list at least one partition spec")
        latency = t.number("latency_ms", default=200.0, positive=False)
        jitter = t.number("jitter_ms", default=50.0, positive=False)
        rate = t.integer("bytes_per_s", default=32 * 1024)
        if (
            own_seed is None
            or not kinds
            or interval is None
            or duration is None
            or start is None
            or latency is None
            or jitter is None
            or rate is None
        ):
            return None
        return NemesisConfig(
            seed=own_seed,
            kinds=tuple(kinds),
            interval_s=interval,
            duration_s=duration,
            start_s=start,
            end_s=end,
            partitions=tuple(partitions) or DEFAULT_PARTITIONS,
            latency_ms=latency,
            jitter_ms=jitter,
            bytes_per_s=rate,
        )


def check_target(kind: FaultKind, target: str, cluster: ClusterConfig) -> str | None:
    """Why ``target`` is not a valid target of a ``kind`` fault, or None if it is."""
    names = cluster.names
    target = target.strip()
    if kind is FaultKind.PARTITION:
        try:
            partition = parse_partition(target)
            blocked_edges(partition, names, leader=names[0])
        except PartitionSpecError as exc:
            return f"{target!r} is not a partition of {_names(names)}: {exc}"
        return None
    if kind in LINK_KINDS:
        try:
            link_target(target, names)
        except ValueError as exc:
            return str(exc)
        return None
    if kind is FaultKind.ROLLING_RESTART:
        if target == "all":
            return None
        unknown = [m for m in target.split(",") if m.strip() not in names]
        if unknown:
            return (
                f"a rolling restart targets 'all' or members separated by commas; "
                f"{', '.join(repr(u) for u in unknown)} are not members ({_names(names)})"
            )
        return None
    if kind is FaultKind.MEMBERSHIP:
        names = cluster.all_names
    if target in names or target in RUNTIME_TARGETS:
        return None
    return f"{target!r} is not a member ({_names(names)}), 'leader' or 'follower'"
