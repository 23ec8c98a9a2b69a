"""Cluster configurations and single-server membership changes.

A configuration (``ConfState``) names the voters, which elect leaders and form
quorums, and the learners (observer members), which receive every entry but never
vote and never count towards a quorum. Node ids are ``str``: the member names of
``network.toml``, so logs and metrics read naturally and no id table is needed.

Membership changes use **single-server changes** (Raft thesis, section 4.1), not
joint consensus. Each committed change adds or removes at most one voter, so any
majority of the old voters and any majority of the new voters overlap, and no two
leaders can be elected in one term across the change. We chose this over joint
consensus because the consortium changes membership rarely and one member at a
time (an institution joins, leaves, or is promoted from observer to voter), and
because it needs one configuration entry per change instead of two, with no
intermediate state the daemon has to understand.

A configuration takes effect on a server as soon as its entry is *appended* to that
server's log (thesis section 4.1), and is undone if that entry is truncated. That
is why the core keeps a ``ConfHistory`` of the configuration entries above its
snapshot. Two rules make this safe, and the leader enforces both: a change is
refused while an earlier one is uncommitted, and a new leader accepts no change
until it has committed an entry of its own term (the fix Ongaro posted to raft-dev
in 2015 for the single-server-change bug across leader changes).

A change is carried in an entry of kind ``CONF_CHANGE`` whose data is the
deterministic CBOR of ``ConfChange``; its ``context`` bytes are opaque to the core
(the daemon puts the signed membership update there).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from p2pledger import codec
from p2pledger.errors import CodecError
from p2pledger.raft.errors import BadMessage, InvalidConfChange

__all__ = ["ConfChange", "ConfChangeOp", "ConfHistory", "ConfState", "check_node_id"]

MAX_NODE_ID_LEN = 255


def check_node_id(name: str, value: object) -> str:
    """Return ``value`` if it is a valid node id (a non-empty str), else raise BadMessage."""
    if type(value) is not str or not value or len(value) > MAX_NODE_ID_LEN:
        raise BadMessage(f"{name} must be a non-empty node name, got {value!r}")
    return value


def _ids(name: str, value: object) -> frozenset[str]:
    if not isinstance(value, list | tuple | frozenset | set):
        raise BadMessage(f"{name} must be a list of node names")
    return frozenset(check_node_id(name, v) for v in value)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ConfState:
    """The members of the cluster: who votes and who only learns."""

    voters: frozenset[str] = field(default_factory=frozenset)
    learners: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "voters", _ids("voters", self.voters))
        object.__setattr__(self, "learners", _ids("learners", self.learners))
        both = self.voters & self.learners
        if both:
            raise BadMessage(f"{sorted(both)} cannot be both voter and learner")

    @property
    def members(self) -> frozenset[str]:
        return self.voters | self.learners

    def to_value(self) -> dict[str, Any]:
        return {"voters": sorted(self.voters), "learners": sorted(self.learners)}

    @classmethod
    def from_value(cls, value: Any) -> ConfState:
        if not isinstance(value, dict) or set(value) != {"voters", "learners"}:
            raise BadMessage("a configuration is a map of voters and learners")
        voters, learners = value["voters"], value["learners"]
        if not isinstance(voters, list) or not isinstance(learners, list):
            raise BadMessage("voters and learners must be lists")
        if voters != sorted(set(voters)) or learners != sorted(set(learners)):
            raise BadMessage("voters and learners must be sorted and distinct")
        return cls(voters=frozenset(voters), learners=frozenset(learners))

    def __str__(self) -> str:
        learners = f" learners={','.join(sorted(self.learners))}" if self.learners else ""
        return f"voters={','.join(sorted(self.voters))}{learners}"

    def __repr__(self) -> str:  # sorted, so logs do not depend on the hash seed
        return f"ConfState(voters={sorted(self.voters)}, learners={sorted(self.learners)})"


class ConfChangeOp(enum.IntEnum):
    """What a membership change does to one node."""

    ADD_VOTER = 0  # add a new voter, or promote a learner
    ADD_LEARNER = 1  # add a new learner, or demote a voter
    REMOVE = 2  # remove a voter or a learner


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfChange:
    """One single-server membership change; ``context`` is opaque to the core."""

    op: ConfChangeOp
    node: str
    context: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.op, ConfChangeOp):
            raise BadMessage(f"unknown membership change op {self.op!r}")
        check_node_id("node", self.node)
        if type(self.context) is not bytes:
            raise BadMessage("membership change context must be bytes")

    def to_value(self) -> dict[str, Any]:
        return {"op": int(self.op), "node": self.node, "context": self.context}

    @classmethod
    def from_value(cls, value: Any) -> ConfChange:
        if not isinstance(value, dict) or set(value) != {"op", "node", "context"}:
            raise BadMessage("a membership change is a map of op, node and context")
        op = value["op"]
        if type(op) is not int or op not in ConfChangeOp._value2member_map_:
            raise BadMessage(f"unknown membership change op {op!r}")
        return cls(op=ConfChangeOp(op), node=value["node"], context=value["context"])

    def encode(self) -> bytes:
        """The entry data for this change: its deterministic CBOR."""
        return codec.encode(self.to_value())

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        try:
            value = codec.decode(data)
        except CodecError as exc:
            raise BadMessage(f"membership change entry is not valid CBOR: {exc}") from exc
        return cls.from_value(value)

    def apply(self, conf: ConfState) -> ConfState:
        """The configuration after this change. Total and lenient: every server computes
        the same result from the same log, whatever the change (the leader has already
        refused nonsensical changes with ``check``)."""
        voters, learners = set(conf.voters), set(conf.learners)
        voters.discard(self.node)
        learners.discard(self.node)
        if self.op is ConfChangeOp.ADD_VOTER:
            voters.add(self.node)
        elif self.op is ConfChangeOp.ADD_LEARNER:
            learners.add(self.node)
        return ConfState(voters=frozenset(voters), learners=frozenset(learners))

    def check(self, conf: ConfState) -> ConfState:
        """The configuration after this change; raise InvalidConfChange if it is a no-op
        or leaves no voter."""
        if self.op is ConfChangeOp.ADD_VOTER and self.node in conf.voters:
            raise InvalidConfChange(f"{self.node} is already a voter")
        if self.op is ConfChangeOp.ADD_LEARNER and self.node in conf.learners:
            raise InvalidConfChange(f"{self.node} is already a learner")
        if self.op is ConfChangeOp.REMOVE and self.node not in conf.members:
            raise InvalidConfChange(f"{self.node} is not a member")
        after = self.apply(conf)
        if not after.voters:
            raise InvalidConfChange("a configuration needs at least one voter")
        return after


class ConfHistory:
    """The configurations in force at each configuration entry above the snapshot.

    ``current`` is the latest one (in force now, committed or not); ``truncate_from``
    undoes configurations whose entries a new leader overwrote.
    """

    __slots__ = ("_items",)

    def __init__(self, index: int, conf: ConfState) -> None:
        self._items: list[tuple[int, ConfState]] = [(index, conf)]

    @property
    def current(self) -> ConfState:
        return self._items[-1][1]

    @property
    def index(self) -> int:
        """The index of the entry that set the current configuration."""
        return self._items[-1][0]

    def at(self, index: int) -> ConfState:
        """The configuration in force once the log up to ``index`` is applied."""
        for at, conf in reversed(self._items):
            if at <= index:
                return conf
        return self._items[0][1]

    def append(self, index: int, conf: ConfState) -> None:
        self._items.append((index, conf))

    def truncate_from(self, index: int) -> bool:
        """Drop configurations set at ``index`` or later; True if the current one changed."""
        keep = [item for item in self._items if item[0] < index]
        if len(keep) == len(self._items):
            return False
        self._items = keep or self._items[:1]
        return True

    def reset(self, index: int, conf: ConfState) -> None:
        self._items = [(index, conf)]
