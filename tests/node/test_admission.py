"""A member's entry path: a full mempool refuses with a retry hint and changes
nothing; duplicates and committed transactions are refused by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pledger.api.errors import MempoolFull, TxRejected, Unavailable
from p2pledger.config import NodeConfig, NodeLimits
from p2pledger.ledger import Ledger
from p2pledger.node import Node
from p2pledger.node.service import NodeService
from tests.factory import GENESIS_TIME_MS, TestNetwork

NET = TestNetwork(n=3)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    member = NET.network.members[0]
    cfg = NodeConfig(
        name=member.name,
        network=tmp_path / "network.toml",
        key_file=tmp_path / "unused.key",
        data_dir=tmp_path / "data",
        listen=member.address,
        limits=NodeLimits(mempool_max_txs=2),
    )
    n = Node(cfg, network=NET.network, key=NET.node_keys[0])
    n.ledger = Ledger.create(cfg.data_dir, NET.network)
    n._accepting = True  # as once run() has started everything
    n.mempool.add(NET.tx(1))
    try:
        yield n
    finally:
        n.ledger.close()


async def test_a_full_mempool_refuses_with_retry_after_and_changes_nothing(node: Node) -> None:
    node.mempool.add(NET.tx(2))
    before = node.mempool.ids()
    with pytest.raises(MempoolFull) as info:
        await NodeService(node).submit(NET.tx(3).raw)
    assert info.value.retry_after_s > 0
    assert node.mempool.ids() == before


async def test_pending_and_committed_transactions_are_refused_by_name(node: Node) -> None:
    service = NodeService(node)
    with pytest.raises(TxRejected) as pending:
        await service.submit(NET.tx(1).raw)
    assert pending.value.reason == "already_pending"
    assert node.ledger is not None
    committed = NET.tx(9)
    block = node.ledger.propose([committed], key=NET.node_keys[0], time_ms=GENESIS_TIME_MS, term=1)
    node.ledger.commit(block)
    with pytest.raises(TxRejected) as done:
        await service.submit(committed.raw)
    assert done.value.reason == "already_committed"
    assert len(node.mempool) == 1


async def test_a_member_that_is_stopping_refuses_new_work(node: Node) -> None:
    node._accepting = False
    with pytest.raises(Unavailable, match="shutting down") as info:
        await NodeService(node).submit(NET.tx(5).raw)
    assert info.value.code == "shutting_down"  # not "mempool_full": the client must know
