"""A scenario's fault schedule: the explicit ``[[faults]]`` and a seeded random plan.

``schedule(scenario)`` returns every fault of a run as a ``FaultEvent``, sorted by
start time and numbered from 1 (the ``id`` of its ``fault.start`` / ``fault.end``
events). ``timeline(events)`` splits them into the start and end actions the runner
executes in order.

The random plan (``[nemesis]``) draws from ``random.Random(seed)`` and nothing else,
so the same scenario always gives the same schedule; a failing soak is replayed by
running its file again. Member targets are drawn when planning; ``leader`` and
``follower`` are kept as words and resolved by the runner when the fault starts.

The plan never takes down a quorum by accident: a *disruptive* fault (a process
fault, a partition or a stall) is only drawn into a time when no other disruptive
fault, explicit or random, runs, with ``SETTLE_S`` to spare after it ends; a drawn
fault that would overlap one is left out. Latency, bandwidth and reset faults only
slow a cluster down and may overlap anything. An explicit membership change counts
as disruptive for ``MEMBERSHIP_BUSY_S`` from its start (the nemesis never draws one).
Explicit faults are kept as written: overlapping them is the scenario's own choice.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from netsim.scenario import (
    DISRUPTIVE_KINDS,
    DURATION_KINDS,
    LINK_KINDS,
    PROCESS_KINDS,
    ClusterConfig,
    Fault,
    FaultKind,
    NemesisConfig,
    Scenario,
)

__all__ = [
    "MEMBERSHIP_BUSY_S",
    "MIN_FAULT_S",
    "SETTLE_S",
    "Action",
    "FaultEvent",
    "Origin",
    "Phase",
    "random_plan",
    "schedule",
    "timeline",
]

#: Seconds a disruptive random fault keeps clear after another disruptive one ends
#: (a restarted member needs a moment to rejoin before the next one goes down).
SETTLE_S: Final = 2.0
#: A random fault shorter than this (cut by the end of its window) is left out.
MIN_FAULT_S: Final = 0.5
#: Seconds an explicit membership change keeps disruptive random faults away: the
#: admins' commands, the commit and (for an add) the new member's catch-up.
MEMBERSHIP_BUSY_S: Final = 20.0


class Origin(StrEnum):
    EXPLICIT = "explicit"
    NEMESIS = "nemesis"


class Phase(StrEnum):
    START = "start"
    END = "end"


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultEvent:
    """One fault of a run, numbered.

    ``end_s`` is when the runner ends it (heal, restart, resume): None for an instant
    fault, and for one that lasts to the end of the load window (``until_end``).
    """

    id: int
    fault: Fault
    origin: Origin
    end_s: float | None

    @property
    def at_s(self) -> float:
        return self.fault.at_s

    @property
    def kind(self) -> FaultKind:
        return self.fault.kind

    @property
    def target(self) -> str:
        return self.fault.target

    @property
    def instant(self) -> bool:
        return self.fault.kind not in DURATION_KINDS or (
            self.fault.kind is FaultKind.WIPE and self.fault.duration_s is None
        )

    @property
    def until_end(self) -> bool:
        """Whether it lasts until the load window ends (no end of its own)."""
        return not self.instant and self.end_s is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """Start or end ``event`` at ``t`` seconds into the run."""

    t: float
    phase: Phase
    event: FaultEvent


def schedule(scenario: Scenario) -> tuple[FaultEvent, ...]:
    """Every fault of ``scenario``, sorted by start time, ids from 1.

    Faults that start at or after the load window's end (``duration_s``, which
    ``netsim run --duration`` may shorten) are left out; one still running when the
    window ends lasts until then.
    """
    window = scenario.duration_s
    explicit = [f for f in scenario.faults if f.at_s < window]
    drawn: list[Fault] = []
    if scenario.nemesis is not None:
        busy = [_busy(f, window, scenario.nemesis.duration_s) for f in explicit]
        drawn = random_plan(
            scenario.nemesis,
            scenario.cluster,
            window,
            busy=[b for b in busy if b is not None],
        )
    tagged = [(f, Origin.EXPLICIT) for f in explicit] + [(f, Origin.NEMESIS) for f in drawn]
    tagged.sort(key=lambda fo: (fo[0].at_s, fo[1] is Origin.NEMESIS))
    out = []
    for number, (fault, origin) in enumerate(tagged, start=1):
        end = fault.end_s
        if end is not None and end >= window:
            end = None
        out.append(FaultEvent(id=number, fault=fault, origin=origin, end_s=end))
    return tuple(out)


def timeline(events: Iterable[FaultEvent]) -> tuple[Action, ...]:
    """The start and end actions of ``events`` in the order the runner takes them.

    At equal times, ends come before starts (a heal before the next partition), and
    otherwise the order of the ids. Faults lasting to the window's end, and instant
    ones, have no end action: the runner ends them itself.
    """
    actions = []
    for e in events:
        actions.append(Action(t=e.at_s, phase=Phase.START, event=e))
        if e.end_s is not None:
            actions.append(Action(t=e.end_s, phase=Phase.END, event=e))
    actions.sort(key=lambda a: (a.t, a.phase is Phase.START, a.event.id))
    return tuple(actions)


def random_plan(
    nemesis: NemesisConfig,
    cluster: ClusterConfig,
    window: float,
    *,
    busy: Sequence[tuple[float, float]] = (),
) -> list[Fault]:
    """The faults a seeded nemesis draws over ``[start_s, end_s)`` within ``window``.

    One draw per ``interval_s`` slot: a start in the first half of the slot, a kind,
    a length between half and all of ``duration_s``, and a target. ``busy`` are the
    windows of explicit disruptive faults; a disruptive draw that overlaps one of
    them, or an earlier disruptive draw, is left out.
    """
    rng = random.Random(nemesis.seed)
    end = window if nemesis.end_s is None else min(nemesis.end_s, window)
    windows = list(busy)
    out: list[Fault] = []
    slot = nemesis.start_s
    while slot < end:
        at = round(slot + rng.uniform(0.0, nemesis.interval_s / 2), 3)
        kind = rng.choice(nemesis.kinds)
        length = round(nemesis.duration_s * rng.uniform(0.5, 1.0), 3)
        target = _draw_target(rng, kind, nemesis, cluster)
        slot += nemesis.interval_s
        length = min(length, round(end - at, 3))
        if length < MIN_FAULT_S:
            continue
        if kind in DISRUPTIVE_KINDS:
            span = (at, at + length)
            if any(_overlap(span, w) for w in windows):
                continue
            windows.append(span)
        out.append(_fault(kind, at, target, length, nemesis))
    return out


def _fault(kind: FaultKind, at: float, target: str, length: float, n: NemesisConfig) -> Fault:
    fault = Fault(at_s=at, kind=kind, target=target)
    if kind in DURATION_KINDS:
        fault = replace(fault, duration_s=length)
    if kind is FaultKind.LATENCY:
        fault = replace(fault, ms=n.latency_ms, jitter_ms=n.jitter_ms)
    if kind is FaultKind.BANDWIDTH:
        fault = replace(fault, bytes_per_s=n.bytes_per_s)
    return fault


def _draw_target(
    rng: random.Random, kind: FaultKind, n: NemesisConfig, cluster: ClusterConfig
) -> str:
    names = list(cluster.names)
    if kind is FaultKind.PARTITION:
        return rng.choice(n.partitions)
    if kind in PROCESS_KINDS:
        return rng.choice([*names, "leader", "follower"])
    assert kind in LINK_KINDS
    shape = rng.choice(("member", "pair", "all") if kind is not FaultKind.STALL else ("member",))
    if shape == "all":
        return "all"
    if shape == "member" or len(names) < 2:
        return rng.choice([*names, "leader"])
    a, b = rng.sample(names, 2)
    return f"{a}<->{b}"


def _busy(fault: Fault, window: float, settle: float) -> tuple[float, float] | None:
    """The time an explicit fault keeps the random plan's disruptive faults away."""
    if fault.kind not in DISRUPTIVE_KINDS:
        return None
    if fault.kind is FaultKind.MEMBERSHIP:  # instant, but takes a while to go through
        return fault.at_s, min(fault.at_s + MEMBERSHIP_BUSY_S, window)
    if fault.duration_s is not None:
        return fault.at_s, min(fault.at_s + fault.duration_s, window)
    if fault.kind in DURATION_KINDS and fault.kind is not FaultKind.WIPE:
        return fault.at_s, window  # lasts to the end of the window
    return fault.at_s, fault.at_s + settle  # instant: give the member time to come back


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two windows come closer than SETTLE_S to each other."""
    return a[0] < b[1] + SETTLE_S and b[0] < a[1] + SETTLE_S
