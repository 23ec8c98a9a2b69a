"""The transport's exceptions, split like h11's: Local (we misused it) and Remote (the
peer sent something we refuse).

Each remote class carries a stable machine-readable ``reason`` used in log lines and
metric labels; nothing compares messages. A refused handshake carries one of the
``RefusalReason`` codes.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from p2pledger.errors import LocalError, RemoteError

__all__ = [
    "FrameAuthFailed",
    "FrameTooLarge",
    "HandshakeRefused",
    "ListenFailed",
    "LocalProtocolError",
    "MalformedMessage",
    "MessageTooLarge",
    "PeerUnreachable",
    "RefusalReason",
    "RemoteProtocolError",
    "SessionExhausted",
    "TruncatedFrame",
    "UnknownMessageType",
]


class RefusalReason(enum.StrEnum):
    """Why a handshake did not produce a usable connection (log field ``reason``)."""

    MALFORMED_HELLO = "malformed_hello"
    WRONG_VERSION = "wrong_protocol_version"
    WRONG_CHAIN = "wrong_chain"
    LOW_ORDER_POINT = "low_order_point"
    REPLAYED = "replayed_transcript"
    MALFORMED_AUTH = "malformed_auth"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    REMOVED_MEMBER = "removed_member"
    UNEXPECTED_PEER = "unexpected_peer"
    SELF_CONNECTION = "self_connection"
    DUPLICATE = "duplicate_connection"
    TIMEOUT = "timeout"
    CLOSED = "connection_closed"


# --- local: our own misuse ---------------------------------------------------------


class LocalProtocolError(LocalError):
    """The transport was used wrongly (wrong state, bad argument): a caller's bug.

    The object that raised it is unchanged and still usable.
    """


class MessageTooLarge(LocalProtocolError):
    """A message to send is longer than the configured frame maximum."""


class UnknownMessageType(LocalProtocolError):
    """A message to send has a type that is not registered with the transport."""


class ListenFailed(LocalError):
    """The node cannot listen on its configured address (in use, not ours, ...)."""


class SessionExhausted(LocalError):
    """The session sealed as many frames as its nonce space allows; reconnect."""


# --- remote: the peer's fault -------------------------------------------------------


class RemoteProtocolError(RemoteError):
    """The peer broke the transport protocol; the connection is closed."""

    reason: ClassVar[str] = "protocol_error"

    @property
    def code(self) -> str:
        """The stable reason code for logs and metrics."""
        return self.reason


class HandshakeRefused(RemoteProtocolError):
    """The handshake failed; ``refusal`` says why (never a string to compare)."""

    reason: ClassVar[str] = "handshake_refused"

    def __init__(self, refusal: RefusalReason, detail: str) -> None:
        super().__init__(f"handshake refused ({refusal.value}): {detail}")
        self.refusal = refusal
        self.detail = detail

    @property
    def code(self) -> str:
        return self.refusal.value


class FrameTooLarge(RemoteProtocolError):
    """A frame header announces more bytes than the configured maximum."""

    reason: ClassVar[str] = "frame_too_large"


class FrameAuthFailed(RemoteProtocolError):
    """A frame does not authenticate: tampered, reordered, replayed or truncated."""

    reason: ClassVar[str] = "frame_auth_failed"


class TruncatedFrame(RemoteProtocolError):
    """The peer closed the connection in the middle of a frame."""

    reason: ClassVar[str] = "truncated_frame"


class MalformedMessage(RemoteProtocolError):
    """A frame authenticated but does not hold a well-formed message envelope."""

    reason: ClassVar[str] = "malformed_message"


class PeerUnreachable(RemoteError):
    """A member's address could not be resolved or connected to."""

    reason: ClassVar[str] = "unreachable"
