"""A member flooding another is throttled; traffic among the others keeps flowing."""

from __future__ import annotations

import structlog
import trio

from p2pledger.wire.config import TransportConfig
from p2pledger.wire.messages import Message
from p2pledger.wire.peers import PeerManager, SendOutcome
from tests.wire.cluster import FAST, cluster

FLOOD = TransportConfig(
    **{
        **{f: getattr(FAST, f) for f in FAST.__dataclass_fields__},
        "receive_rate_messages": 500.0,
        "receive_burst_messages": 100,
        "send_queue_messages": 256,
        "inbox_messages": 64,
    }
)
MAX_DELAY = 0.25  # seconds: the bound on the calm members' message delay
ROUNDS = 40


def now_us() -> int:
    return int(trio.current_time() * 1_000_000)


async def test_a_flood_from_one_member_does_not_stop_the_others() -> None:
    with structlog.testing.capture_logs() as logs:
        async with cluster(3, config=FLOOD) as c:
            flooder, victim, calm = (c[f"m{i}"] for i in range(3))
            with trio.fail_after(5):
                for node in (flooder, victim, calm):
                    await node.manager.wait_connected()
            delays: dict[str, list[float]] = {"m1": [], "m2": []}
            flooded = 0
            stop = trio.Event()
            built_up = trio.Event()  # the flooder's own send queue has overflowed
            heard_all = trio.Event()  # every calm message has arrived

            async def consume(me: PeerManager, count_from: str) -> None:
                nonlocal flooded
                while True:
                    got = await me.receive()
                    if got.peer == count_from:
                        flooded += 1
                    elif "sent_us" in got.message.body:
                        delay = (now_us() - got.message.body["sent_us"]) / 1e6
                        delays[me.name].append(delay)
                        if min(len(d) for d in delays.values()) >= ROUNDS:
                            heard_all.set()

            async def flood() -> None:
                junk = Message(type="test.gossip", body={"junk": b"\x00" * 200})
                outcomes: set[SendOutcome] = set()
                while not stop.is_set():
                    for _ in range(50):
                        outcomes.add(flooder.manager.send_nowait("m1", junk))
                    if SendOutcome.SHED in outcomes:
                        built_up.set()
                    await trio.lowlevel.checkpoint()  # let the others run between bursts
                assert SendOutcome.SHED in outcomes  # the flooder's own queue overflowed

            async def talk(src: PeerManager, dst: str) -> None:
                for _ in range(ROUNDS):
                    outcome = src.send_nowait(
                        dst, Message(type="test.consensus", body={"sent_us": now_us()})
                    )
                    assert outcome is SendOutcome.QUEUED
                    await trio.sleep(0.01)  # the talkers' pace (a schedule, not a wait)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume, victim.manager, "m0")
                nursery.start_soon(consume, calm.manager, "m0")
                nursery.start_soon(flood)
                with trio.fail_after(5):
                    await built_up.wait()  # talk only once the flood is on
                with trio.fail_after(10):
                    async with trio.open_nursery() as talkers:
                        talkers.start_soon(talk, calm.manager, "m1")
                        talkers.start_soon(talk, victim.manager, "m2")
                    await heard_all.wait()
                stop.set()
                nursery.cancel_scope.cancel()

            for name, seen in delays.items():
                assert len(seen) == ROUNDS, name
                assert max(seen) < MAX_DELAY, (name, max(seen))
            assert flooded > 0
            assert victim.metric("throttled_messages_total", peer="m0") > 0
            assert victim.metric("throttled_messages_total", peer="m2") == 0
            assert flooder.metric("messages_shed_total", peer="m1") > 0
            assert "m0" in victim.manager.connected_peers()  # throttled, not dropped
    throttled = [e for e in logs if e["event"] == "peer.throttled"]
    assert throttled and {e["peer"] for e in throttled} == {"m0"}
    assert {e["node"] for e in throttled} == {"m1"}
