"""The seam between the HTTP API and the node: ``LedgerService`` and what it returns.

Why a Protocol: the API is written and tested without the daemon (against a fake
backed by a real ``Ledger``), and the node implements this narrow surface only. The
API never touches the store, the mempool or Raft itself.

Division of work:

- Entry checks are the service's: it knows the chain id, the membership and the
  mempool. ``submit`` decodes the transaction (size, canonical encoding), checks the
  chain id, that the signer is a registered user, the signature, and that the id is
  neither committed nor pending, and raises ``TxRejected(reason, message)`` with a
  code of ``errors.ENTRY_REASONS`` (``admission.check_entry`` does the stateless part).
  The API only turns hex into bytes.
- Reads that touch LMDB are the service's business: it runs them in worker threads.
- Timeouts are the caller's, in trio's manner: ``wait_committed`` takes none and
  returns once the transaction is committed; the API bounds it with a cancel scope,
  so the service only has to be cancellable while it waits.

``status`` and ``healthy`` are synchronous: they read what the node already has in
memory and must not block.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from p2pledger.api.errors import MempoolFull, TxRejected
from p2pledger.chain import Block, TxResult
from p2pledger.membership import Network
from p2pledger.state import AnchorRecord, ConfigRecord, Lot

__all__ = ["LedgerService", "NodeStatus", "PeerStatus", "TxState", "TxStatus"]

_ID_SIZE = 32


class TxState(enum.StrEnum):
    """Where a transaction is, as far as this member knows."""

    PENDING = "pending"  # accepted, waiting to be ordered into a block
    COMMITTED = "committed"  # in a committed block, valid or not
    UNKNOWN = "unknown"  # never seen, or dropped from the mempool


@dataclass(frozen=True, slots=True, kw_only=True)
class TxStatus:
    """A transaction's state; ``height``, ``index`` and ``result`` only when committed."""

    tx_id: bytes
    state: TxState
    height: int | None = None
    index: int | None = None
    result: TxResult | None = None

    def __post_init__(self) -> None:
        if len(self.tx_id) != _ID_SIZE:
            raise ValueError(f"a transaction id is {_ID_SIZE} bytes")
        placed = (self.height, self.index, self.result)
        if self.state is TxState.COMMITTED:
            if self.height is None or self.index is None or self.result is None:
                raise ValueError("a committed status has a height, an index and a result")
            if self.height < 1 or self.index < 0:
                raise ValueError("a committed transaction has height >= 1 and index >= 0")
        elif placed != (None, None, None):
            raise ValueError(f"a {self.state} status has no height, index or result")

    @classmethod
    def pending(cls, tx_id: bytes) -> TxStatus:
        return cls(tx_id=tx_id, state=TxState.PENDING)

    @classmethod
    def unknown(cls, tx_id: bytes) -> TxStatus:
        return cls(tx_id=tx_id, state=TxState.UNKNOWN)

    @classmethod
    def committed(cls, tx_id: bytes, *, height: int, index: int, result: TxResult) -> TxStatus:
        return cls(tx_id=tx_id, state=TxState.COMMITTED, height=height, index=index, result=result)


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStatus:
    """Another member as this one sees it.

    ``lag`` is how many blocks the peer's last known height is behind this member's
    (negative when it is ahead), or None when it is not known.
    """

    name: str
    connected: bool
    lag: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    """What ``GET /v1/status`` reports; ``chain_id`` is what clients sign for.

    ``role`` is this member's part in ordering right now ("leader", "follower",
    "candidate", "observer"); ``leader`` the name of the leader it knows, if any.
    """

    member: str
    role: str
    chain_name: str
    chain_id: bytes
    height: int
    term: int
    leader: str | None
    peers: tuple[PeerStatus, ...] = ()

    def __post_init__(self) -> None:
        if len(self.chain_id) != _ID_SIZE:
            raise ValueError(f"a chain id is {_ID_SIZE} bytes")
        if self.height < 0 or self.term < 0:
            raise ValueError("height and term are non-negative")


class LedgerService(Protocol):
    """What the API needs from a node. Every method may be called concurrently."""

    async def submit(self, raw: bytes) -> bytes:
        """Admit the signed transaction ``raw`` to the mempool; return its id.

        Raises ``TxRejected`` (entry checks, see the module docstring) or
        ``MempoolFull`` (try again after ``retry_after_s``).
        """
        ...

    async def submit_many(self, raws: Sequence[bytes]) -> list[bytes | TxRejected | MempoolFull]:
        """``submit`` for each of ``raws``, in order: its id, or why it was refused.
        Raises ``Unavailable`` only when the member takes nothing at all (shutting down,
        not a member)."""
        ...

    async def tx_statuses(self, tx_ids: Sequence[bytes]) -> list[TxStatus]:
        """``tx_status`` for each of ``tx_ids``, in order (one read of the store)."""
        ...

    async def wait_committed(self, tx_id: bytes) -> TxStatus:
        """Return the committed status of ``tx_id`` once it is committed (at once if
        it already is). Never times out by itself: the caller cancels it."""
        ...

    async def wait_all_committed(self, tx_ids: Sequence[bytes]) -> None:
        """Return once every one of ``tx_ids`` is committed (at once if they all are).
        Never times out by itself: the caller cancels it."""
        ...

    async def tx_status(self, tx_id: bytes) -> TxStatus:
        """Pending, committed (where and with what verdict), or unknown."""
        ...

    async def block(self, height: int | None) -> Block:
        """The committed block at ``height`` (None: the latest); ``NotFound`` if none."""
        ...

    async def receipt(self, tx_id: bytes) -> dict[str, Any]:
        """The inclusion receipt of a committed transaction, in
        ``p2pledger.chain.receipt.make_receipt`` form; ``NotFound`` if not committed."""
        ...

    async def balance(self, fund: str, account: bytes) -> tuple[int, list[Lot]]:
        """The balance of ``account`` in ``fund`` and its lots with provenance;
        ``NotFound`` when the fund does not exist."""
        ...

    async def anchor(self, digest: bytes) -> AnchorRecord | None:
        """The first anchoring of ``digest``, or None if it was never anchored."""
        ...

    async def network(self) -> Network:
        """The membership in force at this member's tip (``Ledger.network``)."""
        ...

    async def config_history(self) -> list[ConfigRecord]:
        """Every membership version from 0 (``Ledger.config_history``)."""
        ...

    def status(self) -> NodeStatus:
        """This member's view of itself and its peers (no I/O)."""
        ...

    def healthy(self) -> bool:
        """True when the store is open and the member is in touch with a quorum or a
        leader (no I/O)."""
        ...

    def health_problem(self) -> str | None:
        """Why the member is not healthy, in words for an operator (None: healthy)."""
        ...
