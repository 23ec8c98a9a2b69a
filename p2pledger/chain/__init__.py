"""The chain's data model: transactions, blocks, genesis, Merkle trees, validation.

Pure: no I/O and no clock. Everything is encoded with ``p2pledger.codec`` and signed
with ``p2pledger.crypto``.
"""

from p2pledger.chain.block import (
    VALID,
    ZERO_HASH,
    Block,
    Header,
    TxResult,
    build_block,
    chain_id_after,
    results_root,
    tx_root,
)
from p2pledger.chain.genesis import chain_id_of, genesis_block, network_of_genesis
from p2pledger.chain.tx import Transaction
from p2pledger.chain.validation import validate_block

__all__ = [
    "VALID",
    "ZERO_HASH",
    "Block",
    "Header",
    "Transaction",
    "TxResult",
    "build_block",
    "chain_id_after",
    "chain_id_of",
    "genesis_block",
    "network_of_genesis",
    "results_root",
    "tx_root",
    "validate_block",
]
