"""Transactions between members: the bounded mempool and the seen-cache that keeps
gossip from crossing a link twice. Pure: no I/O, no clock."""

from p2pledger.gossip.mempool import Mempool, MempoolFull, MempoolStatistics
from p2pledger.gossip.seen import SeenCache

__all__ = ["Mempool", "MempoolFull", "MempoolStatistics", "SeenCache"]
