"""``NodeService`` serves the membership from the node's ledger: the network in force
and its history follow a committed update, and so do fund lookups."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pledger.config import NodeConfig
from p2pledger.errors import NotFound
from p2pledger.ledger import Ledger
from p2pledger.node import Node
from p2pledger.node.service import NodeService
from tests.factory import GENESIS_TIME_MS, TestNetwork, config_update

NET = TestNetwork(n=3)
NO_FUNDS = dataclasses.replace(NET.network, funds=(), version=1)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    member = NET.network.members[0]
    cfg = NodeConfig(
        name=member.name,
        network=tmp_path / "network.toml",
        key_file=tmp_path / "unused.key",
        data_dir=tmp_path / "data",
        listen=member.address,
    )
    n = Node(cfg, network=NET.network, key=NET.node_keys[0])
    n.ledger = Ledger.create(cfg.data_dir, NET.network)
    try:
        yield n
    finally:
        n.ledger.close()


async def test_the_membership_comes_from_the_ledger(node: Node) -> None:
    service = NodeService(node)
    assert await service.network() == NET.network
    assert [r.version for r in await service.config_history()] == [0]
    assert (await service.balance("relief", b"\x00" * 32))[0] == 0
    assert node.ledger is not None
    update = config_update(
        NET.chain_id,
        NET.network,
        NO_FUNDS,
        approvers=NET.admin_keys[:2],
        submitter=NET.admin_keys[0],
    )
    block = node.ledger.propose([update], key=NET.node_keys[0], time_ms=GENESIS_TIME_MS, term=1)
    node.ledger.commit(block)
    assert await service.network() == NO_FUNDS
    assert [r.version for r in await service.config_history()] == [0, 1]
    with pytest.raises(NotFound, match="relief"):
        await service.balance("relief", b"\x00" * 32)  # the fund is gone from version 1
