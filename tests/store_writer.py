"""A separate process that uses a ledger store, for the crash and lock tests.

``python -m tests.store_writer append DATA_DIR --blocks N`` opens (creating) the
store, skips the blocks it already holds, and appends the rest of
``TestNetwork().chain(N, txs)`` (made up front). Each block carries state writes: ``height`` (the
block's height) and a filler value, so the map grows while the test kills us. It
prints ``resume H`` first, then each height once ``append_block`` has returned: a
printed height is an acknowledged, durable block.

``python -m tests.store_writer hold DATA_DIR`` opens the store, prints ``open PID``
and keeps it open until its stdin closes.

A StoreError ends the process with status 3 and ``ClassName: message`` on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from p2pledger.errors import StoreError
from p2pledger.store import LedgerStore
from tests.factory import TestNetwork

FILLER_SIZE = 2048


def filler(height: int) -> bytes:
    """Deterministic bytes for a height, so the test can check them."""
    seed = hashlib.sha256(height.to_bytes(8, "big")).digest()
    return (seed * (FILLER_SIZE // len(seed) + 1))[:FILLER_SIZE]


def state_writes(height: int) -> dict[bytes, bytes | None]:
    return {b"height": str(height).encode(), b"fill/%08d" % height: filler(height)}


def append(data_dir: Path, blocks: int, txs: int, map_size: int) -> None:
    with LedgerStore.open(data_dir, create=True, initial_map_size=map_size) as store:
        tip = store.tip()
        start = 0 if tip is None else tip[0] + 1
        # made before appending, so a kill lands in append_block more often than not
        todo = [b for b in TestNetwork().chain(blocks, txs) if b.height >= start]
        print(f"resume {start - 1}", flush=True)
        for block in todo:
            store.append_block(block, state_writes=state_writes(block.height))
            print(block.height, flush=True)


def hold(data_dir: Path) -> None:
    with LedgerStore.open(data_dir, create=True):
        print(f"open {os.getpid()}", flush=True)
        sys.stdin.read()


def read(data_dir: Path) -> None:
    """Open read-only beside a live writer; print the tip each time stdin says so."""
    with LedgerStore.open(data_dir, readonly=True) as store:
        for _ in sys.stdin:
            tip = store.tip()
            print("tip", -1 if tip is None else tip[0], flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["append", "hold", "read"])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--txs", type=int, default=3)
    parser.add_argument("--map-size", type=int, default=256 * 1024)
    args = parser.parse_args()
    try:
        if args.mode == "append":
            append(args.data_dir, args.blocks, args.txs, args.map_size)
        elif args.mode == "read":
            read(args.data_dir)
        else:
            hold(args.data_dir)
    except StoreError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
