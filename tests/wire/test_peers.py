"""The peer manager on 127.0.0.1: meshes, restarts, heartbeats, queues, membership."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import structlog
import trio
import trio.testing
from prometheus_client import REGISTRY, CollectorRegistry

from p2pledger.membership import Network
from p2pledger.wire.channel import SecureChannel
from p2pledger.wire.config import TransportConfig
from p2pledger.wire.errors import HandshakeRefused, ListenFailed, RefusalReason, UnknownMessageType
from p2pledger.wire.handshake import Handshake, Side
from p2pledger.wire.messages import Message
from p2pledger.wire.net import TrioNetwork
from p2pledger.wire.peers import PeerManager, SendOutcome
from tests import factory
from tests.wire.cluster import FAST, MESSAGES, cluster, dial_raw, exchange, wait_for


def consensus(**body: object) -> Message:
    return Message(type="test.consensus", body=dict(body))


async def test_two_members_talk_both_ways_over_one_connection() -> None:
    async with cluster(2) as c:
        a, b = c["m0"].manager, c["m1"].manager
        with trio.fail_after(5):
            await a.wait_connected()
            await b.wait_connected()
        assert a.session_with("m1") == b.session_with("m0") is not None
        for i in range(3):
            assert a.send_nowait("m1", consensus(i=i)) is SendOutcome.QUEUED
        assert b.send_nowait("m0", Message(type="test.gossip", body={"x": b"y"})).value == "queued"
        with trio.fail_after(5):
            got = [await b.receive() for _ in range(3)]
            back = await a.receive()
        assert [d.message.body["i"] for d in got] == [0, 1, 2]
        assert {d.peer for d in got} == {"m0"} and got[0].lane.value == "consensus"
        assert back.peer == "m1" and back.lane.value == "gossip"
        assert c["m0"].metric("connections") == 1
        writes_before = c["m0"].metric("writes_total", peer="m1")
        for i in range(50):  # queued in one go: written in far fewer socket writes
            a.send_nowait("m1", consensus(i=i))
        with trio.fail_after(5):
            assert [(await b.receive()).message.body["i"] for _ in range(50)] == list(range(50))
        assert c["m0"].metric("writes_total", peer="m1") - writes_before <= 5
        assert a.send_nowait("m9", consensus()) is SendOutcome.UNKNOWN_PEER
        with pytest.raises(UnknownMessageType):
            a.send_nowait("m1", Message(type="not.registered"))


async def test_five_members_form_a_mesh_of_single_connections() -> None:
    async with cluster(5) as c:
        managers = [c[f"m{i}"].manager for i in range(5)]
        with trio.fail_after(10):
            for m in managers:
                await m.wait_connected()

        def settled() -> bool:
            return all(
                a.session_with(b.name) is not None
                and a.session_with(b.name) == b.session_with(a.name)
                for a, b in itertools.combinations(managers, 2)
            )

        await wait_for(settled)
        for node in c.nodes.values():
            assert node.metric("connections") == 4
            for peer in c.nodes:
                assert node.metric("disconnects_total", peer=peer, reason="replaced") == 0
        for a in managers:
            assert a.broadcast_nowait(consensus(src=a.name)) == dict.fromkeys(
                (m.name for m in managers if m is not a), SendOutcome.QUEUED
            )
        with trio.fail_after(5):
            for b in managers:
                senders = sorted([(await b.receive()).message.body["src"] for _ in range(4)])
                assert senders == sorted(m.name for m in managers if m is not b)
        # Quiet: no dial in progress and no admitted connection waiting anywhere, so
        # every dial loop is parked until a disconnect and no duplicate can still
        # arrive. The sessions seen then are the ones the mesh settled on.
        sessions = {(a.name, b.name): a.session_with(b.name) for a in managers for b in managers}

        def quiet() -> bool:
            return all(
                not p.dialing and p.incoming == 0 for m in managers for p in m.statistics().peers
            )

        await wait_for(quiet)
        assert settled()
        assert {
            (a.name, b.name): a.session_with(b.name) for a in managers for b in managers
        } == sessions
        for node in c.nodes.values():
            for peer in c.nodes:
                assert node.metric("disconnects_total", peer=peer, reason="replaced") == 0


async def test_reconnect_after_a_peer_restarts_and_queued_messages_survive() -> None:
    async with cluster(3) as c:
        a = c["m0"].manager
        with trio.fail_after(5):
            await a.wait_connected()
        c.stop("m2")
        with trio.fail_after(5):
            await a.wait_disconnected("m2")
        assert a.send_nowait("m2", consensus(n="while down")) is SendOutcome.QUEUED
        restarted = (await c.start(2)).manager
        with trio.fail_after(5):
            await restarted.wait_connected()
            await a.wait_connected()
            got = await restarted.receive()
        assert got.peer == "m0" and got.message.body == {"n": "while down"}
        await exchange(a, restarted)
        await exchange(c["m1"].manager, restarted)


async def test_idle_connections_live_on_heartbeats_and_a_silent_peer_is_dropped() -> None:
    async with cluster(3, start=2) as c:
        node = c["m0"]
        with trio.fail_after(5):
            await node.manager.wait_connected(["m1"])
        session = node.manager.session_with("m1")
        start = trio.current_time()  # before the node's dead-peer timer can start
        silent = await dial_raw(node.port, c.net.node_keys[2], c.net)  # then says nothing
        with trio.fail_after(3):
            await node.manager.wait_connected(["m2"])
            await node.manager.wait_disconnected("m2")
        elapsed = trio.current_time() - start
        assert FAST.dead_after <= elapsed < FAST.dead_after + 1.0
        assert node.metric("disconnects_total", peer="m2", reason="heartbeat_timeout") == 1
        assert node.manager.session_with("m1") == session  # idle, but heartbeats kept it
        await silent.aclose()


async def test_full_consensus_lane_disconnects_and_gossip_is_shed() -> None:
    cfg = TransportConfig(**{**_fast(), "send_queue_messages": 4})
    async with cluster(2, start=1, config=cfg) as c:
        node = c["m0"]
        a = node.manager
        outcomes = [a.send_nowait("m1", consensus(i=i)) for i in range(5)]
        assert outcomes == [SendOutcome.QUEUED] * 4 + [SendOutcome.DISCONNECTED]
        assert node.metric("queue_overflows_total", peer="m1") == 1
        assert node.metric("messages_lost_total", peer="m1", lane="consensus") == 5
        gossip = Message(type="test.gossip", body={})
        outcomes = [a.send_nowait("m1", gossip) for _ in range(5)]
        assert outcomes == [SendOutcome.QUEUED] * 4 + [SendOutcome.SHED]
        assert node.metric("messages_shed_total", peer="m1") == 1


async def test_a_member_that_stops_reading_is_disconnected_when_its_queue_fills() -> None:
    cfg = TransportConfig(**{**_fast(), "send_queue_messages": 4, "dead_after": 5.0})
    async with cluster(2, start=1, config=cfg) as c:
        node = c["m0"]
        stuck = await dial_raw(node.port, c.net.node_keys[1], c.net)  # never reads
        with trio.fail_after(5):
            await node.manager.wait_connected(["m1"])
        big = consensus(blob=b"\x00" * 65536)
        outcome = SendOutcome.QUEUED
        with trio.fail_after(10):
            while outcome is SendOutcome.QUEUED:
                outcome = node.manager.send_nowait("m1", big)
                # let the writer move what it can into the socket before the next one
                await trio.testing.wait_all_tasks_blocked()
            await node.manager.wait_disconnected("m1")
        assert outcome is SendOutcome.DISCONNECTED
        assert node.metric("disconnects_total", peer="m1", reason="send_queue_full") == 1
        await stuck.aclose()


async def test_sessions_are_renewed_before_the_nonce_runs_out_without_loss() -> None:
    cfg = TransportConfig(**{**_fast(), "session_message_limit": 16})
    async with cluster(2, config=cfg) as c:
        a, b = c["m0"].manager, c["m1"].manager
        with trio.fail_after(5):
            await a.wait_connected()
        for i in range(40):
            a.send_nowait("m1", consensus(i=i))
            # the writer sends each before the next, so renewals fall mid-stream
            await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(10):
            got = [(await b.receive()).message.body["i"] for _ in range(40)]
        assert got == list(range(40))
        assert c["m0"].metric("disconnects_total", peer="m1", reason="session_exhausted") >= 2


async def test_membership_update_closes_removed_and_dials_new_members() -> None:
    net = factory.TestNetwork(4)
    members = net.network.members
    first = _network(net, members[:3])
    later = _network(net, (members[0], members[2], members[3]), version=1)
    with structlog.testing.capture_logs() as logs:
        async with cluster(4, start=0, net=net, network=first) as c:
            for i in range(3):
                await c.start(i)
            m0, m2 = c["m0"].manager, c["m2"].manager
            with trio.fail_after(5):
                await m0.wait_connected()
                await m2.wait_connected()
            m0.update_membership(later)
            m2.update_membership(later)
            m3 = (await c.start(3, network=later)).manager
            with trio.fail_after(5):
                await m0.wait_connected(["m2", "m3"])
                await m2.wait_connected(["m0", "m3"])
                await m3.wait_connected()
                await m0.wait_disconnected("m1")
            assert "m1" not in m0.connected_peers() | m2.connected_peers()
            await exchange(m0, m3)
            await exchange(m2, m3)
            # m1 still has the old list and keeps dialing: refused as a removed member.
            await wait_for(
                lambda: (
                    c["m0"].metric(
                        "handshake_refusals_total", reason="removed_member", side="listener"
                    )
                    >= 1
                )
            )
    removed = _first(logs, "peer.removed")
    assert removed["peer"] == "m1" and removed["node"] in {"m0", "m2"}
    assert any(e["event"] == "peer.disconnected" and e["reason"] == "removed_member" for e in logs)


async def test_a_joining_member_is_let_in_once_the_others_name_it() -> None:
    net = factory.TestNetwork(4)
    members = net.network.members
    first = _network(net, members[:3])
    later = _network(net, members, version=1)
    async with cluster(4, start=0, net=net, network=first) as c:
        for i in range(3):
            await c.start(i)
        joiner = (await c.start(3, joining=True)).manager
        assert joiner.name == "m3"
        # It dials every member it knows, and each refuses a key it does not know.
        await wait_for(
            lambda: (
                c["m0"].metric("handshake_refusals_total", reason="unknown_key", side="listener")
                >= 1
            )
        )
        assert joiner.connected_peers() == frozenset()
        for name in ("m0", "m1", "m2"):
            c[name].manager.update_membership(later)
        with trio.fail_after(5):
            await joiner.wait_connected(["m0", "m1", "m2"])
        joiner.update_membership(later)  # it applied the update too: now a member
        await exchange(c["m1"].manager, joiner)
        assert joiner.connected_peers() == {"m0", "m1", "m2"}


async def test_a_removed_member_closes_everything_and_is_refused() -> None:
    net = factory.TestNetwork(3)
    members = net.network.members
    later = _network(net, (members[0], members[2]), version=1)
    with structlog.testing.capture_logs() as logs:
        async with cluster(3, net=net) as c:
            m0, m1, m2 = (c[n].manager for n in ("m0", "m1", "m2"))
            with trio.fail_after(5):
                await m1.wait_connected()
            m1.update_membership(later)  # m1 applied its own removal first
            assert m1.connected_peers() == frozenset() and m1.statistics().peers == ()
            assert m1.send_nowait("m0", consensus(x=1)) is SendOutcome.UNKNOWN_PEER
            m0.update_membership(later)
            m2.update_membership(later)
            with trio.fail_after(5):
                await m0.wait_disconnected("m1")
                await m0.wait_connected(["m2"])
            stream = await trio.open_tcp_stream("127.0.0.1", c["m0"].port)
            raw = net.network
            refused = c["m0"].metric(
                "handshake_refusals_total", reason="removed_member", side="listener"
            )
            with pytest.raises(HandshakeRefused) as info:
                await SecureChannel(
                    stream,
                    Handshake(
                        side=Side.DIALER,
                        identity=net.node_keys[1],
                        chain_id=net.chain_id,
                        network=raw,
                        expected_peer=net.node_keys[0].public_key,
                    ),
                    config=FAST,
                ).do_handshake()
            # The listener tells an unauthenticated-as-member dialer nothing; it counts it.
            assert info.value.refusal in (RefusalReason.CLOSED, RefusalReason.REMOVED_MEMBER)
            assert (
                c["m0"].metric("handshake_refusals_total", reason="removed_member", side="listener")
                == refused + 1
            )
    assert any(e["event"] == "transport.self_removed" and e["node"] == "m1" for e in logs)


async def test_what_was_queued_for_a_removed_member_is_still_sent_then_it_closes() -> None:
    net = factory.TestNetwork(3)
    members = net.network.members
    later = _network(net, (members[0], members[2]), version=1)
    async with cluster(3, net=net) as c:
        m0, m1 = c["m0"].manager, c["m1"].manager
        with trio.fail_after(5):
            await m0.wait_connected()
        for i in range(20):
            assert m0.send_nowait("m1", consensus(i=i)) is SendOutcome.QUEUED
        m0.update_membership(later)  # queued before the removal: still written
        assert m0.send_nowait("m1", consensus(i=99)) is SendOutcome.UNKNOWN_PEER
        with trio.fail_after(5):
            got = []
            while len(got) < 20:
                delivery = await m1.receive()
                if delivery.peer == "m0":
                    got.append(delivery.message.body["i"])
        assert got == list(range(20))
        await wait_for(
            lambda: c["m0"].metric("disconnects_total", peer="m1", reason="removed_member") == 1
        )


async def test_a_rotated_identity_reconnects_under_the_new_key() -> None:
    net = factory.TestNetwork(3)
    members = net.network.members
    new_key = factory.seeded_key("node-1-next")
    rotated = dataclasses.replace(members[1], node_key=new_key.public_key)
    later = _network(net, (members[0], rotated, members[2]), version=1)
    with structlog.testing.capture_logs() as logs:
        async with cluster(3, net=net) as c:
            m0, m1, m2 = (c[n].manager for n in ("m0", "m1", "m2"))
            with trio.fail_after(5):
                await m1.wait_connected()
            before = {p: m1.session_with(p) for p in ("m0", "m2")}
            m0.update_membership(later)
            m1.update_membership(later, identity=new_key)
            m2.update_membership(later)
            assert m1.identity is new_key and m1.name == "m1"
            await wait_for(lambda: all(m1.session_with(p) not in (None, before[p]) for p in before))
            with trio.fail_after(5):
                await m1.wait_connected(["m0", "m2"])
            await exchange(m0, m1)
            await exchange(m2, m1)
    assert any(e["event"] == "transport.identity_changed" for e in logs)
    assert not any(e["event"] == "transport.self_removed" for e in logs)


def _first(logs: list[dict[str, object]], event: str) -> dict[str, object]:
    return next(entry for entry in logs if entry["event"] == event)


def _network(net: factory.TestNetwork, members: tuple, *, version: int = 0) -> Network:  # type: ignore[type-arg]
    base = net.network
    return Network(
        chain_name=base.chain_name,
        genesis_time_ms=base.genesis_time_ms,
        limits=base.limits,
        members=tuple(members),
        version=version,
    )


def _fast() -> dict[str, object]:
    return {f: getattr(FAST, f) for f in FAST.__dataclass_fields__}


class BarrierNetwork(TrioNetwork):
    """Holds every dial until ``parties`` dials are waiting, so they race exactly."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.waiting = 0
        self.go = trio.Event()

    async def open_tcp_stream(self, host: str, port: int) -> trio.abc.Stream:
        self.waiting += 1
        if self.waiting >= self.parties:
            self.go.set()
        await self.go.wait()
        return await super().open_tcp_stream(host, port)


async def test_simultaneous_dials_keep_the_lower_keys_connection_on_both_sides() -> None:
    barrier = BarrierNetwork(2)
    async with cluster(2, start=0) as c:
        a = (await c.start(0, backend=barrier)).manager
        b = (await c.start(1, backend=barrier)).manager
        with trio.fail_after(5):
            await barrier.go.wait()
            await a.wait_connected()
            await b.wait_connected()
        await wait_for(lambda: a.session_with("m1") == b.session_with("m0") is not None)
        session = a.session_with("m1")
        await trio.sleep(0.3)  # no flapping afterwards
        assert a.session_with("m1") == b.session_with("m0") == session
        lower = min(("m0", a), ("m1", b), key=lambda p: p[1]._identity.public_key.raw)
        stats = {p.name: p for p in lower[1].statistics().peers}
        assert next(iter(stats.values())).dialed_by_us is True
        dup = sum(
            c[n].metric("handshake_refusals_total", reason="duplicate_connection", side=s)
            for n in ("m0", "m1")
            for s in ("dialer", "listener")
        )
        superseded = c["m0"].metric("dials_total", result="superseded") + c["m1"].metric(
            "dials_total", result="superseded"
        )
        assert dup + superseded >= 1  # the race really happened and was resolved
        await exchange(a, b)


async def test_listen_failure_is_local_and_a_manager_can_run_again() -> None:
    async with cluster(2) as c:
        a = c["m0"]
        taken = PeerManager(
            identity=c.net.node_keys[1],
            network=c.network,
            chain_id=c.chain_id,
            registry=CollectorRegistry(),
            messages=MESSAGES,
            config=FAST,
            listen=("127.0.0.1", a.port),
        )
        with pytest.raises(ListenFailed):
            await taken.run()
        # The same manager object stops and runs again (a restart in place).
        c.stop("m1")
        manager = taken
        for _ in range(2):
            manager._listen = ("127.0.0.1", 0)
            async with trio.open_nursery() as nursery:
                c.ports["m1"] = await nursery.start(manager.run)
                with trio.fail_after(5):
                    await manager.wait_connected()
                await exchange(a.manager, manager)
                nursery.cancel_scope.cancel()
            with trio.fail_after(5):
                await a.manager.wait_disconnected("m1")
    assert REGISTRY.get_sample_value("p2pledger_wire_connections") is None  # never global


async def test_a_member_that_missed_its_rotation_gets_back_in_under_the_next_key() -> None:
    net = factory.TestNetwork(3)
    members = net.network.members
    new_key = factory.seeded_key("node-1-next")
    rotated = dataclasses.replace(members[1], node_key=new_key.public_key)
    later = _network(net, (members[0], rotated, members[2]), version=1)
    with structlog.testing.capture_logs() as logs:
        async with cluster(3, net=net) as c:
            m0, m1, m2 = (c[n].manager for n in ("m0", "m1", "m2"))
            with trio.fail_after(5):
                await m1.wait_connected()
            # The others apply the rotation; m1 has not seen it commit and still speaks
            # with its old key, which they now refuse.
            m0.update_membership(later)
            m2.update_membership(later)
            with trio.fail_after(5):
                while m1.connected_peers():
                    await trio.sleep(0.01)
            m1.set_alternate_identity(new_key)  # it holds the next key (next_key_file)
            with trio.fail_after(10):
                await m1.wait_connected(["m0", "m2"])
            await exchange(m0, m1)
            await exchange(m2, m1)
            assert m1.identity is not new_key  # it switches only when it sees the commit
    assert any(e["event"] == "dial.alternate_identity" for e in logs)
