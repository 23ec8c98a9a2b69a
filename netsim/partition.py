"""Partition specs, and the directed edges each one blocks.

A partition spec is the short text a user gives ``netsim partition SPEC`` or a
scenario file. ``parse_partition`` turns it into a frozen ``Partition``;
``blocked_edges`` resolves that against the cluster's members (in their given order)
into the set of directed edges ``(src, dst)`` whose bytes must not flow. The link
layer (``netsim.link``) blocks exactly those edges. Pure: no I/O, no clock.

Grammar (whitespace around names and separators is ignored)::

    halves               the members, in their given order, cut in two: the first
                         floor(n/2) in one group, the rest in the other (so with an
                         odd n the second group is the larger); needs 2 members
    isolate:NAME         NAME cut off from everyone; needs 2 members
    isolate-leader       like isolate, the member being the leader passed at resolve
                         time; needs 2 members
    bridge:NAME          the other members (in order) cut in halves as above, the
                         halves cannot talk to each other, NAME talks to both; needs 3
    ring                 each member talks only to its two neighbours in the given
                         order (i-1 and i+1 mod n); needs 4 (with 3 everyone is a
                         neighbour of everyone and nothing would be blocked)
    one-way:A->B         only bytes from A to B are blocked; B to A still flows
    a,b|c,d,e            explicit groups: members in different groups cannot talk;
                         at least two groups, every member named exactly once

Every shape except ``one-way`` is symmetric: if (a, b) is blocked so is (b, a).
Member names are letters, digits, ``_``, ``.`` and ``-`` (not starting with ``-``).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "Bridge",
    "Edge",
    "Groups",
    "Halves",
    "Isolate",
    "IsolateLeader",
    "OneWay",
    "Partition",
    "PartitionSpecError",
    "Ring",
    "blocked_edges",
    "parse_partition",
]

#: A directed edge (src, dst): bytes from src to dst.
Edge = tuple[str, str]

_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")

GRAMMAR = (
    "a partition spec is one of: 'halves', 'isolate:NAME', 'isolate-leader', "
    "'bridge:NAME', 'ring', 'one-way:A->B', or groups like 'm0,m1|m2,m3,m4' "
    "(every member named exactly once)"
)


class PartitionSpecError(ValueError):
    """A partition spec does not parse, or does not fit the cluster's members."""


def _check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise PartitionSpecError(
            f"{what} {name!r} is not a member name (letters, digits, '_', '.', '-'); {GRAMMAR}"
        )
    return name


class Partition(abc.ABC):
    """A parsed partition spec; ``blocked_edges`` resolves it against members."""

    __slots__ = ()

    @abc.abstractmethod
    def spec(self) -> str:
        """The canonical spec text; ``parse_partition(p.spec()) == p``."""

    def describe(self, members: Sequence[str] | None = None, *, leader: str | None = None) -> str:
        """Short text for reports.

        Without members: the spec itself. With members: the concrete cut, groups
        separated by `` | `` (e.g. ``m0,m1 | m2,m3,m4``).
        """
        if members is None:
            return self.spec()
        names = _check_members(members)
        return self._describe(names, leader)

    @abc.abstractmethod
    def _describe(self, members: tuple[str, ...], leader: str | None) -> str: ...

    @abc.abstractmethod
    def _blocked(self, members: tuple[str, ...], leader: str | None) -> frozenset[Edge]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Halves(Partition):
    """``halves``: first floor(n/2) members against the rest."""

    def spec(self) -> str:
        return "halves"

    def _groups(self, members: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        _need(members, 2, "halves")
        return _split_halves(members)

    def _describe(self, members: tuple[str, ...], leader: str | None) -> str:
        return _describe_groups(self._groups(members))

    def _blocked(self, members: tuple[str, ...], leader: str | None) -> frozenset[Edge]:
        return _between(self._groups(members))


@dataclass(frozen=True, slots=True, kw_only=True)
class Isolate(Partition):
    """``isolate:NAME``: NAME against everyone else."""

    name: str

    def __post_init__(self) -> None:
        _check_name(self.name, "isolate: member")

    def spec(self) -> str:
        return f"isolate:{self.name}"

    def _groups(self, members: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        _need(members, 2, self.spec())
        _known(self.name, members)
        return (self.name,), tuple(m for m in members if m != self.name)

    def _describe(self, members: tuple[str, ...], leader: str | None) -> str:
        return _describe_groups(self._groups(members))

    def _blocked(self, members: tuple[str, ...], leader: str | None) -> frozenset[Edge]:
        return _between(self._groups(members))


@dataclass(frozen=True, slots=True, kw_only=True)
class IsolateLeader(Partition):
    """``isolate-leader``: the leader given at resolve time against everyone else."""

    def spec(self) -> str:
        return "isolate-leader"

    def _resolve(self, leader: str | None) -> Isolate:
        if leader is None:
            raise PartitionSpecError(
                "'isolate-leader' needs the current leader, and none was given "
                "(is there a leader yet?)"
            )
        return Isolate(name=leader)

    def _describe(self, members: tuple[str, ...], leader: str | None) -> str:
        return self._resolve(leader)._describe(members, None)

    def _blocked(self, members: tuple[str, ...], leader: str | None) -> frozenset[Edge]:
        return self._resolve(leader)._blocked(members, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bridge(Partition):
    """``bridge:NAME``: the others in two halves that cannot talk; NAME talks to both."""

    name: str

    def __post_init__(self) -> None:
        _check_name(self.name, "bridge: member")

    def spec(self) -> str:
        return f"bridge:{self.name}"

    def _groups(self, members: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        _need(members, 3, self.spec())
        _known(self.name, members)
        return _split_halves(tuple(m for m in members if m != self.name))

    def _describe(self, members: tuple[str, ...], leader: str | None) -> str:
        return f"{_describe_groups(self._groups(members))} (bridge {self.name})"

    def _blocked(self, members: tuple[str, ...], leader: str | None) -> frozenset[Edge]:
        return _between(self._groups(members))


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring(Partition):
    """``ring``: each member talks only to its neighbours i-1 and i+1 (mod n)."""

    def spec(self) -> str:
        return "ring"

    def _describe(self, members: tuple[str, ...], leader: str | None) -> str:
        _need(members, 4, "ring")
        return "ring " + "-".join((*members, members[0]))

    def _blocked(self, members: tuple[str, ...], leader: str | None) -> frozenset[Edge]:
        _need(members, 4, "ring")
        n = len(members)
        edges: set[Edge] = set()
        for i, src in enumerate(members):
            for j, dst in enumerate(members):
                if i != j and (j - i) % n not in (1, n - 1):
                    edges.add((src, dst))
        return frozenset(edges)


@dataclass(frozen=True, slots=True, kw_only=True)
class OneWay(Partition):
    """``one-way:A->B``: bytes from A to B are blocked; B to A flows."""

    src: str
    dst: str

    def __post_init__(self) -> None:
        _check_name(self.src, "one-way: source")
        _check_name(self.dst, "one-way: destination")
        if self.src == self.dst:
            raise PartitionSpecError(
                f"'one-way:{self.src}->{self.dst}' names the same member twice; "
                "it needs two different members, as in 'one-way:m0->m1'"
            )

    def spec(self) -> str:
        return f"one-way:{self.src}->{self.dst}"

    def _describe(self, members: tuple[str, ...], leader: str | None) -> str:
        self._blocked(members, leader)
        return f"{self.src} -/-> {self.dst}"

    def _blocked(self, members: tuple[str, ...], leader: str | None) -> frozenset[Edge]:
        _known(self.src, members)
        _known(self.dst, members)
        return frozenset({(self.src, self.dst)})


@dataclass(frozen=True, slots=True, kw_only=True)
class Groups(Partition):
    """``a,b|c,d,e``: members in different groups cannot talk."""

    groups: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if len(self.groups) < 2:
            raise PartitionSpecError(
                f"a group spec needs at least two groups separated by '|'; {GRAMMAR}"
            )
        seen: set[str] = set()
        for group in self.groups:
            if not group:
                raise PartitionSpecError(
                    f"group spec {self.spec()!r} has an empty group; {GRAMMAR}"
                )
            for name in group:
                _check_name(name, "group member")
                if name in seen:
                    raise PartitionSpecError(
                        f"group spec names {name!r} more than once; "
                        "every member must be in exactly one group"
                    )
                seen.add(name)

    def spec(self) -> str:
        return _describe_groups(self.groups)

    def _checked(self, members: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        for group in self.groups:
            for name in group:
                _known(name, members)
        named = {name for group in self.groups for name in group}
        missing = [m for m in members if m not in named]
        if missing:
            raise PartitionSpecError(
                f"group spec {self.spec()!r} does not name {', '.join(missing)}; "
                "every member must be in exactly one group"
            )
        return self.groups

    def _describe(self, members: tuple[str, ...], leader: str | None) -> str:
        return _describe_groups(self._checked(members))

    def _blocked(self, members: tuple[str, ...], leader: str | None) -> frozenset[Edge]:
        return _between(self._checked(members))


def parse_partition(spec: str) -> Partition:
    """Parse a partition spec (grammar in the module docstring)."""
    text = spec.strip()
    if not text:
        raise PartitionSpecError(f"the partition spec is empty; {GRAMMAR}")
    if "|" in text:
        groups = tuple(
            tuple(name.strip() for name in part.split(",")) if part.strip() else ()
            for part in text.split("|")
        )
        for group in groups:
            if any(not name for name in group):
                raise PartitionSpecError(
                    f"group spec {spec!r} has an empty name (a stray ','); {GRAMMAR}"
                )
        return Groups(groups=groups)
    kind, sep, arg = text.partition(":")
    kind, arg = kind.strip(), arg.strip()
    if not sep:
        if text == "halves":
            return Halves()
        if text == "ring":
            return Ring()
        if text == "isolate-leader":
            return IsolateLeader()
        if text in ("isolate", "bridge", "one-way"):
            raise PartitionSpecError(f"{text!r} needs an argument; {GRAMMAR}")
        raise PartitionSpecError(f"unknown partition spec {spec!r}; {GRAMMAR}")
    if kind == "isolate":
        return Isolate(name=arg)
    if kind == "bridge":
        return Bridge(name=arg)
    if kind == "one-way":
        src, arrow, dst = arg.partition("->")
        if not arrow:
            raise PartitionSpecError(
                f"{spec!r}: one-way needs 'A->B', as in 'one-way:m0->m1'; {GRAMMAR}"
            )
        return OneWay(src=src.strip(), dst=dst.strip())
    raise PartitionSpecError(f"unknown partition spec {spec!r}; {GRAMMAR}")


def blocked_edges(
    p: Partition, members: Sequence[str], *, leader: str | None = None
) -> frozenset[Edge]:
    """The directed edges (src, dst) whose bytes must not flow under ``p``.

    ``members`` is the cluster in its given order (``halves``, ``bridge`` and ``ring``
    depend on it). ``leader`` is needed by ``isolate-leader`` only. Raises
    PartitionSpecError for duplicate members, names that are not members, and too
    few members for the shape.
    """
    return p._blocked(_check_members(members), leader)


def _check_members(members: Sequence[str]) -> tuple[str, ...]:
    if isinstance(members, str):
        raise PartitionSpecError("members must be a sequence of names, not one string")
    names = tuple(members)
    seen: set[str] = set()
    for name in names:
        if not name:
            raise PartitionSpecError("the member list contains an empty name")
        if name in seen:
            raise PartitionSpecError(f"the member list names {name!r} more than once")
        seen.add(name)
    return names


def _need(members: tuple[str, ...], count: int, shape: str) -> None:
    if len(members) < count:
        raise PartitionSpecError(
            f"{shape!r} needs at least {count} members, the cluster has {len(members)}"
        )


def _known(name: str, members: tuple[str, ...]) -> None:
    if name not in members:
        raise PartitionSpecError(
            f"{name!r} is not a member of this cluster (members: {', '.join(members)})"
        )


def _split_halves(members: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    cut = len(members) // 2
    return members[:cut], members[cut:]


def _between(groups: Iterable[Sequence[str]]) -> frozenset[Edge]:
    listed = [tuple(g) for g in groups]
    return frozenset(
        (src, dst)
        for i, left in enumerate(listed)
        for j, right in enumerate(listed)
        if i != j
        for src in left
        for dst in right
    )


def _describe_groups(groups: Iterable[Sequence[str]]) -> str:
    return " | ".join(",".join(group) for group in groups)
