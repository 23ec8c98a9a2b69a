"""Membership changes on the runtime, on MockClock over in-memory streams.

Three members add a fourth: it starts from the founding file as a joining member,
is let in once the update commits, catches up from blocks (the leader compacted its
Raft log), and then votes: with the old leader stopped, the other three need its vote
to elect a new one. Then a running member is removed: its ledger shows it removed
(``node.removed``), its connections close and its handshakes are refused."""

from __future__ import annotations

import random
from pathlib import Path

import structlog
import trio
import trio.testing

from p2pledger.chain import Transaction
from p2pledger.config import NodeConfig
from p2pledger.crypto import SigningKey
from p2pledger.membership import Member, Network
from p2pledger.node import Environment, Node, NodeSettings
from p2pledger.node.reconfig import StandingKind
from p2pledger.wire import HandshakeRefused
from p2pledger.wire.channel import SecureChannel
from p2pledger.wire.config import TransportConfig
from p2pledger.wire.handshake import Handshake, Side
from tests import factory
from tests.factory import GENESIS_TIME_MS, TestNetwork
from tests.node.memnet import MemoryNetwork

SEED = 11


class World:
    """The members of one trio run: nodes by name, started and stopped in a nursery."""

    def __init__(self, tmp: Path, nursery: trio.Nursery) -> None:
        self.tmp = tmp
        self.nursery = nursery
        self.net = TestNetwork(n=3)
        self.founding = self.net.network
        self.memnet = MemoryNetwork()
        self.nodes: dict[str, Node] = {}
        self.keys = {m.name: self.net.node_keys[i] for i, m in enumerate(self.founding.members)}
        self.admins = {m.name: self.net.admin_keys[i] for i, m in enumerate(self.founding.members)}
        self.nonce = 0
        self.wall = iter(range(GENESIS_TIME_MS, GENESIS_TIME_MS + 10**9, 7))

    async def start(self, name: str, *, address: str, join: bool = False) -> Node:
        cfg = NodeConfig(
            name=name,
            network=self.tmp / "network.toml",
            key_file=self.tmp / f"{name}.key",
            data_dir=self.tmp / name / "data",
            listen=address,
            join=join,
        )
        env = Environment(
            net=self.memnet,
            rng=random.Random(SEED * 100 + len(self.nodes)),
            wall_ms=lambda: next(self.wall),
        )
        node = Node(
            cfg,
            env=env,
            settings=NodeSettings(serve_api=False, raft_keep_entries=4),
            network=self.founding,
            key=self.keys[name],
        )
        await self.nursery.start(node.run)
        self.nodes[name] = node
        return node

    async def stop(self, name: str) -> None:
        node = self.nodes.pop(name)
        node.stop()
        await node.wait_stopped()

    def running(self) -> list[Node]:
        return list(self.nodes.values())

    def leader(self) -> Node | None:
        """The leader every running member (joining or removed ones aside) agrees on."""
        leads = {
            n.ordering.statistics().lead
            for n in self.running()
            if n.ordering and n.standing_kind is StandingKind.MEMBER
        }
        lead = leads.pop() if len(leads) == 1 else None
        return self.nodes.get(lead) if lead is not None else None

    async def wait_leader(self) -> Node:
        while (lead := self.leader()) is None or not lead.healthy():
            await trio.sleep(0.1)
        return lead

    def anchor(self, user: int | None = None) -> Transaction:
        self.nonce += 1
        return self.net.tx(1000 + self.nonce, user=self.nonce % 3 if user is None else user)

    def update(self, base: Network, new: Network, approvers: list[str]) -> Transaction:
        self.nonce += 1
        return factory.config_update(
            self.net.chain_id,
            base,
            new,
            approvers=[self.admins[a] for a in approvers],
            submitter=self.admins[approvers[0]],  # a config.update is signed by an admin
            nonce=5000 + self.nonce,
        )

    async def commit(self, *txs: Transaction, via: Node | None = None) -> list[tuple[int, bool]]:
        """Submit ``txs`` one after the other, then wait until every member has them;
        return the (height, valid) of each."""
        node = via or await self.wait_leader()
        ids = [await node.submit(tx.raw) for tx in txs]
        for n in self.running():
            if n.standing_kind is StandingKind.MEMBER:
                for tx_id in ids:
                    await n.wait_committed(tx_id)
        assert node.ledger is not None
        out = []
        for tx_id in ids:
            where = node.ledger.store.tx_location(tx_id)
            assert where is not None
            out.append((where[0], node.ledger.store.block(where[0]).results[where[1]].valid))
        return out

    def network(self) -> Network:
        lead = self.leader()
        assert lead is not None
        return lead.network


async def wait_until(check: object, *, poll: float = 0.1) -> None:
    while not check():  # type: ignore[operator]
        await trio.sleep(poll)


async def grow_then_shrink(tmp: Path) -> list[dict[str, object]]:
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            w = World(tmp, nursery)
            with trio.fail_after(600):
                await run_scenario(w)
            for node in w.running():
                node.stop()
    return logs


async def run_scenario(w: World) -> None:
    for member in w.founding.members:
        await w.start(member.name, address=member.address)
    await w.wait_leader()
    for _ in range(8):  # enough single-transaction blocks for the leader to compact
        await w.commit(w.anchor())

    # --- add m3: a joining member catches up from blocks, then votes -------------------
    m3: Member
    m3, m3_key = factory.new_member("m3", port=7003)
    w.keys["m3"] = m3_key
    w.admins["m3"] = factory.seeded_key("m3-admin")
    joiner = await w.start("m3", address=m3.address, join=True)
    assert joiner.standing_kind is StandingKind.JOINING
    assert (joiner.health_problem() or "").startswith("not yet a member")
    # Until the update commits, the others refuse the joiner's key at the handshake.
    m0 = w.founding.member("m0")
    assert m0 is not None
    await refused_dial(w, m3_key, m0, w.founding)
    base = w.network()
    grown = factory.add_member(base, m3)
    m1 = grown.member("m1")
    assert m1 is not None
    extra_user = factory.seeded_key("m1-user-2").public_key
    more = factory.edit_member(grown, "m1", users=(*m1.users, extra_user))
    # Two updates at once (the second based on the first): one block each, both valid.
    (h1, ok1), (h2, ok2) = await w.commit(
        w.update(base, grown, ["m0", "m1"]), w.update(grown, more, ["m1"])
    )
    assert ok1 and ok2 and h2 > h1
    lead = await w.wait_leader()
    await wait_until(lambda: joiner.ledger is not None and joiner.ledger.tip == lead.ledger.tip)  # type: ignore[union-attr]
    assert joiner.standing_kind is StandingKind.MEMBER and joiner.network.version == 2
    assert lead.ordering is not None and lead.ordering.conf.voters == {"m0", "m1", "m2", "m3"}
    await w.commit(w.anchor())  # the new member commits along with the others
    # It votes: with the leader gone, the other three of four voters must all agree.
    old = lead.name
    await w.stop(old)
    new_lead = await w.wait_leader()
    assert new_lead.name != old
    await w.commit(w.anchor(), via=joiner)
    assert joiner.ordering is not None and joiner.ordering.statistics().lead == new_lead.name
    await w.start(old, address=w.founding.member(old).address)  # type: ignore[union-attr]

    # --- remove a running follower: it learns it, and is refused --------------------------
    lead = await w.wait_leader()
    gone = next(n for n in w.running() if n.name not in (lead.name, "m3"))
    await wait_until(lambda: gone.ledger.tip == lead.ledger.tip)  # type: ignore[union-attr]
    base = w.network()
    shrunk = factory.remove_member(base, gone.name)
    approvers = [m.name for m in base.members if m.name != gone.name]
    await w.commit(w.update(base, shrunk, approvers))
    await wait_until(lambda: gone.standing_kind is StandingKind.REMOVED)
    assert (gone.health_problem() or "").startswith("removed from the membership")
    assert gone.peers is not None and gone.peers.connected_peers() == frozenset()
    for node in w.running():
        if node is not gone:
            assert node.peers is not None
            await wait_until(lambda node=node: gone.name not in node.peers.connected_peers())  # type: ignore[misc, union-attr]
            assert node.ordering is not None and gone.name not in node.ordering.conf.members
    # A dial with the removed member's key is refused at the handshake.
    target = lead.network.member(lead.name)
    assert target is not None
    await refused_dial(w, w.keys[gone.name], target, base)
    # The rest go on ordering; the removed member's users sign nothing valid any more.
    user = next(i for i in range(3) if shrunk.member(f"m{i}") is not None)
    await w.commit(w.anchor(user))


async def refused_dial(w: World, key: SigningKey, target: Member, network: Network) -> None:
    """Dial ``target`` as the holder of ``key`` who still believes in ``network``."""
    host, port = target.address.rsplit(":", 1)
    stream = await w.memnet.open_tcp_stream(host, int(port))
    handshake = Handshake(
        side=Side.DIALER,
        identity=key,
        chain_id=w.net.chain_id,
        network=network,
        expected_peer=target.node_key,
    )
    try:
        await SecureChannel(stream, handshake, config=TransportConfig()).do_handshake()
    except HandshakeRefused:
        return
    raise AssertionError("a removed member's handshake was accepted")


def test_members_are_added_and_removed_on_mock_clock(tmp_path: Path) -> None:
    print(f"seed {SEED}")
    clock = trio.testing.MockClock(autojump_threshold=0.05)
    logs = trio.run(grow_then_shrink, tmp_path, clock=clock)
    events = [e["event"] for e in logs]
    assert "node.joining" in events and "node.member" in events
    assert "node.removed" in events and "membership.farewell" in events
    # m3 caught up from blocks (the leader had compacted past what it could send).
    assert any(e["event"] == "catchup.complete" and e["member"] == "m3" for e in logs)
    refusals = [e for e in logs if e["event"] == "handshake.failed" and e["side"] == "listener"]
    assert any(e["reason"] == "unknown_key" for e in refusals)  # the joiner, before the update
    assert any(e["reason"] == "removed_member" for e in refusals)  # the removed member's key
