"""A few members on 127.0.0.1 (port 0), each a PeerManager in its own cancel scope."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
from prometheus_client import CollectorRegistry

from p2pledger.crypto import SigningKey
from p2pledger.membership import Member, Network
from p2pledger.wire.channel import SecureChannel
from p2pledger.wire.config import TransportConfig
from p2pledger.wire.errors import PeerUnreachable
from p2pledger.wire.handshake import Handshake, Side
from p2pledger.wire.messages import Lane, Message, MessageRegistry
from p2pledger.wire.net import NetworkBackend
from p2pledger.wire.peers import PeerManager
from tests import factory

MESSAGES = MessageRegistry({"test.consensus": Lane.CONSENSUS, "test.gossip": Lane.GOSSIP})

#: Short timeouts so refusals and dead peers show within a second of real time.
FAST = TransportConfig(
    handshake_timeout=0.5,
    connect_timeout=1.0,
    heartbeat_interval=0.1,
    dead_after=1.0,
    backoff_initial=0.02,
    backoff_max=0.2,
)


@dataclass
class Node:
    name: str
    key: SigningKey
    manager: PeerManager
    registry: CollectorRegistry
    scope: trio.CancelScope
    port: int

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(f"p2pledger_wire_{name}", labels)
        return 0.0 if value is None else value


class Cluster:
    """Starts, stops and restarts members; resolves members to their bound ports."""

    def __init__(
        self,
        nursery: trio.Nursery,
        net: factory.TestNetwork,
        config: TransportConfig,
        network: Network | None = None,
    ) -> None:
        self.nursery = nursery
        self.net = net
        self.network = network or net.network
        self.chain_id = net.chain_id
        self.config = config
        self.ports: dict[str, int] = {}
        self.nodes: dict[str, Node] = {}

    def resolve(self, member: Member) -> tuple[str, int]:
        port = self.ports.get(member.name)
        if port is None:
            raise PeerUnreachable(f"{member.name} is not running")
        return "127.0.0.1", port

    async def start(
        self,
        index: int,
        *,
        network: Network | None = None,
        config: TransportConfig | None = None,
        backend: NetworkBackend | None = None,
        key: SigningKey | None = None,
        joining: bool = False,
    ) -> Node:
        key = key or self.net.node_keys[index]
        registry = CollectorRegistry()
        manager = PeerManager(
            identity=key,
            name=f"m{index}",
            joining=joining,
            network=network or self.network,
            chain_id=self.chain_id,
            registry=registry,
            messages=MESSAGES,
            config=config or self.config,
            resolve=self.resolve,
            net=backend,
            listen=("127.0.0.1", 0),
            rng=random.Random(index),
        )
        scope = trio.CancelScope()
        port: int = await self.nursery.start(self._run, manager, scope)
        node = Node(manager.name, key, manager, registry, scope, port)
        self.ports[node.name] = port
        self.nodes[node.name] = node
        return node

    async def _run(
        self,
        manager: PeerManager,
        scope: trio.CancelScope,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with scope:
            await manager.run(task_status=task_status)

    def stop(self, name: str) -> None:
        node = self.nodes.pop(name)
        del self.ports[name]
        node.scope.cancel()

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]


@asynccontextmanager
async def cluster(
    n: int,
    *,
    config: TransportConfig = FAST,
    start: int | None = None,
    net: factory.TestNetwork | None = None,
    network: Network | None = None,
) -> AsyncIterator[Cluster]:
    """``n`` members (the first ``start`` of them running); all stopped on exit."""
    async with trio.open_nursery() as nursery:
        c = Cluster(nursery, net or factory.TestNetwork(n), config, network)
        for i in range(n if start is None else start):
            await c.start(i)
        try:
            yield c
        finally:
            nursery.cancel_scope.cancel()


async def wait_for(predicate: object, *, timeout: float = 5.0, poll: float = 0.01) -> None:
    """Poll ``predicate`` until it is true, failing after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(poll)


async def exchange(a: PeerManager, b: PeerManager, *, timeout: float = 2.0) -> float:
    """Send one consensus message each way and wait for both; return the round time."""
    start = trio.current_time()
    with trio.fail_after(timeout):
        a.send_nowait(b.name, Message(type="test.consensus", body={"from": a.name}))
        b.send_nowait(a.name, Message(type="test.consensus", body={"from": b.name}))
        for receiver, sender in ((b, a), (a, b)):
            while True:
                got = await receiver.receive()
                if got.peer == sender.name and got.message.body == {"from": sender.name}:
                    break
    return trio.current_time() - start


async def dial_raw(
    port: int,
    key: SigningKey,
    net: factory.TestNetwork,
    *,
    expect: int = 0,
    chain_id: bytes | None = None,
    config: TransportConfig = FAST,
) -> SecureChannel:
    """A hand-driven member (or impostor) dialing a node: returns the open channel."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    hs = Handshake(
        side=Side.DIALER,
        identity=key,
        chain_id=chain_id or net.chain_id,
        network=net.network,
        expected_peer=net.node_keys[expect].public_key,
    )
    channel = SecureChannel(stream, hs, config=config)
    await channel.do_handshake()
    return channel
