"""The member transport: authenticated, encrypted, framed connections between members.

Layout (h11 style: small modules with one job, pure where possible):

- ``framing``: sans-I/O length-prefixed frames, length checked before allocation;
- ``handshake``: the sans-I/O handshake state machine (ephemeral X25519, keys derived
  from the transcript, Ed25519-signed transcript, membership check, tie-break verdict);
- ``messages``: the CBOR message envelope and the registry of types and lanes;
- ``channel``: ``SecureChannel``, the encrypted channel around a trio Stream;
- ``peers``: ``PeerManager``, one connection per member pair with queues, heartbeats,
  backoff, throttling and membership updates; ``net`` is its network seam;
- ``queues``, ``inbox``, ``ratelimit``, ``backoff``, ``replay``, ``metrics``, ``config``:
  the parts it is built from.

Key exchange and AEAD live in ``p2pledger.crypto.kx`` and ``p2pledger.crypto.aead``.
"""

from p2pledger.wire.channel import Admit, ChannelStatistics, SecureChannel
from p2pledger.wire.config import PROTOCOL_VERSION, TransportConfig
from p2pledger.wire.errors import (
    FrameAuthFailed,
    FrameTooLarge,
    HandshakeRefused,
    ListenFailed,
    LocalProtocolError,
    MalformedMessage,
    MessageTooLarge,
    PeerUnreachable,
    RefusalReason,
    RemoteProtocolError,
    SessionExhausted,
    TruncatedFrame,
    UnknownMessageType,
)
from p2pledger.wire.handshake import Handshake, HandshakeResult, HandshakeState, Side
from p2pledger.wire.messages import Lane, Message, MessageRegistry
from p2pledger.wire.metrics import WireMetrics
from p2pledger.wire.net import ConnectionHandler, NetworkBackend, TrioNetwork
from p2pledger.wire.peers import (
    Delivery,
    PeerManager,
    PeerStatistics,
    Resolver,
    SendOutcome,
    TransportStatistics,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Admit",
    "ChannelStatistics",
    "ConnectionHandler",
    "Delivery",
    "FrameAuthFailed",
    "FrameTooLarge",
    "Handshake",
    "HandshakeRefused",
    "HandshakeResult",
    "HandshakeState",
    "Lane",
    "ListenFailed",
    "LocalProtocolError",
    "MalformedMessage",
    "Message",
    "MessageRegistry",
    "MessageTooLarge",
    "NetworkBackend",
    "PeerManager",
    "PeerStatistics",
    "PeerUnreachable",
    "RefusalReason",
    "RemoteProtocolError",
    "Resolver",
    "SecureChannel",
    "SendOutcome",
    "SessionExhausted",
    "Side",
    "TransportConfig",
    "TransportStatistics",
    "TrioNetwork",
    "TruncatedFrame",
    "UnknownMessageType",
    "WireMetrics",
]
