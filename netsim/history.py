"""The records of a netsim run: client requests and runner events, as JSON lines.

Two files describe what happened in a run (netsim/DESIGN.md): ``history.jsonl``, one
``Request`` per client request, written once its outcome is final, and
``events.jsonl``, one ``Event`` per thing the runner saw or did (faults, leader
changes, height samples, convergence). The checker and the report read nothing
else of the run's past, so the records check their own fields on construction: a
bad record is refused where it is made, not discovered when the run is judged.

Everything here is pure except ``HistoryWriter`` and the two ``read_*`` functions,
which do the file I/O. A line that does not parse, or parses into an invalid
record, raises ``HistoryError`` naming the file and the line number.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import IO, Any, Final, Self

__all__ = [
    "CRASH_FAULTS",
    "EVENT_KINDS",
    "Event",
    "HistoryError",
    "HistoryWriter",
    "InvalidRecord",
    "Outcome",
    "Request",
    "read_events",
    "read_history",
]

#: A transaction id: SHA-256 of its signed encoding, in lowercase hex.
_TX_ID: Final = re.compile(r"[0-9a-f]{64}")

#: Process faults after which a member's mempool is gone (its pending requests may be lost).
CRASH_FAULTS: Final = frozenset({"kill", "wipe", "restart"})  # restart: SIGKILL, then start


class InvalidRecord(ValueError):
    """A request or event has a missing, unknown or ill-typed field."""


class HistoryError(Exception):
    """A line of a history or events file is not a valid record."""

    def __init__(self, path: Path, line: int, detail: str) -> None:
        super().__init__(f"{path}:{line}: {detail}")
        self.path = path
        self.line = line
        self.detail = detail


class Outcome(StrEnum):
    """How a request ended, as the client saw it (netsim/DESIGN.md, history.jsonl)."""

    COMMITTED = "committed"
    PENDING = "pending"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


def _time(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecord(f"{name!r} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InvalidRecord(f"{name!r} must be finite and >= 0, not {value!r}")
    return float(value)


def _nat(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRecord(f"{name!r} must be an int >= 0, not {value!r}")
    return value


def _name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRecord(f"{name!r} must be a non-empty string, not {value!r}")
    return value


_REQUEST_KEYS: Final = (
    "id",
    "client",
    "member",
    "op",
    "sent",
    "done",
    "outcome",
    "height",
    "valid",
    "reason",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One client request and its final outcome.

    ``committed``: ``height`` (>= 1) and ``valid`` are set, and ``reason`` is set exactly
    when the transaction was judged invalid. ``rejected``: ``reason`` is the API's error
    code. ``pending`` and ``unknown``: no height or verdict; ``reason`` may say why
    (``commit_timeout``, ``timeout``...). Times are seconds since the run started.
    """

    id: str
    client: int
    member: str
    op: str
    sent: float
    done: float
    outcome: Outcome
    height: int | None = None
    valid: bool | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _TX_ID.fullmatch(self.id):
            raise InvalidRecord(f"'id' must be 64 lowercase hex digits, not {self.id!r}")
        _nat("client", self.client)
        _name("member", self.member)
        _name("op", self.op)
        object.__setattr__(self, "sent", _time("sent", self.sent))
        object.__setattr__(self, "done", _time("done", self.done))
        if self.done < self.sent:
            raise InvalidRecord(f"'done' ({self.done}) is before 'sent' ({self.sent})")
        try:
            object.__setattr__(self, "outcome", Outcome(self.outcome))
        except ValueError:
            raise InvalidRecord(
                f"'outcome' {self.outcome!r} is not one of {list(Outcome)}"
            ) from None
        if self.reason is not None and not isinstance(self.reason, str):
            raise InvalidRecord(f"'reason' must be a string or null, not {self.reason!r}")
        if self.outcome is Outcome.COMMITTED:
            if _nat("height", self.height) == 0:
                raise InvalidRecord("a committed request has a height >= 1 (0 is genesis)")
            if not isinstance(self.valid, bool):
                raise InvalidRecord(
                    f"a committed request has 'valid' true or false, not {self.valid!r}"
                )
            if self.valid == (self.reason is not None):
                raise InvalidRecord("a committed request has a 'reason' exactly when it is invalid")
            return
        if self.height is not None or self.valid is not None:
            raise InvalidRecord(f"a {self.outcome} request has no 'height' or 'valid'")
        if self.outcome is Outcome.REJECTED and not self.reason:
            raise InvalidRecord("a rejected request has the API's error code as 'reason'")

    @property
    def latency(self) -> float:
        """Seconds from sending the request to its final answer."""
        return self.done - self.sent

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client": self.client,
            "member": self.member,
            "op": self.op,
            "sent": self.sent,
            "done": self.done,
            "outcome": str(self.outcome),
            "height": self.height,
            "valid": self.valid,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Request:
        """The request of one history line; exactly the keys of ``to_json``."""
        if not isinstance(value, Mapping):
            raise InvalidRecord(f"a request is a JSON object, not {type(value).__name__}")
        missing = [k for k in _REQUEST_KEYS if k not in value]
        unknown = sorted(set(value) - set(_REQUEST_KEYS))
        if missing or unknown:
            raise InvalidRecord(f"request keys: missing {missing}, unknown {unknown}")
        return cls(**{k: value[k] for k in _REQUEST_KEYS})


#: The kinds of event and the fields (beyond ``t`` and ``kind``) each must have, with
#: their types. Other fields are kept as they are.
EVENT_KINDS: Final[Mapping[str, Mapping[str, type | tuple[type, ...]]]] = MappingProxyType(
    {
        "run.start": {"scenario": str, "members": list},
        "run.end": {},
        "fault.start": {"id": int, "fault": str, "target": (str, list)},
        "fault.end": {"id": int, "fault": str, "target": (str, list)},
        "leader": {"leader": str, "term": int},
        "sample": {"heights": dict},
        "converged": {"height": int},
        "not_converged": {},
    }
)


def _freeze_json(name: str, value: Mapping[str, Any]) -> Mapping[str, Any]:
    """A private copy of a JSON object, refusing what JSON cannot carry."""
    try:
        copy = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidRecord(f"{name} is not plain JSON: {exc}") from exc
    return MappingProxyType(copy)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something the runner saw or did at ``t`` seconds into the run.

    ``data`` holds the kind's own fields (``EVENT_KINDS``); a line of events.jsonl is
    ``{"t": ..., "kind": ..., **data}``.
    """

    t: float
    kind: str
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "t", _time("t", self.t))
        if self.kind not in EVENT_KINDS:
            raise InvalidRecord(f"event kind {self.kind!r} is not one of {sorted(EVENT_KINDS)}")
        if not isinstance(self.data, Mapping):
            raise InvalidRecord(f"event data must be a mapping, not {type(self.data).__name__}")
        if "t" in self.data or "kind" in self.data:
            raise InvalidRecord("event data cannot hold 't' or 'kind'")
        data = _freeze_json(f"{self.kind} event data", self.data)
        for key, kind in EVENT_KINDS[self.kind].items():
            value = data.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise InvalidRecord(
                    f"a {self.kind} event needs {key!r} of type {kind}, got {value!r}"
                )
        if self.kind in ("fault.start", "fault.end"):
            target = data["target"]
            if isinstance(target, list) and not all(isinstance(m, str) for m in target):
                raise InvalidRecord(f"a fault's target is a string or a list of names: {target!r}")
        if self.kind == "sample":
            for member, height in data["heights"].items():
                if height is not None and (
                    isinstance(height, bool) or not isinstance(height, int) or height < 0
                ):
                    raise InvalidRecord(f"sample height of {member!r} is {height!r}")
        object.__setattr__(self, "data", data)

    def targets(self, member: str) -> bool:
        """Whether a fault event's ``target`` is ``member`` or a list naming it, or its
        optional ``members`` (the members a target such as ``leader`` resolved to) names it."""
        target = self.data.get("target")
        resolved = self.data.get("members")
        return (
            target == member
            or (isinstance(target, list) and member in target)
            or (isinstance(resolved, list) and member in resolved)
        )

    def is_crash_of(self, member: str) -> bool:
        """Whether this is the start of a SIGKILL or a wipe of ``member``."""
        return (
            self.kind == "fault.start"
            and self.data.get("fault") in CRASH_FAULTS
            and self.targets(member)
        )

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, **self.data}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Event:
        """The event of one events line: ``t``, ``kind`` and the kind's fields."""
        if not isinstance(value, Mapping):
            raise InvalidRecord(f"an event is a JSON object, not {type(value).__name__}")
        if "t" not in value or "kind" not in value:
            raise InvalidRecord("an event has 't' and 'kind'")
        data = {k: v for k, v in value.items() if k not in ("t", "kind")}
        return cls(t=value["t"], kind=value["kind"], data=data)


class HistoryWriter:
    """Appends records to a JSON-lines file, one line each, flushed as written.

    A crash of the runner leaves every record written so far on disk, whole.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = path.open("a", encoding="utf-8")

    def write(self, record: Request | Event) -> None:
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        line = json.dumps(record.to_json(), allow_nan=False, separators=(", ", ": "))
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _read_lines(path: Path) -> list[tuple[int, Any]]:
    out = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                out.append((number, json.loads(line)))
            except ValueError as exc:
                raise HistoryError(path, number, f"not JSON: {exc}") from exc
    return out


def read_history(path: Path) -> list[Request]:
    """Every request of a history.jsonl, in file order (blank lines are skipped)."""
    out = []
    for number, value in _read_lines(path):
        try:
            out.append(Request.from_json(value))
        except InvalidRecord as exc:
            raise HistoryError(path, number, str(exc)) from exc
    return out


def read_events(path: Path) -> list[Event]:
    """Every event of an events.jsonl, in file order (blank lines are skipped)."""
    out = []
    for number, value in _read_lines(path):
        try:
            out.append(Event.from_json(value))
        except InvalidRecord as exc:
            raise HistoryError(path, number, str(exc)) from exc
    return out
