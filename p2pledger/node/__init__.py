"""The member daemon: one trio nursery wiring store, Raft, transport, gossip and API.

``Node`` (``runtime``) is what ``p2pledger run`` starts. It reads time only through
trio's clock (plus one injected wall clock for block timestamps), randomness only
from an injected generator, and opens connections only through an injected network
(``Environment``), so many members can run in one process on virtual time.
"""

from p2pledger.node.environment import Environment
from p2pledger.node.runtime import Node, NodeDiverged, NodeSettings

__all__ = ["Environment", "Node", "NodeDiverged", "NodeSettings"]
