"""One process per data directory: an exclusive lock held for the store's lifetime.

LMDB's own lock file lets many processes share an environment, and opening one
environment twice in the same process corrupts it. A node's ledger must have exactly
one writer, so the store takes a non-blocking ``flock`` on a lock file in the data
directory first, and records its pid there so the refusal can name the holder.
``flock`` locks belong to the open file, so a second open in the same process is
refused too, and the kernel drops the lock when the holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from p2pledger.errors import StoreError, StoreLocked

__all__ = ["DirectoryLock"]


class DirectoryLock:
    """An exclusive, non-blocking ``flock`` on ``path``; release it with ``release``."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path) -> DirectoryLock:
        """Take the lock or raise StoreLocked naming the process that holds it."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot open the lock file {path}: {exc.strerror}; "
                "check the data directory's owner and permissions"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            raise StoreLocked(_locked_message(path, holder)) from exc
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot write the lock file {path}: {exc.strerror}") from exc
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays: deleting it would race."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # the pid is only a hint for messages
            os.ftruncate(fd, 0)
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _locked_message(path: Path, holder: int | None) -> str:
    directory = path.parent
    if holder == os.getpid():
        return (
            f"the data directory {directory} is already open in this process "
            f"(pid {holder}); use the open store instead of opening it twice"
        )
    who = f"process {holder}" if holder is not None else "another process"
    return (
        f"the data directory {directory} is in use by {who} (lock file {path}); "
        "stop that node before opening its ledger, or use another data directory"
    )
