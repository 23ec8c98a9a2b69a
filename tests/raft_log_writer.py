"""A child process for the Raft kill test: one core on the LMDB store, fed a seeded
stream of vote requests and appends from would-be leaders. It persists each Ready
before "sending", and prints what it promised: ``vote TERM CANDIDATE`` for a granted
vote and ``ack INDEX TERM`` for an acknowledged append (TERM: the entry's). On start
it prints what it recovered: ``state TERM VOTE LAST_INDEX``."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from p2pledger.raft import (
    AppendRequest,
    AppendResponse,
    Config,
    ConfState,
    Entry,
    RawNode,
    VoteRequest,
    VoteResponse,
)
from p2pledger.store import LedgerStore
from p2pledger.store.raft_log import RaftLog

CONF = ConfState(voters=frozenset({"a", "b", "c"}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with LedgerStore.open(args.data_dir, create=True) as store:
        log = RaftLog(store, initial_conf=CONF)
        hs = log.initial_state()
        print(f"state {hs.term} {hs.vote or '-'} {log.last_index()}", flush=True)
        node = RawNode(Config(id="a", storage=log, rng=random.Random(args.seed)))
        term = hs.term
        for _ in range(args.steps):
            term += rng.choice((0, 0, 1))
            sender = rng.choice(("b", "c"))
            last = log.last_index()
            if rng.random() < 0.3:
                node.step(
                    VoteRequest(
                        term=max(term, 1),
                        sender=sender,
                        recipient="a",
                        last_index=last + 5,
                        last_term=max(term, 1),
                        pre_vote=False,
                    )
                )
            else:
                prev = rng.randrange(max(0, last - 3), last + 1)
                prev_term = log.term(prev) if prev >= log.first_index() - 1 else 0
                count = rng.randrange(1, 4)
                node.step(
                    AppendRequest(
                        term=max(term, 1, prev_term),
                        sender=sender,
                        recipient="a",
                        prev_index=prev,
                        prev_term=prev_term,
                        commit=0,
                        entries=tuple(
                            Entry(term=max(term, 1, prev_term), index=prev + 1 + k, data=b"x" * 32)
                            for k in range(count)
                        ),
                    )
                )
            while node.has_ready():
                rd = node.ready()
                log.save(snapshot=rd.snapshot, entries=rd.entries, hard_state=rd.hard_state)
                for m in rd.messages:  # "sent" only now that the Ready is durable
                    if isinstance(m, VoteResponse) and m.granted and not m.pre_vote:
                        print(f"vote {m.term} {m.recipient}", flush=True)
                    elif isinstance(m, AppendResponse) and not m.reject:
                        print(f"ack {m.index} {log.term(m.index)}", flush=True)
                node.advance(rd)
            term = max(term, node.term)
    return 0


if __name__ == "__main__":
    sys.exit(main())
