"""The transport's knobs: limits, timeouts, queue bounds, rates, backoff.

One frozen record, validated on construction, so every limit the transport enforces is
explicit and configurable (DESIGN.md: "Limits ... are explicit and configurable").
Times are in seconds (trio's unit); sizes in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from p2pledger.crypto.aead import MAX_MESSAGES

__all__ = ["PROTOCOL_VERSION", "TransportConfig"]

#: The version of the member transport protocol, sent and bound into every handshake.
PROTOCOL_VERSION: Final = 1

_KIB: Final = 1024
_MIB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    """Every limit and timing of the member transport."""

    protocol_version: int = PROTOCOL_VERSION
    #: Largest message (plaintext frame payload) sent or accepted.
    max_frame_size: int = 4 * _MIB
    #: Deepest CBOR nesting accepted in a message.
    max_nesting: int = 16
    #: A connection that has not completed its handshake by then is refused.
    handshake_timeout: float = 5.0
    #: Time allowed to open a TCP connection to a member.
    connect_timeout: float = 5.0
    #: An idle connection sends a heartbeat this often.
    heartbeat_interval: float = 1.0
    #: A peer that sends nothing for this long is dead; also the write timeout.
    dead_after: float = 5.0
    #: Bounds of each per-peer send lane (consensus and gossip separately).
    send_queue_messages: int = 1024
    send_queue_bytes: int = 16 * _MIB
    #: Small messages are written together up to this many bytes per write.
    batch_bytes: int = 64 * _KIB
    #: Bounds of each peer's share of the receive inbox.
    inbox_messages: int = 1024
    inbox_bytes: int = 16 * _MIB
    #: Per-peer receive limits (token buckets); a faster peer is throttled.
    receive_rate_messages: float = 20_000.0
    receive_burst_messages: int = 40_000
    receive_rate_bytes: float = 64.0 * _MIB
    receive_burst_bytes: int = 128 * _MIB
    #: Dial retries: exponential from ``backoff_initial`` to ``backoff_max``; each delay
    #: is reduced by a random fraction up to ``backoff_jitter``.
    backoff_initial: float = 0.1
    backoff_max: float = 10.0
    backoff_jitter: float = 0.5
    #: A removed member's connection closes once what was queued for it is sent, or
    #: after this long (its last Raft messages and blocks tell it it was removed).
    drain_timeout: float = 2.0
    #: How many recent peer ephemeral keys are remembered to refuse replays.
    replay_cache_size: int = 4096
    #: Frames sealed per direction before the session is torn down (nonce bound).
    session_message_limit: int = MAX_MESSAGES
    #: Bytes asked of the socket per read.
    read_size: int = 64 * _KIB

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "backoff_jitter":
                if not 0.0 <= value < 1.0:
                    raise ValueError("backoff_jitter is a fraction in [0, 1)")
            elif value <= 0:
                raise ValueError(f"transport setting {f.name} must be positive, got {value}")
        if self.dead_after <= self.heartbeat_interval:
            raise ValueError("dead_after must be longer than heartbeat_interval")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be at least backoff_initial")
        if self.receive_burst_bytes < self.max_frame_size:
            raise ValueError("receive_burst_bytes must admit one frame of max_frame_size")
        if self.session_message_limit > MAX_MESSAGES:
            raise ValueError(f"session_message_limit is at most {MAX_MESSAGES}")
        if not 0 < self.protocol_version < 2**16:
            raise ValueError("protocol_version is a 16-bit number")
