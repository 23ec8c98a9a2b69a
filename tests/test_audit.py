"""The offline audit replays a chain from genesis and names the first bad block."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import time
from pathlib import Path

import pytest

from p2pledger.audit import audit_blocks, audit_data_dir
from p2pledger.chain import VALID, Block, TxResult, build_block
from p2pledger.errors import InvalidBlock
from p2pledger.ledger import Ledger
from p2pledger.replay import propose_block
from p2pledger.state import MemoryState
from tests.factory import GENESIS_TIME_MS, TestNetwork
from tests.procs import LINE_TIMEOUT, Lines, start_module, stop

NET = TestNetwork(n=3)


def good_chain(heights: int) -> list[Block]:
    state = MemoryState()
    chain = [NET.genesis]
    for h in range(1, heights + 1):
        txs = [NET.tx(h * 10 + i, user=i % 3) for i in range(3)]
        parent = chain[-1]
        block, outcome = propose_block(
            state,
            txs,
            parent=parent.header,
            parent_hash=parent.hash,
            network=NET.network,
            time_ms=GENESIS_TIME_MS + h,
            term=1,
            proposer=NET.node_keys[h % 3],
        )
        state.apply(outcome.writes)
        chain.append(block)
    return chain


def resealed(parent: Block, like: Block, **changes: object) -> Block:
    """A block like ``like`` on ``parent`` with some contents changed, correctly
    signed and rooted, so only the deeper check can catch it."""
    fields = {
        "txs": list(like.txs),
        "results": list(like.results),
        "state_root": like.header.state_root,
        **changes,
    }
    return build_block(
        parent=parent.header,
        parent_hash=parent.hash,
        txs=fields["txs"],  # type: ignore[arg-type]
        results=fields["results"],
        state_root=fields["state_root"],  # type: ignore[arg-type]
        time_ms=like.header.time_ms,
        term=1,
        membership_version=0,
        proposer=NET.node_keys[0],
    )


def test_a_good_chain_passes_with_counts() -> None:
    chain = good_chain(4)
    report = audit_blocks(chain, workers=2)
    assert report.ok, report.error
    assert (report.height, report.blocks, report.transactions) == (4, 5, 12)
    assert report.valid == 12
    assert report.tip_hash == chain[-1].hash
    assert report.chain_id == NET.chain_id


def test_wrong_verdict_is_caught_by_re_execution() -> None:
    chain = good_chain(3)
    results = list(chain[2].results)
    results[1] = TxResult(False, "overdraft")
    chain[2] = resealed(chain[1], chain[2], results=results)
    report = audit_blocks(chain[:3])
    assert report.error is not None
    assert (report.error.reason, report.error.height) == ("wrong_results", 2)
    assert report.height == 1  # the last good block


def test_wrong_state_root_is_a_divergence() -> None:
    chain = good_chain(2)
    chain[2] = resealed(chain[1], chain[2], state_root=bytes(32))
    report = audit_blocks(chain)
    assert report.error is not None
    assert report.error.reason == "state_divergence"


def test_a_transaction_committed_twice_across_blocks_is_caught() -> None:
    chain = good_chain(2)
    again = chain[1].txs[0]
    dup = resealed(chain[2], chain[2], txs=[again], results=[VALID])
    report = audit_blocks([*chain, dup])
    assert report.error is not None
    assert report.error.reason == "duplicate_tx"
    assert "already committed at height 1" in report.error.detail
    assert report.error.height == 3


def test_empty_input_is_refused() -> None:
    with pytest.raises(InvalidBlock, match="no genesis"):
        audit_blocks([])


def test_audit_data_dir_checks_the_store_and_its_indexes(tmp_path: Path) -> None:
    # (Reading beside a live writer in another process: tests/test_store.py.)
    with Ledger.create(tmp_path / "d", NET.network) as ledger:
        for block in good_chain(3)[1:]:
            ledger.commit(block)
    report = audit_data_dir(tmp_path / "d")
    assert report.ok, report.error
    assert report.height == 3


def test_audit_report_is_frozen() -> None:
    report = audit_blocks(good_chain(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.height = 9  # type: ignore[misc]


def test_a_ledger_killed_mid_write_audits_clean_after_each_restart(tmp_path: Path) -> None:
    """SIGKILL a committing writer at several points, restart it each time, and check
    that nothing acknowledged was lost and the whole ledger passes the audit."""
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    data = tmp_path / "d"
    acknowledged = 0
    for kill_after in (1, 4, 9, rng.randrange(10, 25)):
        proc = start_module("tests.ledger_writer", str(data), "--blocks", "40")
        try:
            lines = Lines(proc)
            deadline = time.monotonic() + LINE_TIMEOUT
            resumed = lines.next(deadline)
            assert resumed is not None and resumed.startswith("resume "), stop(proc)
            assert int(resumed.split()[1]) >= acknowledged, f"lost blocks (seed {seed})"
            seen = 0
            while seen < kill_after:
                line = lines.next(deadline)
                assert line is not None, stop(proc)
                acknowledged = int(line)
                seen += 1
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            stop(proc)
        report = audit_data_dir(data)
        assert report.ok, f"{report.error} (seed {seed})"
        assert report.height >= acknowledged, f"acknowledged {acknowledged} lost (seed {seed})"
