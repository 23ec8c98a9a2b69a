"""The settings of one Raft core, validated on construction.

Time is counted in ticks (the driver calls ``tick()`` at a fixed interval, e.g. every
100 ms); randomness and logging are injected so that a core is a deterministic
function of its inputs, which is what makes seeded simulation and replay possible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from p2pledger.raft.errors import RaftConfigError
from p2pledger.raft.storage import Storage

__all__ = ["Config", "RaftLogger"]


class RaftLogger(Protocol):
    """Receives the core's notable events (elections, role and membership changes) as
    an event name with key=value fields; structlog's ``BoundLogger.info`` fits."""

    def __call__(self, event: str, /, **fields: object) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """How one member's core behaves. ``rng`` supplies election-timeout jitter: pass a
    ``random.Random`` seeded per member (tests pin the seed)."""

    id: str
    storage: Storage
    rng: random.Random
    #: Ticks without hearing from a leader before a voter campaigns; the actual
    #: timeout is drawn uniformly from [election_tick, 2 * election_tick).
    election_tick: int = 10
    #: Ticks between a leader's heartbeats.
    heartbeat_tick: int = 1
    #: The last index the state machine has applied (on restart: the ledger's).
    applied: int = 0
    #: Probe with a PreVote round before bumping the term (no disruptive rejoins).
    pre_vote: bool = True
    #: A leader that has not heard from a quorum for an election timeout steps down,
    #: and voters ignore campaigns while they hear from a leader (the "lease").
    check_quorum: bool = True
    #: Entry bytes per append message (at least one entry is always sent).
    max_msg_bytes: int = 1 << 20
    #: Appends in flight per follower while replicating (pipelining depth).
    max_inflight_msgs: int = 64
    #: Entry bytes in flight per follower while replicating.
    max_inflight_bytes: int = 32 << 20
    #: Entry bytes of committed entries handed out per Ready (at least one entry).
    max_committed_bytes: int = 16 << 20
    #: Ticks a leader waits for a follower to be caught up after a SnapshotRequest
    #: before it probes again (0: 10 election timeouts).
    snapshot_retry_ticks: int = 0
    logger: RaftLogger | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise RaftConfigError("id must be a non-empty member name")
        if self.heartbeat_tick < 1:
            raise RaftConfigError("heartbeat_tick must be at least 1")
        if self.election_tick <= self.heartbeat_tick:
            raise RaftConfigError("election_tick must be greater than heartbeat_tick")
        if self.applied < 0:
            raise RaftConfigError("applied must not be negative")
        for name in ("max_msg_bytes", "max_inflight_msgs", "max_inflight_bytes"):
            if getattr(self, name) < 1:
                raise RaftConfigError(f"{name} must be at least 1")
        if self.max_committed_bytes < 1 or self.snapshot_retry_ticks < 0:
            raise RaftConfigError("max_committed_bytes >= 1 and snapshot_retry_ticks >= 0")

    @property
    def snapshot_retry(self) -> int:
        return self.snapshot_retry_ticks or 10 * self.election_tick
