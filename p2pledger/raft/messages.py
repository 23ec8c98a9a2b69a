"""What the Raft core stores and what it sends: entries, hard state, snapshot
metadata, and the messages between members.

Every record is a frozen, slotted, keyword-only dataclass that validates on
construction, so a core never sees a message that breaks an invariant (an append
whose entries are not contiguous, a term that goes backwards). Each has a value
form (``to_value``/``from_value``) in p2pledger's CBOR data model (ints, bytes, str,
lists, str-keyed maps): the transport carries ``codec.encode(m.to_value())`` and a
store keeps ``HardState``, ``Entry`` and ``SnapshotMeta`` the same way.
``from_value`` raises ``BadMessage`` (a ``SchemaError``) for anything malformed.

Node ids are member names (``str``); see ``p2pledger.raft.conf``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeAlias

from p2pledger.raft.conf import ConfChange, ConfState, check_node_id
from p2pledger.raft.errors import BadMessage

__all__ = [
    "ENTRY_OVERHEAD",
    "AppendRequest",
    "AppendResponse",
    "Entry",
    "EntryKind",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "Message",
    "SnapshotMeta",
    "SnapshotRequest",
    "TimeoutNow",
    "VoteRequest",
    "VoteResponse",
    "message_from_value",
]

MAX_U63: Final = 2**63 - 1
#: Bytes counted per entry on top of its data when bounding messages and batches.
ENTRY_OVERHEAD: Final = 16


def _uint(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_U63:
        raise BadMessage(f"{name} must be an integer in [0, 2**63), got {value!r}")
    return value


def _bool(name: str, value: object) -> bool:
    if type(value) is not bool:
        raise BadMessage(f"{name} must be a boolean, got {value!r}")
    return value


def _map(value: Any, keys: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.keys() != keys:
        raise BadMessage(f"{what} must be a map with keys {sorted(keys)}")
    return value


class EntryKind(enum.IntEnum):
    """What an entry carries. The core reads only ``CONF_CHANGE`` data."""

    NORMAL = 0  # opaque application data (the daemon puts a whole block here)
    CONF_CHANGE = 1  # a ConfChange, encoded with ConfChange.encode()
    NOOP = 2  # the empty entry a new leader appends at the start of its term


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One log entry. ``data`` is opaque bytes except for ``CONF_CHANGE`` entries."""

    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""

    def __post_init__(self) -> None:
        if type(self.term) is not int or not 1 <= self.term <= MAX_U63:
            raise BadMessage(f"entry term must be a positive integer, got {self.term!r}")
        if type(self.index) is not int or not 1 <= self.index <= MAX_U63:
            raise BadMessage(f"entry index must be a positive integer, got {self.index!r}")
        if not isinstance(self.kind, EntryKind):
            raise BadMessage(f"unknown entry kind {self.kind!r}")
        if type(self.data) is not bytes:
            raise BadMessage("entry data must be bytes")
        if self.kind is EntryKind.NOOP and self.data:
            raise BadMessage("a no-op entry carries no data")
        if self.kind is EntryKind.CONF_CHANGE:
            ConfChange.decode(self.data)

    @property
    def size(self) -> int:
        """The bytes this entry counts for in message and batch limits."""
        return len(self.data) + ENTRY_OVERHEAD

    def conf_change(self) -> ConfChange:
        """The membership change this entry carries (only for ``CONF_CHANGE``)."""
        if self.kind is not EntryKind.CONF_CHANGE:
            raise BadMessage(f"entry {self.index} is not a membership change")
        return ConfChange.decode(self.data)

    def to_value(self) -> list[Any]:
        return [self.term, self.index, int(self.kind), self.data]

    @classmethod
    def from_value(cls, value: Any) -> Entry:
        if not isinstance(value, list) or len(value) != 4:
            raise BadMessage("an entry is a list [term, index, kind, data]")
        term, index, kind, data = value
        if type(kind) is not int or kind not in EntryKind._value2member_map_:
            raise BadMessage(f"unknown entry kind {kind!r}")
        return cls(term=term, index=index, kind=EntryKind(kind), data=data)

    def __str__(self) -> str:
        return f"{self.term}/{self.index} {self.kind.name} {len(self.data)}B"


@dataclass(frozen=True, slots=True, kw_only=True)
class HardState:
    """What must be durable before any message that depends on it is sent."""

    term: int = 0
    vote: str | None = None
    commit: int = 0

    def __post_init__(self) -> None:
        _uint("term", self.term)
        _uint("commit", self.commit)
        if self.vote is not None:
            check_node_id("vote", self.vote)

    def to_value(self) -> dict[str, Any]:
        return {"term": self.term, "vote": self.vote, "commit": self.commit}

    @classmethod
    def from_value(cls, value: Any) -> HardState:
        v = _map(value, frozenset({"term", "vote", "commit"}), "hard state")
        return cls(term=v["term"], vote=v["vote"], commit=v["commit"])


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotMeta:
    """A point of the log that the state machine can be brought to without entries:
    everything up to ``index`` (whose entry has ``term``), with configuration ``conf``.

    The ledger is the snapshot: a member brought to ``index`` by block catch-up has
    the state a snapshot would have given it.
    """

    index: int = 0
    term: int = 0
    conf: ConfState = field(default_factory=ConfState)

    def __post_init__(self) -> None:
        _uint("snapshot index", self.index)
        _uint("snapshot term", self.term)
        if not isinstance(self.conf, ConfState):
            raise BadMessage("snapshot configuration must be a ConfState")
        if (self.index == 0) != (self.term == 0):
            raise BadMessage("snapshot index and term are both zero or both positive")

    def to_value(self) -> dict[str, Any]:
        return {"index": self.index, "term": self.term, "conf": self.conf.to_value()}

    @classmethod
    def from_value(cls, value: Any) -> SnapshotMeta:
        v = _map(value, frozenset({"index", "term", "conf"}), "snapshot metadata")
        return cls(index=v["index"], term=v["term"], conf=ConfState.from_value(v["conf"]))


def _check_header(m: Any) -> None:
    _uint("term", m.term)
    check_node_id("sender", m.sender)
    check_node_id("recipient", m.recipient)
    if m.sender == m.recipient:
        raise BadMessage("a message's sender and recipient differ")


_HEADER: Final = frozenset({"type", "term", "from", "to"})


def _header(m: Any, kind: str) -> dict[str, Any]:
    return {"type": kind, "term": m.term, "from": m.sender, "to": m.recipient}


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteRequest:
    """RequestVote, or a PreVote probe (``pre_vote``) that changes no one's term.

    ``term`` is the term the candidate would have (its own term plus one for a
    PreVote). ``transfer`` marks an election started by a leadership transfer, which
    voters honour even while they still hear from the current leader.
    """

    TYPE: ClassVar[str] = "vote"
    term: int
    sender: str
    recipient: str
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False

    def __post_init__(self) -> None:
        _check_header(self)
        _uint("last_index", self.last_index)
        _uint("last_term", self.last_term)
        _bool("pre_vote", self.pre_vote)
        _bool("transfer", self.transfer)
        if self.last_term > self.term:
            raise BadMessage("a candidate's last log term cannot exceed its term")

    def to_value(self) -> dict[str, Any]:
        return _header(self, self.TYPE) | {
            "last_index": self.last_index,
            "last_term": self.last_term,
            "pre_vote": self.pre_vote,
            "transfer": self.transfer,
        }

    @classmethod
    def from_value(cls, value: Any) -> VoteRequest:
        v = _map(value, _HEADER | {"last_index", "last_term", "pre_vote", "transfer"}, "vote")
        return cls(
            term=v["term"],
            sender=v["from"],
            recipient=v["to"],
            last_index=v["last_index"],
            last_term=v["last_term"],
            pre_vote=v["pre_vote"],
            transfer=v["transfer"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteResponse:
    """A vote (or PreVote) granted or refused. A refusal carries the voter's term."""

    TYPE: ClassVar[str] = "vote_resp"
    term: int
    sender: str
    recipient: str
    granted: bool
    pre_vote: bool = False

    def __post_init__(self) -> None:
        _check_header(self)
        _bool("granted", self.granted)
        _bool("pre_vote", self.pre_vote)

    def to_value(self) -> dict[str, Any]:
        return _header(self, self.TYPE) | {"granted": self.granted, "pre_vote": self.pre_vote}

    @classmethod
    def from_value(cls, value: Any) -> VoteResponse:
        v = _map(value, _HEADER | {"granted", "pre_vote"}, "vote response")
        return cls(
            term=v["term"],
            sender=v["from"],
            recipient=v["to"],
            granted=v["granted"],
            pre_vote=v["pre_vote"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendRequest:
    """AppendEntries: ``entries`` follow the entry at ``prev_index`` with ``prev_term``."""

    TYPE: ClassVar[str] = "app"
    term: int
    sender: str
    recipient: str
    prev_index: int
    prev_term: int
    commit: int
    entries: tuple[Entry, ...] = ()

    def __post_init__(self) -> None:
        _check_header(self)
        _uint("prev_index", self.prev_index)
        _uint("prev_term", self.prev_term)
        _uint("commit", self.commit)
        if type(self.entries) is not tuple:
            raise BadMessage("entries must be a tuple")
        if self.prev_term > self.term:
            raise BadMessage("prev_term cannot exceed the leader's term")
        index, term = self.prev_index, self.prev_term
        for e in self.entries:
            if not isinstance(e, Entry):
                raise BadMessage("entries must be Entry records")
            if e.index != index + 1 or not term <= e.term <= self.term:
                raise BadMessage("entries must be contiguous with non-decreasing terms")
            index, term = e.index, e.term

    def to_value(self) -> dict[str, Any]:
        return _header(self, self.TYPE) | {
            "prev_index": self.prev_index,
            "prev_term": self.prev_term,
            "commit": self.commit,
            "entries": [e.to_value() for e in self.entries],
        }

    @classmethod
    def from_value(cls, value: Any) -> AppendRequest:
        v = _map(value, _HEADER | {"prev_index", "prev_term", "commit", "entries"}, "append")
        if not isinstance(v["entries"], list):
            raise BadMessage("entries must be a list")
        return cls(
            term=v["term"],
            sender=v["from"],
            recipient=v["to"],
            prev_index=v["prev_index"],
            prev_term=v["prev_term"],
            commit=v["commit"],
            entries=tuple(Entry.from_value(e) for e in v["entries"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResponse:
    """The answer to an append (or to a snapshot once restored).

    On success ``index`` is the follower's last index known to match the leader. On
    rejection ``index`` is the rejected ``prev_index`` and (``hint_index``,
    ``hint_term``) is the follower's best guess of where the logs may agree: the
    largest index at or below the rejected one whose term is at most ``prev_term``.
    The leader skips a whole term of mismatching entries per round trip.
    """

    TYPE: ClassVar[str] = "app_resp"
    term: int
    sender: str
    recipient: str
    index: int
    reject: bool = False
    hint_index: int = 0
    hint_term: int = 0

    def __post_init__(self) -> None:
        _check_header(self)
        _uint("index", self.index)
        _bool("reject", self.reject)
        _uint("hint_index", self.hint_index)
        _uint("hint_term", self.hint_term)

    def to_value(self) -> dict[str, Any]:
        return _header(self, self.TYPE) | {
            "index": self.index,
            "reject": self.reject,
            "hint_index": self.hint_index,
            "hint_term": self.hint_term,
        }

    @classmethod
    def from_value(cls, value: Any) -> AppendResponse:
        keys = _HEADER | {"index", "reject", "hint_index", "hint_term"}
        v = _map(value, keys, "append response")
        return cls(
            term=v["term"],
            sender=v["from"],
            recipient=v["to"],
            index=v["index"],
            reject=v["reject"],
            hint_index=v["hint_index"],
            hint_term=v["hint_term"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """The leader is alive; ``commit`` is at most what this follower is known to hold."""

    TYPE: ClassVar[str] = "hb"
    term: int
    sender: str
    recipient: str
    commit: int

    def __post_init__(self) -> None:
        _check_header(self)
        _uint("commit", self.commit)

    def to_value(self) -> dict[str, Any]:
        return _header(self, self.TYPE) | {"commit": self.commit}

    @classmethod
    def from_value(cls, value: Any) -> Heartbeat:
        v = _map(value, _HEADER | {"commit"}, "heartbeat")
        return cls(term=v["term"], sender=v["from"], recipient=v["to"], commit=v["commit"])


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatResponse:
    """A follower heard the heartbeat (CheckQuorum counts these)."""

    TYPE: ClassVar[str] = "hb_resp"
    term: int
    sender: str
    recipient: str

    def __post_init__(self) -> None:
        _check_header(self)

    def to_value(self) -> dict[str, Any]:
        return _header(self, self.TYPE)

    @classmethod
    def from_value(cls, value: Any) -> HeartbeatResponse:
        v = _map(value, _HEADER, "heartbeat response")
        return cls(term=v["term"], sender=v["from"], recipient=v["to"])


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow:
    """Leadership transfer: the leader tells a caught-up voter to campaign at once."""

    TYPE: ClassVar[str] = "timeout_now"
    term: int
    sender: str
    recipient: str

    def __post_init__(self) -> None:
        _check_header(self)

    def to_value(self) -> dict[str, Any]:
        return _header(self, self.TYPE)

    @classmethod
    def from_value(cls, value: Any) -> TimeoutNow:
        v = _map(value, _HEADER, "timeout-now")
        return cls(term=v["term"], sender=v["from"], recipient=v["to"])


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotRequest:
    """The leader no longer has the entries this follower needs: the follower must
    bring its state machine to ``snapshot`` (by block catch-up from the ledger) and
    then call ``RawNode.restore``; see ``Ready.catch_up``."""

    TYPE: ClassVar[str] = "snap"
    term: int
    sender: str
    recipient: str
    snapshot: SnapshotMeta

    def __post_init__(self) -> None:
        _check_header(self)
        if not isinstance(self.snapshot, SnapshotMeta):
            raise BadMessage("snapshot must be SnapshotMeta")
        if self.snapshot.term > self.term:
            raise BadMessage("snapshot term cannot exceed the leader's term")

    def to_value(self) -> dict[str, Any]:
        return _header(self, self.TYPE) | {"snapshot": self.snapshot.to_value()}

    @classmethod
    def from_value(cls, value: Any) -> SnapshotRequest:
        v = _map(value, _HEADER | {"snapshot"}, "snapshot request")
        return cls(
            term=v["term"],
            sender=v["from"],
            recipient=v["to"],
            snapshot=SnapshotMeta.from_value(v["snapshot"]),
        )


Message: TypeAlias = (
    VoteRequest
    | VoteResponse
    | AppendRequest
    | AppendResponse
    | Heartbeat
    | HeartbeatResponse
    | TimeoutNow
    | SnapshotRequest
)

_BY_TYPE: Final[dict[str, Any]] = {
    cls.TYPE: cls
    for cls in (
        VoteRequest,
        VoteResponse,
        AppendRequest,
        AppendResponse,
        Heartbeat,
        HeartbeatResponse,
        TimeoutNow,
        SnapshotRequest,
    )
}


def message_from_value(value: Any) -> Message:
    """Rebuild a message from its value form; raise BadMessage if it is malformed."""
    if not isinstance(value, dict):
        raise BadMessage("a message is a map")
    cls = _BY_TYPE.get(value.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise BadMessage(f"unknown message type {value.get('type')!r}")
    message: Message = cls.from_value(value)
    return message
