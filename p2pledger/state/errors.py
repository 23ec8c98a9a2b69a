"""The state machine's two exceptions: a rejected transaction, and corrupt stored state.

``Rejected`` is how an operation says "this transaction breaks a rule": ``apply_block``
catches it, records ``TxResult(False, reason)`` and discards the transaction's staged
writes, so it never leaves the package. ``CorruptState`` means the committed state
itself does not decode as what this code wrote; that is a store or programming fault,
not something a client can cause, so it propagates.
"""

from __future__ import annotations

from p2pledger.errors import LocalError, RemoteError

__all__ = ["CorruptState", "Rejected"]


class Rejected(RemoteError):
    """A transaction is invalid at apply time; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class CorruptState(LocalError):
    """A stored state value does not decode as the record its key promises."""
