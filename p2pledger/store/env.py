"""The LMDB environment under the store: the one module of p2pledger that imports lmdb.

It owns what every user of the environment needs and should not redo: opening named
databases, running a function inside one read or one durable write transaction,
growing the memory map when a write finds it full, and translating lmdb's
exceptions into ``StoreError`` subclasses at this edge. Schemas live in the modules
that use it (``ledger``, and later Raft's log), which see a transaction only through
``Txn`` and never hold one beyond a single call.

Growing the map (``mdb_env_set_mapsize``) is only allowed while no transaction of
this process is open, and the daemon runs reads in worker threads, so transactions
pass through a gate: any number at once, or one resize alone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, TypeVar

import lmdb

from p2pledger.errors import StoreError, StoreFormatError

__all__ = ["MAX_MAP_SIZE", "EnvStatistics", "LmdbEnvironment", "Txn"]

T = TypeVar("T")

#: The map never grows past this (1 TiB of address space, not of disk).
MAX_MAP_SIZE: Final = 1 << 40
#: The smallest map accepted; LMDB needs a few pages for its own bookkeeping.
MIN_MAP_SIZE: Final = 256 * 1024
_MAX_DBS: Final = 16
_DATA_FILE: Final = "data.mdb"
# lmdb errors meaning "these files are not a (healthy) LMDB environment".
_FORMAT_ERRORS: Final = (
    lmdb.InvalidError,
    lmdb.VersionMismatchError,
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.IncompatibleError,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvStatistics:
    """Sizes of the environment, for metrics."""

    map_size: int
    used_bytes: int
    file_bytes: int
    page_size: int
    map_growths: int
    entries: Mapping[str, int]


class Txn:
    """An open transaction seen through named databases.

    Valid only inside the function it is passed to. Keys and values are bytes; keys
    are ordered bytewise.
    """

    def __init__(
        self, txn: lmdb.Transaction[bytes], dbs: Mapping[str, lmdb._Database], *, write: bool
    ) -> None:
        self._txn = txn
        self._dbs = dbs
        self._write = write

    def get(self, db: str, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._db(db))

    def put(self, db: str, key: bytes, value: bytes, *, overwrite: bool = True) -> bool:
        """Store ``value``; with ``overwrite=False`` keep an existing one and return False."""
        self._check_write()
        return self._txn.put(key, value, db=self._db(db), overwrite=overwrite)

    def delete(self, db: str, key: bytes) -> bool:
        """Remove ``key``; return whether it was there."""
        self._check_write()
        return self._txn.delete(key, db=self._db(db))

    def items(
        self, db: str, *, start: bytes = b"", stop: bytes | None = None, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        """Pairs with ``start <= key < stop`` in key order, at most ``limit`` of them."""
        out: list[tuple[bytes, bytes]] = []
        if limit is not None and limit <= 0:
            return out
        with self._txn.cursor(db=self._db(db)) as cursor:
            found = cursor.set_range(start) if start else cursor.first()
            while found:
                key = cursor.key()
                if stop is not None and key >= stop:
                    break
                out.append((key, cursor.value()))
                if limit is not None and len(out) >= limit:
                    break
                found = cursor.next()
        return out

    def first(self, db: str) -> tuple[bytes, bytes] | None:
        with self._txn.cursor(db=self._db(db)) as cursor:
            return cursor.item() if cursor.first() else None

    def last(self, db: str) -> tuple[bytes, bytes] | None:
        with self._txn.cursor(db=self._db(db)) as cursor:
            return cursor.item() if cursor.last() else None

    def delete_range(self, db: str, *, start: bytes = b"", stop: bytes | None = None) -> int:
        """Remove every key with ``start <= key < stop``; return how many."""
        self._check_write()
        removed = 0
        with self._txn.cursor(db=self._db(db)) as cursor:
            found = cursor.set_range(start) if start else cursor.first()
            while found and (stop is None or cursor.key() < stop):
                cursor.delete()  # moves to the next key
                removed += 1
                found = cursor.key() != b""
        return removed

    def count(self, db: str) -> int:
        return self._txn.stat(self._db(db))["entries"]

    def _db(self, name: str) -> lmdb._Database:
        try:
            return self._dbs[name]
        except KeyError:
            raise ValueError(
                f"database {name!r} is not open to this transaction (open: {sorted(self._dbs)})"
            ) from None

    def _check_write(self) -> None:
        if not self._write:
            raise ValueError("this is a read transaction; ask for a write transaction to write")


class LmdbEnvironment:
    """An open LMDB environment with named databases; safe to share between threads."""

    def __init__(self, env: lmdb.Environment, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._env: lmdb.Environment | None = env
        self._dbs: dict[str, lmdb._Database] = {}
        self._gate = _Gate()
        self._write_lock = threading.Lock()
        self._growths = 0

    @classmethod
    def open(
        cls, path: Path, *, create: bool, map_size: int, readonly: bool = False
    ) -> LmdbEnvironment:
        """Open (with ``create``, make) the environment in directory ``path``.

        ``map_size`` is where the map starts; an existing environment keeps at least
        the size its data needs. Synced commits are LMDB's default and are kept.
        ``readonly`` opens for reading beside a live writer in another process (LMDB
        readers never block or see a partial write).
        """
        if not MIN_MAP_SIZE <= map_size <= MAX_MAP_SIZE:
            raise ValueError(f"map size must be between {MIN_MAP_SIZE} and {MAX_MAP_SIZE} bytes")
        page = os.sysconf("SC_PAGE_SIZE")
        if create:
            # made here because lmdb would make it with the files' mode (no x bit)
            try:
                path.mkdir(mode=0o700, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the directory {path}: {exc}") from exc
        with _translated(f"opening the LMDB environment {path}", path):
            env = lmdb.open(
                str(path),
                map_size=-(-map_size // page) * page,
                subdir=True,
                create=create and not readonly,
                readonly=readonly,
                mode=0o600,
                max_dbs=_MAX_DBS,
                sync=True,
                metasync=True,
            )
        try:
            with _translated(f"checking the LMDB environment {path}", path):
                env.reader_check()  # forget readers of processes that died
        except BaseException:
            env.close()
            raise
        return cls(env, path, readonly=readonly)

    def names(self) -> frozenset[str]:
        """The named databases the environment holds."""

        def read(txn: lmdb.Transaction[bytes]) -> frozenset[str]:
            with txn.cursor() as cursor:
                return frozenset(
                    key.decode("utf-8", "replace") for key in cursor.iternext(True, False)
                )

        return self._raw(read, write=False, action="listing databases")

    def open_dbs(
        self,
        names: Iterable[str],
        *,
        create: bool,
        initialize: Callable[[Txn], None] | None = None,
    ) -> None:
        """Open handles on named databases (creating them if ``create``).

        ``initialize`` runs in the same write transaction, so new databases and
        their first records appear together or not at all.
        """
        names = list(names)

        def open_all(txn: lmdb.Transaction[bytes]) -> None:
            env = self._require_open()
            opened = {name: env.open_db(name.encode(), txn=txn, create=create) for name in names}
            if initialize is not None:
                initialize(Txn(txn, opened, write=True))
            self._dbs.update(opened)

        if not self.readonly:
            self._raw(open_all, write=True, action="opening databases")
            return
        # py-lmdb opens handles of a read-only environment in its own transaction.
        with self._gate.shared(), _translated("opening databases", self.path):
            env = self._require_open()
            self._dbs.update({name: env.open_db(name.encode(), create=False) for name in names})

    def read(self, fn: Callable[[Txn], T], *, only: Iterable[str] | None = None) -> T:
        """Run ``fn`` in one read transaction (a consistent snapshot)."""
        dbs = self._view(only)
        return self._raw(lambda txn: fn(Txn(txn, dbs, write=False)), write=False, action="reading")

    def write(self, fn: Callable[[Txn], T], *, only: Iterable[str] | None = None) -> T:
        """Run ``fn`` in one durable write transaction and commit it; return its result.

        If ``fn`` raises, nothing it wrote is kept. If the map is full, the map is
        grown and ``fn`` runs again from the start in a fresh transaction, so ``fn``
        must not change anything outside the transaction.
        """
        dbs = self._view(only)
        with self._write_lock:
            while True:
                try:
                    return self._raw(
                        lambda txn: fn(Txn(txn, dbs, write=True)), write=True, action="writing"
                    )
                except lmdb.MapFullError:
                    self._grow()

    def statistics(self) -> EnvStatistics:
        def entries(txn: lmdb.Transaction[bytes]) -> dict[str, int]:
            return {name: txn.stat(db)["entries"] for name, db in self._dbs.items()}

        counts = self._raw(entries, write=False, action="reading statistics")
        with self._gate.shared():
            env = self._require_open()
            with _translated("reading statistics", self.path):
                info = env.info()
                stat = env.stat()
        try:
            file_bytes = (self.path / _DATA_FILE).stat().st_size
        except OSError:
            file_bytes = 0
        return EnvStatistics(
            map_size=info["map_size"],
            used_bytes=(info["last_pgno"] + 1) * stat["psize"],
            file_bytes=file_bytes,
            page_size=stat["psize"],
            map_growths=self._growths,
            entries=MappingProxyType(counts),
        )

    def close(self) -> None:
        """Close the environment once no call is using it (idempotent)."""
        with self._write_lock, self._gate.exclusive():
            env, self._env = self._env, None
            if env is not None:
                env.close()

    def _view(self, only: Iterable[str] | None) -> Mapping[str, lmdb._Database]:
        if only is None:
            return self._dbs
        return {name: self._dbs[name] for name in only}

    def _raw(self, fn: Callable[[lmdb.Transaction[bytes]], T], *, write: bool, action: str) -> T:
        """Run ``fn`` in a transaction; map errors except MapFullError (``write`` retries)."""
        while True:
            try:
                with self._gate.shared():
                    env = self._require_open()
                    with _translated(action, self.path), env.begin(write=write) as txn:
                        return fn(txn)
            except lmdb.MapResizedError:
                # Another process (the live writer) grew the map: adopt its size.
                with self._gate.exclusive(), _translated("adopting the map size", self.path):
                    self._require_open().set_mapsize(0)

    def _grow(self) -> None:
        with self._gate.exclusive():
            env = self._require_open()
            with _translated("growing the map", self.path):
                size = env.info()["map_size"]
                if size >= MAX_MAP_SIZE:
                    raise StoreError(
                        f"the ledger in {self.path} needs more than {MAX_MAP_SIZE} bytes of map"
                    )
                env.set_mapsize(min(size * 2, MAX_MAP_SIZE))
            self._growths += 1

    def _require_open(self) -> lmdb.Environment:
        if self._env is None:
            raise StoreError(f"the store at {self.path} is closed")
        return self._env


@contextmanager
def _translated(action: str, path: Path) -> Iterator[None]:
    """Turn lmdb's exceptions into StoreError subclasses; let through the two that
    callers handle (MapFullError: grow; MapResizedError: adopt the writer's size)."""
    try:
        yield
    except (lmdb.MapFullError, lmdb.MapResizedError):
        raise
    except _FORMAT_ERRORS as exc:
        raise StoreFormatError(
            f"{action}: the files in {path} are damaged or not an LMDB environment ({exc}); "
            "restore the data directory from a backup or let the node resync it"
        ) from exc
    except lmdb.Error as exc:
        raise StoreError(f"{action} in {path}: {exc}") from exc


class _Gate:
    """Many transactions at once, or one map resize (or close) alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if not self._active:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._exclusive = True
            self._cond.wait_for(lambda: not self._active)
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()
