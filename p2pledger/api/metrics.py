"""Prometheus counters of the client API, on a registry the caller owns.

Several nodes can live in one process (tests, netsim), so nothing is registered on
the global registry. Labels are bounded: ``endpoint`` is a route template (or
"unmatched"), never a raw path; ``reason`` is a code the API or the service chose.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["UNMATCHED", "ApiMetrics"]

_NS = "p2pledger"
_SUB = "api"
#: The endpoint label of requests that matched no route.
UNMATCHED = "unmatched"


class ApiMetrics:
    """Requests by endpoint and status; refused transactions by reason."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "requests",
            "HTTP requests answered, by endpoint (route template) and status",
            ("endpoint", "status"),
            namespace=_NS,
            subsystem=_SUB,
            registry=registry,
        )
        self.rejected = Counter(
            "rejected_transactions",
            "Submitted transactions refused, by reason (entry checks, mempool, bad request)",
            ("reason",),
            namespace=_NS,
            subsystem=_SUB,
            registry=registry,
        )

    def request(self, endpoint: str, status: int) -> None:
        self.requests.labels(endpoint, str(status)).inc()

    def rejection(self, reason: str) -> None:
        self.rejected.labels(reason).inc()
