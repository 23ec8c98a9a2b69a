"""The application state machine: funds with provenance, notarized digests, and
membership updates.

Every member applies the same committed blocks to the same state with
``apply_block`` and gets the same net writes and state root, byte for byte. Pure: no
I/O, no clock, no randomness; the store reads and persists, this package decides.
``keys`` documents the key layout, ``root`` what the state root commits to.
"""

from p2pledger.state.config import (
    CONFIG_UPDATE_OP,
    ConfigRecord,
    config_records,
    decode_network,
    founding_record,
    network_in_force,
)
from p2pledger.state.context import BlockContext
from p2pledger.state.errors import CorruptState, Rejected
from p2pledger.state.funds import (
    MAX_LOTS_PER_TRANSFER,
    balance,
    fund_supply,
    issue_record,
    provenance,
    transfer_record,
)
from p2pledger.state.machine import OPERATIONS, REASONS, ApplyOutcome, apply_block
from p2pledger.state.notary import AnchorRecord, anchor
from p2pledger.state.records import MAX_AMOUNT, Hop, IssueRecord, Lot, TransferRecord
from p2pledger.state.root import GENESIS_STATE_ROOT, next_state_root, writes_digest
from p2pledger.state.view import MemoryState, StateView

__all__ = [
    "CONFIG_UPDATE_OP",
    "GENESIS_STATE_ROOT",
    "MAX_AMOUNT",
    "MAX_LOTS_PER_TRANSFER",
    "OPERATIONS",
    "REASONS",
    "AnchorRecord",
    "ApplyOutcome",
    "BlockContext",
    "ConfigRecord",
    "CorruptState",
    "Hop",
    "IssueRecord",
    "Lot",
    "MemoryState",
    "Rejected",
    "StateView",
    "TransferRecord",
    "anchor",
    "apply_block",
    "balance",
    "config_records",
    "decode_network",
    "founding_record",
    "fund_supply",
    "issue_record",
    "network_in_force",
    "next_state_root",
    "provenance",
    "transfer_record",
    "writes_digest",
]
