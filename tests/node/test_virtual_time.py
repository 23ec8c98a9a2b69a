"""The runtime's one seam: three members in one trio run, on MockClock, over
in-memory streams, with seeded randomness and a fake wall clock. A transaction
submitted to a follower commits on all three with identical blocks.

LMDB work runs in worker threads. The clock jumps only once every task has been idle
for 50 ms of real time, so a disk write is never mistaken for idleness (which would
let election timeouts fire during fsyncs); two runs of one seed therefore agree on
the outcome but not always on the exact schedule."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from p2pledger.config import NodeConfig, NodeLimits
from p2pledger.ledger import Ledger
from p2pledger.node import Environment, Node, NodeSettings
from tests.factory import GENESIS_TIME_MS, TestNetwork
from tests.node.memnet import MemoryNetwork


async def run_network(tmp: Path, seed: int, worker_threads: bool = True) -> list[list[bytes]]:
    net = TestNetwork(n=3)
    memnet = MemoryNetwork()
    wall = iter(range(GENESIS_TIME_MS, GENESIS_TIME_MS + 10**9, 7))
    nodes = []
    for i, member in enumerate(net.network.members):
        cfg = NodeConfig(
            name=member.name,
            network=tmp / "network.toml",
            key_file=tmp / f"{member.name}.key",
            data_dir=tmp / member.name / "data",
            listen=member.address,
            limits=NodeLimits(worker_threads=worker_threads),
        )
        env = Environment(net=memnet, rng=random.Random(seed * 10 + i), wall_ms=lambda: next(wall))
        nodes.append(
            Node(
                cfg,
                env=env,
                settings=NodeSettings(serve_api=False),
                network=net.network,
                key=net.node_keys[i],
            )
        )
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        with trio.fail_after(60):
            while not all(n.healthy() for n in nodes):
                await trio.sleep(0.1)
            leader = nodes[0].ordering.statistics().lead  # type: ignore[union-attr]
            follower = next(n for n in nodes if n.name != leader)
            ids = [await follower.submit(net.tx(k, user=k % 3).raw) for k in range(1, 6)]
            # One waiter for the batch on each member: it returns only once every
            # one is in that member's ledger.
            for node in nodes:
                await node.wait_all_committed(ids)
                assert node.ledger is not None
                assert node.ledger.store.committed_ids(ids) == set(ids), node.name
                await node.wait_committed(ids[0])  # already committed: at once
            with trio.move_on_after(1) as waited:  # never sent: the caller's timeout ends it
                await follower.wait_all_committed([*ids, bytes(32)])
            assert waited.cancelled_caught
            assert not any(n._waiters for n in nodes), "a waiter was left behind"
        chains = []
        for node in nodes:
            assert node.ledger is not None
            chains.append([b.hash for b in node.ledger.store.blocks(0)])
        for node in nodes:
            node.stop()
        for node in nodes:
            await node.wait_stopped()
    return chains


@pytest.mark.parametrize("worker_threads", [True, False], ids=["threads", "in-loop"])
def test_three_members_on_mock_clock_commit_and_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker_threads: bool
) -> None:
    seed = 7
    offloaded: list[str] = []
    original = trio.to_thread.run_sync

    async def recording(fn: Any, *args: Any, **kwargs: Any) -> Any:
        offloaded.append(getattr(fn, "__qualname__", repr(fn)))
        return await original(fn, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", recording)
    clock = trio.testing.MockClock(autojump_threshold=0.05)
    chains = trio.run(run_network, tmp_path / "a", seed, worker_threads, clock=clock)
    assert len(chains[0]) >= 2, "no block was committed"
    assert chains[0] == chains[1] == chains[2]
    # checks, building and applying blocks run in threads only when asked to
    ordering_work = {"Node._build", "Node._apply_sync", "Verifier.check.<locals>.work"}
    assert (ordering_work <= set(offloaded)) is worker_threads, sorted(set(offloaded))
    assert ordering_work.isdisjoint(offloaded) is not worker_threads


async def wiped_member_catches_up(
    tmp: Path, worker_threads: bool = True
) -> tuple[list[bytes], list[bytes], int]:
    """Commit enough that the leader compacts its Raft log, wipe a follower, and let
    it come back: it must catch up by fetching blocks (the ledger is the snapshot)."""
    net = TestNetwork(n=3)
    memnet = MemoryNetwork()
    settings = NodeSettings(serve_api=False, raft_keep_entries=4)

    def make(i: int) -> Node:
        member = net.network.members[i]
        cfg = NodeConfig(
            name=member.name,
            network=tmp / "network.toml",
            key_file=tmp / "unused.key",
            data_dir=tmp / member.name / "data",
            listen=member.address,
            limits=NodeLimits(worker_threads=worker_threads),
        )
        env = Environment(net=memnet, rng=random.Random(100 + i))
        return Node(cfg, env=env, settings=settings, network=net.network, key=net.node_keys[i])

    nodes = [make(i) for i in range(3)]
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        with trio.fail_after(120):
            while not all(n.healthy() for n in nodes):
                await trio.sleep(0.1)
            lead = nodes[0].ordering.statistics().lead  # type: ignore[union-attr]
            li = next(i for i, n in enumerate(nodes) if n.name == lead)
            fi = (li + 1) % 3
            nodes[fi].stop()
            await nodes[fi].wait_stopped()
            shutil.rmtree(tmp / nodes[fi].name / "data")
            for k in range(1, 25):  # one block each: enough for the leader to compact
                await nodes[li].wait_committed(await nodes[li].submit(net.tx(k).raw))
            first_index = nodes[li].ordering._log.first_index()  # type: ignore[union-attr]
            nodes[fi] = make(fi)
            await nursery.start(nodes[fi].run)
            target = nodes[li].ledger.tip.height  # type: ignore[union-attr]
            while nodes[fi].ledger.tip.height < target:  # type: ignore[union-attr]
                await trio.sleep(0.1)
        leader_chain = [b.hash for b in nodes[li].ledger.store.blocks(0)]  # type: ignore[union-attr]
        follower_chain = [b.hash for b in nodes[fi].ledger.store.blocks(0)]  # type: ignore[union-attr]
        for node in nodes:
            node.stop()
    return leader_chain, follower_chain, first_index


@pytest.mark.parametrize("worker_threads", [True, False], ids=["threads", "in-loop"])
def test_a_wiped_member_catches_up_from_blocks_after_compaction(
    tmp_path: Path, worker_threads: bool
) -> None:
    clock = trio.testing.MockClock(autojump_threshold=0.05)
    leader_chain, follower_chain, first_index = trio.run(
        wiped_member_catches_up, tmp_path, worker_threads, clock=clock
    )
    assert first_index > 1, "the leader never compacted, so catch-up from blocks was not tested"
    assert follower_chain == leader_chain[: len(follower_chain)]
    assert len(follower_chain) == len(leader_chain)


async def restart_ahead_of_raft(tmp: Path) -> list[int]:
    """A ledger that holds blocks past Raft's persisted commit (a crash after a block
    catch-up, before the restore was persisted): the node restores Raft at the
    ledger's point and goes on from there."""
    net = TestNetwork(n=1)
    member = net.network.members[0]
    data = tmp / member.name / "data"
    with Ledger.create(data, net.network) as ledger:
        for k in range(1, 4):  # blocks of Raft entries 2..4 (as if entry 1 were a no-op)
            block, _ = ledger.execute_proposal(
                [net.tx(k)], key=net.node_keys[0], time_ms=GENESIS_TIME_MS + k, term=1
            )
            ledger.commit(block, raft_index=k + 1)
    cfg = NodeConfig(
        name=member.name,
        network=tmp / "network.toml",
        key_file=tmp / "unused.key",
        data_dir=data,
        listen=member.address,
    )
    env = Environment(net=MemoryNetwork(), rng=random.Random(5))
    node = Node(
        cfg,
        env=env,
        settings=NodeSettings(serve_api=False),
        network=net.network,
        key=net.node_keys[0],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        with trio.fail_after(60):
            while not node.healthy():
                await trio.sleep(0.1)
            await node.wait_committed(await node.submit(net.tx(10).raw))
        assert node.ledger is not None and node.ordering is not None
        heights = [b.height for b in node.ledger.store.blocks(0)]
        assert node.ordering.statistics().applied > 4
        node.stop()
    return heights


def test_a_ledger_ahead_of_raft_restores_raft_at_the_ledgers_point(tmp_path: Path) -> None:
    clock = trio.testing.MockClock(autojump_threshold=0.05)
    assert trio.run(restart_ahead_of_raft, tmp_path, clock=clock) == [0, 1, 2, 3, 4]
