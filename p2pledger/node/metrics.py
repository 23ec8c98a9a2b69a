"""The node's Prometheus metrics, registered on the node's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["NodeMetrics"]


class NodeMetrics:
    """Height, term, leader changes, mempool, transactions and commit latency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.height = Gauge(
            "p2pledger_height", "Height of the last committed block.", registry=registry
        )
        self.term = Gauge("p2pledger_raft_term", "Current Raft term.", registry=registry)
        self.is_leader = Gauge(
            "p2pledger_is_leader", "1 while this member leads.", registry=registry
        )
        self.leader_changes = Counter(
            "p2pledger_leader_changes", "Leader changes seen.", registry=registry
        )
        self.mempool_txs = Gauge(
            "p2pledger_mempool_transactions", "Pending transactions.", registry=registry
        )
        self.mempool_bytes = Gauge(
            "p2pledger_mempool_bytes", "Bytes of pending transactions.", registry=registry
        )
        self.received = Counter(
            "p2pledger_transactions_received",
            "Transactions received, by source (api, gossip).",
            ["source"],
            registry=registry,
        )
        self.rejected = Counter(
            "p2pledger_transactions_rejected",
            "Transactions refused at entry, by reason.",
            ["reason"],
            registry=registry,
        )
        self.committed = Counter(
            "p2pledger_transactions_committed",
            "Transactions committed, by verdict.",
            ["verdict"],
            registry=registry,
        )
        # the children the hot paths use, bound once (labels() is a locked dict lookup)
        self.received_api = self.received.labels("api")
        self.received_gossip = self.received.labels("gossip")
        self.committed_valid = self.committed.labels("valid")
        self.committed_invalid = self.committed.labels("invalid")
        self.blocks = Counter("p2pledger_blocks_committed", "Blocks committed.", registry=registry)
        self.commit_latency = Histogram(
            "p2pledger_commit_latency_seconds",
            "From acceptance by this member's API to commit on this member.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.store_bytes = Gauge("p2pledger_store_bytes", "LMDB bytes in use.", registry=registry)
        self.membership_version = Gauge(
            "p2pledger_membership_version",
            "Version of the membership in force (0: the founding file).",
            registry=registry,
        )
