"""The exceptions of the client API: what a service raises, and what a request gets.

Why here: the HTTP layer and the node meet at ``LedgerService`` (see ``service``).
The node raises ``TxRejected`` or ``MempoolFull`` from ``submit``; the HTTP layer
turns them, and its own ``RequestRefused`` for a bad request, into a status code and
a JSON body ``{"error": {"code": ..., "message": ...}}``. Codes are stable and
machine-readable; messages are for people. Nothing compares messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from p2pledger.errors import P2PLedgerError, RemoteError

__all__ = [
    "ENTRY_REASONS",
    "MempoolFull",
    "RequestRefused",
    "TxRejected",
    "Unavailable",
    "rejection_status",
]

#: The reason codes a service gives ``TxRejected`` at entry (before ordering).
#: A service may add others; they are answered with 422 unless listed below.
ENTRY_REASONS: Final = (
    "malformed",
    "too_large",
    "wrong_chain",
    "unknown_signer",
    "bad_signature",
    "already_committed",
    "already_pending",
)

_REJECTION_STATUS: Final[Mapping[str, int]] = {
    "malformed": 400,
    "too_large": 413,
    "already_committed": 409,
    "already_pending": 409,
}
_DEFAULT_REJECTION_STATUS: Final = 422


def rejection_status(reason: str) -> int:
    """The HTTP status answering a transaction refused at entry for ``reason``."""
    return _REJECTION_STATUS.get(reason, _DEFAULT_REJECTION_STATUS)


class TxRejected(RemoteError):
    """The service refused a transaction at entry; ``reason`` is a stable code.

    Nothing was stored or gossiped: the client may fix the transaction and resend.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class Unavailable(P2PLedgerError):
    """The service takes no transaction now (503 with Retry-After); ``code`` says why:
    "mempool_full", "shutting_down", or "not_a_member" (joining, or removed)."""

    def __init__(self, retry_after_s: float, code: str, message: str) -> None:
        if retry_after_s < 0:
            raise ValueError("retry_after_s must not be negative")
        super().__init__(f"{message}; retry after {retry_after_s:g} s")
        self.retry_after_s = retry_after_s
        self.code = code
        self.message = message


class MempoolFull(Unavailable):
    """The service holds as many pending transactions as it may; retry later."""

    def __init__(self, retry_after_s: float, message: str = "the mempool is full") -> None:
        super().__init__(retry_after_s, "mempool_full", message)


class RequestRefused(RemoteError):
    """An HTTP request the API will not serve: its status, code, message and headers.

    ``extra`` adds fields to the JSON error object (for example the transaction id of
    a commit timeout).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, str | int | float | None] | None = None,
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"an error status is 4xx or 5xx, not {status}")
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers: Mapping[str, str] = dict(headers or {})
        self.extra: Mapping[str, str | int | float | None] = dict(extra or {})

    def body(self) -> dict[str, dict[str, str | int | float | None]]:
        """The JSON error body."""
        return {"error": {"code": self.code, "message": self.message, **self.extra}}
