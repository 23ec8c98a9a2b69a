"""Why a membership update is refused: one class per kind of fault, each with a code.

``code`` is the stable reason the ledger records when it judges a ``config.update``
transaction invalid (``p2pledger.state.REASONS``); the message is for the admin and
says what to do. The CLI raises the same errors before anything is sent, so an admin
sees the same words locally and, had it got that far, on the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable

from p2pledger.crypto import PublicKey
from p2pledger.errors import RemoteError

__all__ = [
    "BadApproval",
    "BadUpdateArgs",
    "InsufficientApprovals",
    "InvalidUpdate",
    "MalformedProposal",
    "MembershipError",
]


class MembershipError(RemoteError):
    """A membership update, or a part of one, is refused; ``code`` says why."""

    code: str = "bad_config"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidUpdate(MembershipError):
    """The proposed network is not an acceptable successor of the one in force."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InsufficientApprovals(MembershipError):
    """The approvals do not meet the policy; ``missing`` names the members one of
    whose admins must still approve (for the majority, every member not approving)."""

    code = "insufficient_approvals"

    def __init__(self, message: str, missing: Iterable[str]) -> None:
        super().__init__(message)
        self.missing = tuple(missing)


class BadApproval(MembershipError):
    """An approval's signature does not verify over the proposal's bytes."""

    code = "bad_approval"

    def __init__(self, admin: PublicKey) -> None:
        super().__init__(
            f"the approval by admin key {admin.hex} does not verify over this proposal: "
            "it was signed over another proposal (or another base version); "
            "ask that admin to sign this proposal"
        )
        self.admin = admin


class MalformedProposal(MembershipError):
    """Bytes that should be a proposal are not its canonical encoding."""

    code = "bad_config"


class BadUpdateArgs(MembershipError):
    """A ``config.update`` transaction's arguments are not {proposal, approvals}."""

    code = "bad_args"
