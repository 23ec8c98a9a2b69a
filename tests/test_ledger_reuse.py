"""A proposer commits its own block without executing it again, and validation takes
already decoded transactions; anything that does not match is done in full."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from p2pledger import replay
from p2pledger.chain import Transaction, validate_block
from p2pledger.chain import tx as tx_module
from p2pledger.ledger import Ledger, NotPipelinable
from p2pledger.state import ApplyOutcome
from tests.factory import GENESIS_TIME_MS, TestNetwork

NET = TestNetwork(n=3)


@pytest.fixture
def executions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the executions of a block's transactions (proposal or commit)."""
    calls: list[int] = []
    real = replay.execute

    def counting(*args: Any, **kwargs: Any) -> ApplyOutcome:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(replay, "execute", counting)
    return calls


def txs(first: int, count: int = 3) -> list[Transaction]:
    return [NET.tx(n) for n in range(first, first + count)]


def test_the_proposer_commits_its_own_block_without_executing_it_again(
    tmp_path: Path, executions: list[int]
) -> None:
    with (
        Ledger.create(tmp_path / "a", NET.network) as mine,
        Ledger.create(tmp_path / "b", NET.network) as other,
    ):
        block, proposed = mine.execute_proposal(
            txs(1), key=NET.node_keys[0], time_ms=GENESIS_TIME_MS + 1000, term=1
        )
        assert len(executions) == 1
        committed = mine.commit(block)
        assert len(executions) == 1  # reused
        assert committed is proposed
        other.commit(block)  # a follower executes it
        assert len(executions) == 2
        assert mine.store.state_items() == other.store.state_items()


@pytest.mark.parametrize("mismatch", ["parent", "network"])
def test_a_cached_execution_that_does_not_match_is_not_used(
    tmp_path: Path, executions: list[int], mismatch: str
) -> None:
    """A cached outcome for another parent (or membership) is ignored: the block is
    executed in full, so a bogus cached outcome cannot reach the store."""
    with (
        Ledger.create(tmp_path / "a", NET.network) as mine,
        Ledger.create(tmp_path / "b", NET.network) as other,
    ):
        block, proposed = mine.execute_proposal(
            txs(1), key=NET.node_keys[0], time_ms=GENESIS_TIME_MS + 1000, term=1
        )
        bogus = dataclasses.replace(proposed, writes={b"bogus": b"state"})
        entry = mine._executed[block.hash]
        if mismatch == "parent":
            entry = dataclasses.replace(entry, parent_hash=b"\x01" * 32, outcome=bogus)
        else:
            entry = dataclasses.replace(
                entry, network=dataclasses.replace(NET.network), outcome=bogus
            )
        mine._executed[block.hash] = entry
        committed = mine.commit(block)
        assert len(executions) == 2  # executed again
        assert committed is not bogus and committed.writes == proposed.writes
        other.commit(block)
        assert mine.store.state_items() == other.store.state_items()
        assert mine.state_view().get(b"bogus") is None


def test_validation_uses_known_transactions_only_when_their_bytes_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocks = list(NET.chain(1, txs_per_block=3))
    genesis, block = blocks
    decoded = [Transaction.decode(raw) for raw in block.txs]
    impostor = NET.tx(99)
    decodes: list[int] = []
    real = Transaction.decode.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Transaction], raw: bytes, **kwargs: Any) -> Transaction:
        decodes.append(1)
        return real(cls, raw, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(tx_module.Transaction, "decode", classmethod(counting))
    known = {t.id: t for t in decoded}
    out = validate_block(
        block,
        parent=genesis.header,
        parent_hash=genesis.hash,
        network=NET.network,
        known=known.get,
    )
    assert decodes == [] and all(a is b for a, b in zip(out, decoded, strict=True))

    # a "known" transaction under the right id but with other bytes is not taken
    wrong = {t.id: impostor for t in decoded}
    out = validate_block(
        block,
        parent=genesis.header,
        parent_hash=genesis.hash,
        network=NET.network,
        known=wrong.get,
    )
    assert len(decodes) == 3 and [t.raw for t in out] == list(block.txs)


def test_a_block_built_on_a_pending_one_commits_without_executing_again(
    tmp_path: Path, executions: list[int]
) -> None:
    """Pipelining: block 2 is executed on block 1's pending state; both commit in order
    on the proposer without executing again, and a follower computes the same."""
    with (
        Ledger.create(tmp_path / "a", NET.network) as mine,
        Ledger.create(tmp_path / "b", NET.network) as other,
    ):
        key = NET.node_keys[0]
        b1, _ = mine.execute_proposal(txs(1), key=key, time_ms=GENESIS_TIME_MS + 1000, term=1)
        b2, _ = mine.execute_proposal(
            txs(10), key=key, time_ms=GENESIS_TIME_MS + 2000, term=1, after=b1.hash
        )
        assert b2.header.prev == b1.hash and b2.height == 2
        assert len(executions) == 2
        mine.commit(b1)
        mine.commit(b2)
        assert len(executions) == 2
        other.commit(b1)
        other.commit(b2)  # verdicts and state root as computed on the pending state
        assert mine.store.state_items() == other.store.state_items()


def test_building_on_an_unknown_block_is_refused(tmp_path: Path) -> None:
    with Ledger.create(tmp_path / "a", NET.network) as mine, pytest.raises(NotPipelinable):
        mine.execute_proposal(
            txs(1), key=NET.node_keys[0], time_ms=GENESIS_TIME_MS, term=1, after=b"\x02" * 32
        )
