"""A child process for crash tests: commits executed blocks through ``Ledger`` and
prints each height once it is durable. Blocks are deterministic, so a restarted
writer continues the same chain from whatever tip survived."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from p2pledger.ledger import Ledger
from tests.factory import GENESIS_TIME_MS, TestNetwork

NET = TestNetwork(n=3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--txs", type=int, default=20)
    args = parser.parse_args()
    ledger = (
        Ledger.open(args.data_dir)
        if args.data_dir.exists()
        else Ledger.create(args.data_dir, NET.network)
    )
    with ledger:
        print(f"resume {ledger.tip.height}", flush=True)
        for height in range(ledger.tip.height + 1, args.blocks + 1):
            txs = [NET.tx(height * 1000 + i, user=i % NET.n) for i in range(args.txs)]
            block = ledger.propose(
                txs, key=NET.node_keys[height % NET.n], time_ms=GENESIS_TIME_MS + height, term=1
            )
            ledger.commit(block)
            print(height, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
