"""The Raft core's exceptions, under p2pledger's Local/Remote split.

``LocalError`` subclasses mean the caller (the daemon's Raft driver) asked for
something the core cannot do right now or broke the Ready contract; the core's state
is unchanged after any of them. ``RemoteError`` subclasses mean a message from a
peer is malformed or not meant for us; the driver logs it, counts it and drops it.
"""

from __future__ import annotations

from p2pledger.errors import LocalError, RemoteError, SchemaError

__all__ = [
    "BadMessage",
    "ConfChangePending",
    "InvalidConfChange",
    "InvalidTransfer",
    "LogCompacted",
    "LogUnavailable",
    "MisdirectedMessage",
    "NotLeader",
    "NotVoter",
    "ProposalDropped",
    "RaftConfigError",
    "RaftError",
    "RaftStorageError",
    "RaftUsageError",
    "TransferInProgress",
]


class RaftError(LocalError):
    """Base of the errors the Raft core raises to its own driver."""


class RaftConfigError(RaftError):
    """A ``Config`` value is out of range (for example heartbeat >= election tick)."""


class RaftUsageError(RaftError):
    """The driver broke the Ready contract (for example ``ready()`` twice without
    ``advance()``); this is a bug in the driver, not a runtime condition."""


class ProposalDropped(RaftError):
    """A proposal was refused; nothing was appended. The caller may retry later."""


class NotLeader(ProposalDropped):
    """Only the leader accepts proposals and transfers; ``leader`` is a hint (or None)."""

    def __init__(self, node: str, leader: str | None) -> None:
        hint = f"; the leader is {leader}" if leader is not None else "; no leader is known"
        super().__init__(f"{node} is not the leader{hint}")
        self.leader = leader


class TransferInProgress(ProposalDropped):
    """A leadership transfer is under way; proposals wait until it ends."""


class ConfChangePending(ProposalDropped):
    """A membership change is not yet committed, or the leader has not yet committed
    an entry of its own term; only one single-server change may be in flight."""


class InvalidConfChange(RaftError):
    """A membership change makes no sense for the current configuration."""


class InvalidTransfer(RaftError):
    """A leadership transfer target is not a voter of the current configuration."""


class NotVoter(RaftError):
    """Only a voter of the current configuration can campaign."""


class RaftStorageError(RaftError):
    """The storage handed to the core is inconsistent (for example commit > last index)."""


class LogCompacted(RaftStorageError):
    """The entries or term asked for are below the storage's first index."""


class LogUnavailable(RaftStorageError):
    """The entries or term asked for are beyond the storage's last index."""


class BadMessage(SchemaError):
    """A Raft message's value form is malformed or breaks an invariant."""


class MisdirectedMessage(RemoteError):
    """A message was handed to a core whose id is not the message's recipient."""
