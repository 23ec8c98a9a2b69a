"""Prometheus metrics of the member transport, on a registry the caller owns.

Several nodes can live in one process (tests, netsim), so nothing is registered on
the global registry: each ``WireMetrics`` registers its collectors on the
``CollectorRegistry`` it is given. Peer labels are member names (a small, known set).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from p2pledger.wire.messages import Lane

__all__ = ["PeerMetrics", "WireMetrics"]

_NS = "p2pledger"
_SUB = "wire"


class WireMetrics:
    """Every counter and gauge of the transport."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=_NS, subsystem=_SUB, registry=registry)

        self.handshakes = counter("handshakes", "Handshakes completed, by side", ("side",))
        self.refusals = counter(
            "handshake_refusals", "Handshakes refused, by reason", ("reason", "side")
        )
        self.dials = counter("dials", "Outbound connection attempts, by result", ("result",))
        self.disconnects = counter(
            "disconnects", "Member connections closed, by reason", ("peer", "reason")
        )
        self.connections = Gauge(
            "connections",
            "Open member connections",
            namespace=_NS,
            subsystem=_SUB,
            registry=registry,
        )
        self.messages_sent = counter(
            "messages_sent", "Messages written, by peer and lane", ("peer", "lane")
        )
        self.messages_received = counter(
            "messages_received", "Messages received, by peer and lane", ("peer", "lane")
        )
        self.bytes_sent = counter("bytes_sent", "Message bytes written", ("peer",))
        self.bytes_received = counter("bytes_received", "Message bytes received", ("peer",))
        self.writes = counter("writes", "Batched socket writes", ("peer",))
        self.shed = counter(
            "messages_shed", "Gossip messages shed because the send queue was full", ("peer",)
        )
        self.queue_overflows = counter(
            "queue_overflows",
            "Consensus send queue overflows (the peer is disconnected)",
            ("peer",),
        )
        self.messages_lost = counter(
            "messages_lost",
            "Queued messages dropped by a queue overflow or a failed write, by lane",
            ("peer", "lane"),
        )
        self.unknown_messages = counter(
            "unknown_messages", "Messages of unknown type, ignored", ("peer",)
        )
        self.throttled = counter(
            "throttled_messages", "Messages delayed by the per-peer receive limit", ("peer",)
        )

    def for_peer(self, peer: str) -> PeerMetrics:
        """The per-message counters of one peer, resolved once (labels() is not free)."""
        lanes = tuple(Lane)
        return PeerMetrics(
            sent={lane: self.messages_sent.labels(peer, lane.value) for lane in lanes},
            received={lane: self.messages_received.labels(peer, lane.value) for lane in lanes},
            bytes_sent=self.bytes_sent.labels(peer),
            bytes_received=self.bytes_received.labels(peer),
            writes=self.writes.labels(peer),
            throttled=self.throttled.labels(peer),
            unknown=self.unknown_messages.labels(peer),
            shed=self.shed.labels(peer),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerMetrics:
    """Counters of one peer, ready to increment."""

    sent: dict[Lane, Counter]
    received: dict[Lane, Counter]
    bytes_sent: Counter
    bytes_received: Counter
    writes: Counter
    throttled: Counter
    unknown: Counter
    shed: Counter
