"""The node's durable storage: the only package that imports lmdb.

``LedgerStore`` keeps a data directory's blocks, indexes, tip and application state
in one LMDB environment, locked to one process. Other store modules (Raft's log and
hard state) reach their reserved databases through ``LedgerStore.transact`` and
``Txn``, so no code outside this package touches LMDB.
"""

from p2pledger.store.env import MAX_MAP_SIZE, Txn
from p2pledger.store.ledger import (
    DEFAULT_MAP_SIZE,
    FORMAT_VERSION,
    LEDGER_DIR,
    LOCK_FILE,
    MAX_STATE_KEY_SIZE,
    RESERVED_DBS,
    LedgerStore,
    StoreStatistics,
)

__all__ = [
    "DEFAULT_MAP_SIZE",
    "FORMAT_VERSION",
    "LEDGER_DIR",
    "LOCK_FILE",
    "MAX_MAP_SIZE",
    "MAX_STATE_KEY_SIZE",
    "RESERVED_DBS",
    "LedgerStore",
    "StoreStatistics",
    "Txn",
]
