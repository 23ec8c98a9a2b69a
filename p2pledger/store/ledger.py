"""A node's ledger on disk: blocks, their indexes, the tip, and application state.

One LMDB environment per data directory (``DATA_DIR/ledger.lmdb``) holds named
databases: ``blocks`` (height -> the block's exact encoding), ``block_hashes``
(hash -> height), ``tx_index`` (transaction id -> height and index), ``meta`` (format
version, chain id, tip), ``state`` (the application's key -> value) and, reserved for
Raft's log and hard state, ``raft_log`` and ``raft_state``.

``append_block`` is the only writer of the ledger databases and is the unit of
durability: the block, its indexes, the state changes it causes and the new tip
commit together in one synced transaction, or not at all. Blocks only ever extend
the tip, so anything the store has acknowledged survives a crash whole.

The API is synchronous and every call opens and closes its own transaction, so the
daemon can run each call in a worker thread (``trio.to_thread.run_sync``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, Self, TypeVar

from p2pledger.chain import ZERO_HASH, Block
from p2pledger.errors import BlockRejected, InvalidBlock, NotFound, StoreError, StoreFormatError
from p2pledger.store.env import MIN_MAP_SIZE, LmdbEnvironment, Txn
from p2pledger.store.lock import DirectoryLock

__all__ = [
    "DEFAULT_MAP_SIZE",
    "FORMAT_VERSION",
    "LEDGER_DIR",
    "LOCK_FILE",
    "MAX_STATE_KEY_SIZE",
    "RESERVED_DBS",
    "LedgerStore",
    "StoreStatistics",
]

T = TypeVar("T")

#: The on-disk layout this code reads and writes; any other is refused.
FORMAT_VERSION: Final = 1
LEDGER_DIR: Final = "ledger.lmdb"
LOCK_FILE: Final = "ledger.lock"
DEFAULT_MAP_SIZE: Final = 64 * 1024 * 1024
#: Databases kept for other store modules (Raft's log and hard state); see ``transact``.
RESERVED_DBS: Final = ("raft_log", "raft_state")
#: LMDB's default limit on key length.
MAX_STATE_KEY_SIZE: Final = 511

_BLOCKS: Final = "blocks"
_HASHES: Final = "block_hashes"
_TXS: Final = "tx_index"
_META: Final = "meta"
_STATE: Final = "state"
_ALL_DBS: Final = (_BLOCKS, _HASHES, _TXS, _META, _STATE, *RESERVED_DBS)
_META_FORMAT: Final = b"format_version"
_META_CHAIN: Final = b"chain_id"
_META_TIP: Final = b"tip"
_META_APPLIED: Final = b"raft_applied"
_META_RAFT_INDEX: Final = b"raft_index/"
_NO_WRITES: Final[Mapping[bytes, bytes | None]] = MappingProxyType({})
_PAGE: Final = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreStatistics:
    """A snapshot of the store's size and contents, for metrics.

    ``map_size`` is the address space mapped (it grows by itself when full),
    ``used_bytes`` the part of it in use, ``file_bytes`` the data file's size on
    disk, and ``entries`` the number of records in each named database.
    """

    map_size: int
    used_bytes: int
    file_bytes: int
    page_size: int
    map_growths: int
    tip_height: int | None
    entries: Mapping[str, int]


class LedgerStore:
    """The ledger of one node's data directory. Open it with ``LedgerStore.open``."""

    def __init__(
        self,
        *,
        data_dir: Path,
        env: LmdbEnvironment,
        lock: DirectoryLock | None,
        expected_chain_id: bytes | None,
    ) -> None:
        self.data_dir = data_dir
        self._env = env
        self._lock = lock
        self._expected_chain_id = expected_chain_id

    # --- lifecycle -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        create: bool = False,
        expected_chain_id: bytes | None = None,
        initial_map_size: int = DEFAULT_MAP_SIZE,
        readonly: bool = False,
    ) -> LedgerStore:
        """Open the ledger in ``data_dir``, locking the directory for this store's life.

        With ``create``, make the directory and an empty ledger if there is none.
        ``expected_chain_id`` refuses a ledger of another chain (now, or at genesis if
        the ledger is still empty). Raises StoreLocked if another store has the
        directory open, StoreFormatError for a ledger of another format or chain,
        and StoreError if there is no ledger and ``create`` is false.

        ``readonly`` opens the ledger for reading only, without the directory lock,
        so an operator can inspect or audit a member's ledger while it runs.
        """
        data_dir = Path(data_dir)
        if readonly:
            return cls._open_readonly(data_dir, expected_chain_id)
        if not data_dir.is_dir():
            if not create:
                raise StoreError(_not_initialized(data_dir, "does not exist"))
            try:
                data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the data directory {data_dir}: {exc}") from exc
            _fsync_dir(data_dir.parent)
        lock = DirectoryLock.acquire(data_dir / LOCK_FILE)
        try:
            env = _open_environment(data_dir, create=create, map_size=initial_map_size)
            try:
                _check_chain(env, data_dir, expected_chain_id)
            except BaseException:
                env.close()
                raise
        except BaseException:
            lock.release()
            raise
        return cls(data_dir=data_dir, env=env, lock=lock, expected_chain_id=expected_chain_id)

    @classmethod
    def _open_readonly(cls, data_dir: Path, expected_chain_id: bytes | None) -> LedgerStore:
        path = data_dir / LEDGER_DIR
        if not (path / "data.mdb").is_file():
            raise StoreError(_not_initialized(data_dir, "holds no ledger"))
        env = LmdbEnvironment.open(path, create=False, map_size=MIN_MAP_SIZE, readonly=True)
        try:
            _check_existing(env, data_dir, path)
            _check_chain(env, data_dir, expected_chain_id)
        except BaseException:
            env.close()
            raise
        return cls(data_dir=data_dir, env=env, lock=None, expected_chain_id=expected_chain_id)

    def close(self) -> None:
        """Close the ledger and unlock the directory (idempotent)."""
        try:
            self._env.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------

    def append_block(
        self,
        block: Block,
        *,
        state_writes: Mapping[bytes, bytes | None] = _NO_WRITES,
        raft_index: int | None = None,
    ) -> None:
        """Append ``block`` on the tip with its state changes, atomically and durably.

        ``state_writes`` maps state keys to new values (None deletes the key);
        ``raft_index`` is the index of the Raft entry that carried the block, kept with
        it so that a restarted member knows what it has applied and a lagging one can
        be caught up from blocks (the ledger is Raft's snapshot). Raises
        BlockRejected, changing nothing, if the block does not extend the tip of this
        chain or repeats a committed transaction id. Genesis (height 0) records the
        chain id; its one entry is the network description, not a transaction.
        """
        encoded = block.encode()
        height = block.height
        height_key = _height_key(height)
        tx_ids = [] if height == 0 else [hashlib.sha256(raw).digest() for raw in block.txs]
        writes = dict(state_writes)
        for key, value in writes.items():
            _check_state_key(key)
            if value is not None and not isinstance(value, bytes):
                raise TypeError(f"state value for {key!r} must be bytes or None")

        def append(txn: Txn) -> None:
            chain_id = txn.get(_META, _META_CHAIN)
            self._check_successor(block, _read_tip(txn), chain_id)
            txn.put(_BLOCKS, height_key, encoded)
            if not txn.put(_HASHES, block.hash, height_key, overwrite=False):
                raise BlockRejected(f"block hash {block.hash.hex()} is already in the ledger")
            for index, tx_id in enumerate(tx_ids):
                if not txn.put(_TXS, tx_id, _location_value(height, index), overwrite=False):
                    raise BlockRejected(_repeated_tx(tx_id, txn.get(_TXS, tx_id), height))
            for key, value in writes.items():
                if value is None:
                    txn.delete(_STATE, key)
                else:
                    txn.put(_STATE, key, value)
            if height == 0:
                txn.put(_META, _META_CHAIN, block.hash)
            txn.put(_META, _META_TIP, height_key + block.hash)
            if raft_index is not None:
                raft_key = raft_index.to_bytes(8, "big")
                txn.put(_META, _META_RAFT_INDEX + height_key, raft_key)
                txn.put(_META, _META_APPLIED, raft_key)

        self._env.write(append)

    def _check_successor(
        self, block: Block, tip: tuple[int, bytes] | None, chain_id: bytes | None
    ) -> None:
        header = block.header
        if tip is None:
            if block.height != 0:
                raise BlockRejected(
                    f"the ledger is empty: expected the genesis block (height 0), "
                    f"got height {block.height}"
                )
            if header.chain_id != b"" or header.prev != ZERO_HASH:
                raise BlockRejected(
                    "expected a genesis block (empty chain id, zero prev hash), got chain id "
                    f"{header.chain_id.hex() or '(empty)'} and prev {header.prev.hex()}"
                )
            expected = self._expected_chain_id
            if expected is not None and block.hash != expected:
                raise BlockRejected(
                    f"expected the genesis of chain {expected.hex()}, got the genesis of "
                    f"chain {block.hash.hex()}"
                )
            return
        tip_height, tip_hash = tip
        if block.height == 0:
            raise BlockRejected(
                f"expected height {tip_height + 1}, got a genesis block: the ledger already "
                f"has the genesis of chain {(chain_id or b'').hex()}"
            )
        if header.chain_id != chain_id:
            raise BlockRejected(
                f"expected a block of chain {(chain_id or b'').hex()}, got block "
                f"{block.height} of chain {header.chain_id.hex()}"
            )
        if block.height != tip_height + 1:
            raise BlockRejected(f"expected height {tip_height + 1}, got height {block.height}")
        if header.prev != tip_hash:
            raise BlockRejected(
                f"expected block {block.height} to follow the tip {tip_hash.hex()}, "
                f"got prev {header.prev.hex()}"
            )

    # --- reading the chain -----------------------------------------------------------

    def tip(self) -> tuple[int, bytes] | None:
        """The height and hash of the last block, or None for an empty ledger."""
        return self._env.read(_read_tip)

    def applied_raft_index(self) -> int:
        """The Raft index of the entry that carried the last stored block (0: none)."""
        data = self._env.read(lambda txn: txn.get(_META, _META_APPLIED))
        return 0 if data is None else int.from_bytes(data, "big")

    def raft_index_of(self, height: int) -> int | None:
        """The Raft index of the entry that carried block ``height``, if recorded."""
        key = _META_RAFT_INDEX + _height_key(height)
        data = self._env.read(lambda txn: txn.get(_META, key))
        return None if data is None else int.from_bytes(data, "big")

    def chain_id(self) -> bytes | None:
        """The chain id (the genesis block's hash), or None before genesis."""
        return self._env.read(lambda txn: txn.get(_META, _META_CHAIN))

    def block_bytes(self, height: int) -> bytes:
        """The exact encoding of the block at ``height``; NotFound if there is none."""

        def read(txn: Txn) -> bytes:
            data = txn.get(_BLOCKS, _height_key(height)) if height >= 0 else None
            if data is None:
                raise NotFound(_no_block(height, _read_tip(txn)))
            return data

        return self._env.read(read)

    def block(self, height: int) -> Block:
        """The block at ``height``; NotFound if there is none."""
        return self._decode(self.block_bytes(height), height)

    def height_of(self, block_hash: bytes) -> int | None:
        """The height of the block with this hash, or None if it is not in the ledger."""
        if not _usable_key(block_hash):
            return None
        data = self._env.read(lambda txn: txn.get(_HASHES, block_hash))
        return None if data is None else int.from_bytes(data, "big")

    def block_by_hash(self, block_hash: bytes) -> Block:
        """The block with this hash; NotFound if it is not in the ledger."""

        def read(txn: Txn) -> tuple[int, bytes]:
            key = txn.get(_HASHES, block_hash) if _usable_key(block_hash) else None
            data = None if key is None else txn.get(_BLOCKS, key)
            if key is None or data is None:
                raise NotFound(f"no block with hash {block_hash.hex()} in this ledger")
            return int.from_bytes(key, "big"), data

        height, data = self._env.read(read)
        return self._decode(data, height)

    def tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        """The (block height, index in block) of a committed transaction, or None."""
        if not _usable_key(tx_id):
            return None
        data = self._env.read(lambda txn: txn.get(_TXS, tx_id))
        return None if data is None else _read_location(data)

    def committed_ids(self, tx_ids: Iterable[bytes]) -> set[bytes]:
        """Those of ``tx_ids`` that are committed, looked up in one read transaction."""
        wanted = [t for t in tx_ids if _usable_key(t)]
        if not wanted:
            return set()
        return self._env.read(lambda txn: {t for t in wanted if txn.get(_TXS, t) is not None})

    def blocks(self, start: int, stop: int | None = None) -> Iterator[Block]:
        """The blocks at heights ``start`` up to ``stop`` (excluded; None: the tip).

        Heights past the tip (as of this call) are not yielded. Blocks are read in
        pages, each in its own short read transaction (blocks never change once
        stored), so iterate in a worker thread, not on the event loop.
        """
        if start < 0:
            raise ValueError(f"start height must be >= 0, got {start}")
        tip = self.tip()
        end = 0 if tip is None else tip[0] + 1
        if stop is not None:
            end = min(end, stop)
        return self._iter_blocks(start, end)

    def _iter_blocks(self, start: int, end: int) -> Iterator[Block]:
        height = start
        while height < end:
            first = _height_key(height)
            stop = _height_key(min(end, height + _PAGE))

            def read(
                txn: Txn, first: bytes = first, stop: bytes = stop
            ) -> list[tuple[bytes, bytes]]:
                return txn.items(_BLOCKS, start=first, stop=stop)

            page = self._env.read(read)
            if not page:
                return
            for key, data in page:
                yield self._decode(data, int.from_bytes(key, "big"))
            height = int.from_bytes(page[-1][0], "big") + 1

    # --- application state -----------------------------------------------------------

    def state_get(self, key: bytes) -> bytes | None:
        """The state value under ``key``, or None."""
        _check_state_key(key)
        return self._env.read(lambda txn: txn.get(_STATE, key))

    def with_state(self, fn: Callable[[Callable[[bytes], bytes | None]], T]) -> T:
        """Run ``fn`` with a ``state_get`` that reads one consistent snapshot: a block's
        execution reads many keys, and one read transaction for all of them costs far
        less than one each. ``fn`` must not keep the getter past its return."""

        def run(txn: Txn) -> T:
            def get(key: bytes) -> bytes | None:
                _check_state_key(key)
                return txn.get(_STATE, key)

            return fn(get)

        return self._env.read(run, only=(_STATE,))

    def state_items(self, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """Every state pair whose key starts with ``prefix``, in key order.

        Read in one transaction, so the result is one consistent snapshot.
        """
        end = _prefix_end(prefix)
        return self._env.read(lambda txn: txn.items(_STATE, start=prefix, stop=end))

    # --- for other store modules and for metrics -------------------------------------

    def transact(self, fn: Callable[[Txn], T], *, write: bool = False) -> T:
        """Run ``fn`` in one transaction over the reserved databases (``RESERVED_DBS``).

        For Raft's log and hard state. A write commits durably when ``fn`` returns and
        keeps nothing if it raises; ``fn`` may run again if the map had to grow, so it
        must change nothing outside the transaction.
        """
        if write:
            return self._env.write(fn, only=RESERVED_DBS)
        return self._env.read(fn, only=RESERVED_DBS)

    def statistics(self) -> StoreStatistics:
        env = self._env.statistics()
        tip = self.tip()
        return StoreStatistics(
            map_size=env.map_size,
            used_bytes=env.used_bytes,
            file_bytes=env.file_bytes,
            page_size=env.page_size,
            map_growths=env.map_growths,
            tip_height=None if tip is None else tip[0],
            entries=env.entries,
        )

    def _decode(self, data: bytes, height: int) -> Block:
        try:
            block = Block.decode(data)
        except InvalidBlock as exc:
            raise StoreFormatError(
                _damaged(self.data_dir, f"block {height} does not decode: {exc}")
            ) from exc
        if block.height != height:
            raise StoreFormatError(
                _damaged(self.data_dir, f"the block stored at {height} says height {block.height}")
            )
        return block


def _open_environment(data_dir: Path, *, create: bool, map_size: int) -> LmdbEnvironment:
    """Open the environment, making an empty ledger if asked; check its format."""
    path = data_dir / LEDGER_DIR
    if not create and not (path / "data.mdb").is_file():
        raise StoreError(_not_initialized(data_dir, "holds no ledger"))
    env = LmdbEnvironment.open(path, create=create, map_size=map_size)
    try:
        if create and not env.names():
            env.open_dbs(_ALL_DBS, create=True, initialize=_write_format)
            _fsync_dir(path)
            _fsync_dir(data_dir)
            return env
        _check_existing(env, data_dir, path)
    except BaseException:
        env.close()
        raise
    return env


def _check_existing(env: LmdbEnvironment, data_dir: Path, path: Path) -> None:
    """Check an existing environment is a ledger of our format; open its databases."""
    names = env.names()
    if not names:
        raise StoreError(_not_initialized(data_dir, "holds an empty ledger"))
    if _META not in names:
        raise StoreFormatError(
            f"{path} is an LMDB environment but not a p2pledger ledger (its databases: "
            f"{', '.join(sorted(names))}); point data_dir at a node's data directory"
        )
    env.open_dbs([_META], create=False)
    found = env.read(lambda txn: txn.get(_META, _META_FORMAT))
    if found != str(FORMAT_VERSION).encode():
        shown = "none" if found is None else found.decode("ascii", "replace")
        raise StoreFormatError(
            f"the ledger in {path} has format version {shown}; this p2pledger reads "
            f"version {FORMAT_VERSION}: use the p2pledger release that wrote it"
        )
    missing = set(_ALL_DBS) - names
    if missing:
        raise StoreFormatError(
            _damaged(data_dir, f"databases {', '.join(sorted(missing))} are missing")
        )
    env.open_dbs(_ALL_DBS, create=False)


def _check_chain(env: LmdbEnvironment, data_dir: Path, expected: bytes | None) -> None:
    chain_id = env.read(lambda txn: txn.get(_META, _META_CHAIN))
    if chain_id is not None and expected is not None and chain_id != expected:
        raise StoreFormatError(
            f"the ledger in {data_dir} is of chain {chain_id.hex()}, not the expected chain "
            f"{expected.hex()}; check data_dir and network.toml in the node's configuration"
        )


def _write_format(txn: Txn) -> None:
    txn.put(_META, _META_FORMAT, str(FORMAT_VERSION).encode())


def _read_tip(txn: Txn) -> tuple[int, bytes] | None:
    data = txn.get(_META, _META_TIP)
    return None if data is None else (int.from_bytes(data[:8], "big"), data[8:])


def _height_key(height: int) -> bytes:
    """Heights as 8-byte big-endian keys, so key order is height order."""
    return height.to_bytes(8, "big")


def _location_value(height: int, index: int) -> bytes:
    return height.to_bytes(8, "big") + index.to_bytes(4, "big")


def _read_location(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[:8], "big"), int.from_bytes(data[8:12], "big")


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _usable_key(key: bytes) -> bool:
    """Whether LMDB can look ``key`` up (a hash from outside may be any length)."""
    return 0 < len(key) <= MAX_STATE_KEY_SIZE


def _check_state_key(key: bytes) -> None:
    if not isinstance(key, bytes) or not _usable_key(key):
        raise ValueError(f"a state key is 1 to {MAX_STATE_KEY_SIZE} bytes, got {key!r:.80}")


def _repeated_tx(tx_id: bytes, where: bytes | None, height: int) -> str:
    if where is not None:
        at_height, at_index = _read_location(where)
        if at_height != height:
            return (
                f"transaction {tx_id.hex()} is already committed "
                f"(block {at_height}, index {at_index}); a committed id never commits again"
            )
    return f"transaction {tx_id.hex()} appears twice in block {height}"


def _no_block(height: int, tip: tuple[int, bytes] | None) -> str:
    where = "the ledger is empty" if tip is None else f"the tip is at height {tip[0]}"
    return f"no block at height {height} ({where})"


def _not_initialized(data_dir: Path, what: str) -> str:
    return (
        f"the data directory {data_dir} {what}; run `p2pledger init` to create a node's "
        "data directory, or check data_dir in the node's configuration"
    )


def _damaged(data_dir: Path, what: str) -> str:
    return (
        f"the ledger in {data_dir} is damaged: {what}; restore it from a backup or let "
        "the node resync it from its peers"
    )


def _fsync_dir(path: Path) -> None:
    """Make a new directory entry in ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise StoreError(f"cannot open {path} to sync it: {exc}") from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise StoreError(f"cannot sync the directory {path}: {exc}") from exc
    finally:
        os.close(fd)
