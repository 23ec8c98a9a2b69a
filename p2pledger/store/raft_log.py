"""Raft's durable state in the node's LMDB environment: the log and the hard state.

``RaftLog`` implements the core's read interface (``p2pledger.raft.Storage``) and the
driver's writes after each Ready. ``save`` persists one Ready's snapshot point,
entries (truncating any conflicting suffix) and hard state in one synced LMDB
transaction, so a vote or an acknowledged entry is never forgotten across a crash.

Layout: ``raft_log`` maps an 8-byte big-endian index to ``term (8 bytes) ‖ kind
(1 byte) ‖ data`` (raw, so a block inside an entry is never re-encoded);
``raft_state`` holds ``hard_state`` and ``snapshot`` as deterministic CBOR. The
log's bounds and the hard state are cached in memory: this object is the only
writer, and the core reads them on every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from p2pledger import codec
from p2pledger.errors import CodecError, StoreFormatError
from p2pledger.raft import (
    BadMessage,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    LogCompacted,
    LogUnavailable,
    SnapshotMeta,
)
from p2pledger.raft.errors import RaftStorageError
from p2pledger.raft.storage import fold_conf, limit_size
from p2pledger.store.env import Txn
from p2pledger.store.ledger import LedgerStore

__all__ = ["RaftLog"]

_LOG: Final = "raft_log"
_STATE: Final = "raft_state"
_HARD: Final = b"hard_state"
_SNAP: Final = b"snapshot"


def _key(index: int) -> bytes:
    return index.to_bytes(8, "big")


def _pack(entry: Entry) -> bytes:
    return entry.term.to_bytes(8, "big") + bytes((int(entry.kind),)) + entry.data


def _unpack(index: int, value: bytes) -> Entry:
    try:
        return Entry(
            term=int.from_bytes(value[:8], "big"),
            index=index,
            kind=EntryKind(value[8]),
            data=bytes(value[9:]),
        )
    except (BadMessage, ValueError, IndexError) as exc:
        raise StoreFormatError(f"Raft log entry {index} is damaged: {exc}") from exc


class RaftLog:
    """The Raft log and hard state of one member, on top of its ledger store."""

    def __init__(self, store: LedgerStore, *, initial_conf: ConfState) -> None:
        """Open the Raft state in ``store``; a fresh store starts at ``initial_conf``
        (the genesis membership: voters and learners by member name)."""
        self._store = store

        def load(txn: Txn) -> tuple[HardState, SnapshotMeta, int]:
            raw_hard, raw_snap = txn.get(_STATE, _HARD), txn.get(_STATE, _SNAP)
            try:
                hard = HardState() if raw_hard is None else HardState.from_value(_decode(raw_hard))
                snap = (
                    SnapshotMeta(conf=initial_conf)
                    if raw_snap is None
                    else SnapshotMeta.from_value(_decode(raw_snap))
                )
            except BadMessage as exc:
                raise StoreFormatError(f"Raft state is damaged: {exc}") from exc
            last = txn.last(_LOG)
            last_index = snap.index if last is None else int.from_bytes(last[0], "big")
            return hard, snap, last_index

        self._hard, self._snapshot, self._last = store.transact(load)
        self._terms: dict[int, int] = {}

    # --- Storage (what the core reads) -------------------------------------------------

    def initial_state(self) -> HardState:
        return self._hard

    def snapshot(self) -> SnapshotMeta:
        return self._snapshot

    def first_index(self) -> int:
        return self._snapshot.index + 1

    def last_index(self) -> int:
        return self._last

    def term(self, index: int) -> int:
        if index < self._snapshot.index:
            raise LogCompacted(f"index {index} is compacted (first index {self.first_index()})")
        if index == self._snapshot.index:
            return self._snapshot.term
        if index > self._last:
            raise LogUnavailable(f"index {index} is beyond the last index {self._last}")
        term = self._terms.get(index)
        if term is None:
            value = self._store.transact(lambda txn: txn.get(_LOG, _key(index)))
            if value is None:
                raise StoreFormatError(f"Raft log entry {index} is missing")
            term = int.from_bytes(value[:8], "big")
        return term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> Sequence[Entry]:
        if lo < self.first_index():
            raise LogCompacted(f"index {lo} is compacted (first index {self.first_index()})")
        if hi > self._last + 1:
            raise LogUnavailable(f"index {hi - 1} is beyond the last index {self._last}")
        if lo >= hi:
            return ()

        def read(txn: Txn) -> list[Entry]:
            out: list[Entry] = []
            total = 0
            for key, value in txn.items(_LOG, start=_key(lo), stop=_key(hi)):
                entry = _unpack(int.from_bytes(key, "big"), value)
                total += entry.size
                if max_bytes is not None and total > max_bytes and out:
                    break
                out.append(entry)
            return out

        found = self._store.transact(read)
        if not found or found[0].index != lo:
            raise StoreFormatError(f"Raft log entries from {lo} are missing")
        return limit_size(found, max_bytes)

    # --- writes (the driver's side, after each Ready) ----------------------------------

    def save(
        self,
        *,
        snapshot: SnapshotMeta | None = None,
        entries: Sequence[Entry] = (),
        hard_state: HardState | None = None,
    ) -> None:
        """Persist one Ready's durable part, in the contract's order, in one synced
        LMDB transaction."""
        if snapshot is None and not entries and hard_state is None:
            return
        snap = self._snapshot
        if snapshot is not None:
            if snapshot.index <= snap.index:
                raise RaftStorageError(f"snapshot {snapshot.index} is not newer than {snap.index}")
            snap = snapshot
        last = snap.index if snapshot is not None else self._last
        if entries:
            first = entries[0].index
            if first > last + 1:
                raise RaftStorageError(f"entry {first} leaves a gap after the last index {last}")
            entries = [e for e in entries if e.index > snap.index]

        def write(txn: Txn) -> None:
            if snapshot is not None:
                txn.delete_range(_LOG, stop=_key(snapshot.index + 1))
                if self._last > snapshot.index:
                    txn.delete_range(_LOG, start=_key(snapshot.index + 1))
                txn.put(_STATE, _SNAP, codec.encode(snapshot.to_value()))
            if entries:
                txn.delete_range(_LOG, start=_key(entries[0].index))
                for e in entries:
                    txn.put(_LOG, _key(e.index), _pack(e))
            if hard_state is not None:
                txn.put(_STATE, _HARD, codec.encode(hard_state.to_value()))

        self._store.transact(write, write=True)
        if snapshot is not None:
            self._snapshot = snapshot
            self._last = snapshot.index
            self._terms.clear()
        if entries:
            first = entries[0].index
            for i in [i for i in self._terms if i >= first]:
                del self._terms[i]
            self._last = entries[-1].index
            for e in entries[-1024:]:
                self._terms[e.index] = e.term
            if len(self._terms) > 4096:
                for i in sorted(self._terms)[:-1024]:
                    del self._terms[i]
        if hard_state is not None:
            self._hard = hard_state

    def compact(self, index: int) -> SnapshotMeta:
        """Discard entries up to ``index`` (already applied: the ledger holds them)."""
        if index <= self._snapshot.index:
            raise LogCompacted(f"index {index} is already compacted")
        if index > self._last:
            raise LogUnavailable(f"index {index} is beyond the last index {self._last}")
        dropped = self.entries(self.first_index(), index + 1)
        snap = SnapshotMeta(
            index=index, term=dropped[-1].term, conf=fold_conf(self._snapshot.conf, dropped)
        )

        def write(txn: Txn) -> None:
            txn.delete_range(_LOG, stop=_key(index + 1))
            txn.put(_STATE, _SNAP, codec.encode(snap.to_value()))

        self._store.transact(write, write=True)
        self._snapshot = snap
        for i in [i for i in self._terms if i <= index]:
            del self._terms[i]
        return snap


def _decode(raw: bytes) -> codec.Value:
    try:
        return codec.decode(raw)
    except CodecError as exc:
        raise StoreFormatError(f"Raft state is damaged: {exc}") from exc
