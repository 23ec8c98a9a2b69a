"""Throughput of the pure Raft core: committed entries per second.

Three members in one process, an in-memory network that delivers at once, and
``MemoryStorage``: no disk, no sockets, no codec (unless ``--codec``), so the figure is
the ceiling the core itself imposes, not what a daemon will reach. The leader keeps
``--window`` proposals in flight and an entry counts when the leader has applied it.

    .venv/bin/python -m tests.raft.bench_core            # 1 KiB and 256 KiB entries
    .venv/bin/python -m tests.raft.bench_core --codec    # also encode/decode messages
"""

from __future__ import annotations

import argparse
import random
import time
from collections import deque
from dataclasses import dataclass

from p2pledger import codec
from p2pledger.raft import (
    Config,
    ConfState,
    MemoryStorage,
    Message,
    RawNode,
    Role,
    message_from_value,
)

__all__ = ["BenchResult", "bench", "main"]

IDS = ("n1", "n2", "n3")


@dataclass(frozen=True, slots=True)
class BenchResult:
    entry_bytes: int
    entries: int
    seconds: float
    codec: bool

    @property
    def per_second(self) -> float:
        return self.entries / self.seconds

    @property
    def mib_per_second(self) -> float:
        return self.per_second * self.entry_bytes / (1 << 20)

    def __str__(self) -> str:
        size = f"{self.entry_bytes // 1024} KiB"
        wire = " +codec" if self.codec else ""
        return (
            f"{size:>8} entries{wire}: {self.per_second:10,.0f} committed/s "
            f"({self.mib_per_second:8,.1f} MiB/s; {self.entries} in {self.seconds:.2f}s)"
        )


def bench(
    entry_bytes: int, entries: int, *, window: int = 64, use_codec: bool = False
) -> BenchResult:
    """Commit ``entries`` entries of ``entry_bytes`` bytes on a 3-member cluster."""
    conf = ConfState(voters=frozenset(IDS))
    storages = {i: MemoryStorage(conf) for i in IDS}
    nodes = {
        i: RawNode(
            Config(id=i, storage=storages[i], rng=random.Random(i), max_committed_bytes=1 << 30)
        )
        for i in IDS
    }
    queue: deque[Message] = deque()
    applied = dict.fromkeys(IDS, 0)

    def drain(member: str) -> None:
        node = nodes[member]
        while node.has_ready():
            rd = node.ready()
            storages[member].save(
                snapshot=rd.snapshot, entries=rd.entries, hard_state=rd.hard_state
            )
            for m in rd.messages:
                if use_codec:
                    wire = codec.encode(m.to_value(), limits=LIMITS)
                    queue.append(message_from_value(codec.decode(wire, limits=LIMITS)))
                else:
                    queue.append(m)
            applied[member] += len(rd.committed_entries)
            node.advance(rd)

    def pump() -> None:
        while queue:
            m = queue.popleft()
            nodes[m.recipient].step(m)
            drain(m.recipient)

    leader = nodes["n1"]
    leader.campaign()
    drain("n1")
    pump()
    assert leader.role is Role.LEADER
    payload = bytes(entry_bytes)
    base = applied["n1"]
    proposed = 0
    started = time.perf_counter()
    while applied["n1"] - base < entries:
        while proposed < entries and proposed - (applied["n1"] - base) < window:
            leader.propose(payload)
            proposed += 1
        drain("n1")
        pump()
    took = time.perf_counter() - started
    assert min(applied.values()) >= base  # followers applied too
    return BenchResult(entry_bytes=entry_bytes, entries=entries, seconds=took, codec=use_codec)


LIMITS = codec.CodecLimits(max_size=1 << 30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Raft core throughput (no I/O)")
    parser.add_argument("--codec", action="store_true", help="round-trip every message too")
    parser.add_argument("--small", type=int, default=50_000, help="1 KiB entries to commit")
    parser.add_argument("--large", type=int, default=2_000, help="256 KiB entries to commit")
    args = parser.parse_args(argv)
    for use_codec in (False, True) if args.codec else (False,):
        print(bench(1024, args.small, use_codec=use_codec))
        print(bench(256 * 1024, args.large, use_codec=use_codec))


if __name__ == "__main__":
    main()
