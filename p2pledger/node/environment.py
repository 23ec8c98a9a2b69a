"""The one seam through which the runtime meets time, randomness and the network."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from p2pledger.wire import NetworkBackend, TrioNetwork

__all__ = ["Environment"]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Environment:
    """What a node may take from the world. Tests inject in-memory networks, a
    seeded generator and a fake wall clock; trio's clock (real or MockClock) is the
    only other source of time."""

    net: NetworkBackend = field(default_factory=TrioNetwork)
    rng: random.Random = field(default_factory=random.Random)
    wall_ms: Callable[[], int] = _wall_ms
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
