"""The messages members exchange above the transport, and their lanes.

``raft`` carries one Raft message (consensus lane: never shed); ``gossip.txs`` a
batch of signed transactions (gossip lane: may be shed under load, the mempool
re-push on reconnect makes up for it); ``sync.request`` / ``sync.blocks`` fetch
committed blocks for catch-up (the ledger is Raft's snapshot); ``status.height``
tells the others this member's height once a second, so any member can report
every member's lag.
"""

from __future__ import annotations

from typing import Final

from p2pledger.wire import Lane, MessageRegistry

__all__ = [
    "GOSSIP_TXS",
    "RAFT",
    "STATUS_HEIGHT",
    "SYNC_BLOCKS",
    "SYNC_REQUEST",
    "message_types",
]

RAFT: Final = "raft"
GOSSIP_TXS: Final = "gossip.txs"
SYNC_REQUEST: Final = "sync.request"
SYNC_BLOCKS: Final = "sync.blocks"
STATUS_HEIGHT: Final = "status.height"


def message_types() -> MessageRegistry:
    return MessageRegistry(
        {
            RAFT: Lane.CONSENSUS,
            GOSSIP_TXS: Lane.GOSSIP,
            SYNC_REQUEST: Lane.CONSENSUS,
            SYNC_BLOCKS: Lane.CONSENSUS,
            STATUS_HEIGHT: Lane.GOSSIP,
        }
    )
