"""The Raft ordering core: a deterministic, sans-I/O state machine.

The daemon's ordering service feeds it ticks, peer messages and proposals and
drains ``Ready`` batches (what to persist, what to send, what to apply); see
``rawnode`` for the numbered Ready contract and ``core`` for how the state machine
works. Entries carry opaque bytes (whole blocks, membership changes). Node ids are
member names (``str``). Membership changes are single-server changes (see ``conf``
for why). Log compaction hands a lagging follower a ``SnapshotRequest``, which its
daemon satisfies by block catch-up from the ledger, then ``RawNode.restore``.

Modules: ``messages`` (entries, hard state, wire messages), ``conf``
(configurations and changes), ``storage`` (the read interface, ``MemoryStorage``),
``log`` (stable plus unstable log), ``progress`` (per-follower replication state),
``quorum`` (majorities), ``core`` (the transitions), ``rawnode`` (Ready/advance),
``config``, ``errors``.
"""

from p2pledger.raft.conf import ConfChange, ConfChangeOp, ConfState
from p2pledger.raft.config import Config, RaftLogger
from p2pledger.raft.core import Role
from p2pledger.raft.errors import (
    BadMessage,
    ConfChangePending,
    InvalidConfChange,
    InvalidTransfer,
    LogCompacted,
    LogUnavailable,
    MisdirectedMessage,
    NotLeader,
    NotVoter,
    ProposalDropped,
    RaftConfigError,
    RaftError,
    RaftStorageError,
    RaftUsageError,
    TransferInProgress,
)
from p2pledger.raft.messages import (
    AppendRequest,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    Message,
    SnapshotMeta,
    SnapshotRequest,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
    message_from_value,
)
from p2pledger.raft.progress import ProgressState
from p2pledger.raft.rawnode import ProgressStatus, RawNode, Ready, SoftState, Status
from p2pledger.raft.storage import MemoryStorage, Storage

__all__ = [
    "AppendRequest",
    "AppendResponse",
    "BadMessage",
    "ConfChange",
    "ConfChangeOp",
    "ConfChangePending",
    "ConfState",
    "Config",
    "Entry",
    "EntryKind",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "InvalidConfChange",
    "InvalidTransfer",
    "LogCompacted",
    "LogUnavailable",
    "MemoryStorage",
    "Message",
    "MisdirectedMessage",
    "NotLeader",
    "NotVoter",
    "ProgressState",
    "ProgressStatus",
    "ProposalDropped",
    "RaftConfigError",
    "RaftError",
    "RaftLogger",
    "RaftStorageError",
    "RaftUsageError",
    "RawNode",
    "Ready",
    "Role",
    "SnapshotMeta",
    "SnapshotRequest",
    "SoftState",
    "Status",
    "Storage",
    "TimeoutNow",
    "TransferInProgress",
    "VoteRequest",
    "VoteResponse",
    "message_from_value",
]
