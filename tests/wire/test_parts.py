"""The pure helpers of the peer manager: backoff, token buckets, queues, replay cache,
and the fair inbox."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from p2pledger.wire.backoff import Backoff
from p2pledger.wire.config import TransportConfig
from p2pledger.wire.errors import PeerUnreachable
from p2pledger.wire.inbox import FairInbox
from p2pledger.wire.messages import Lane
from p2pledger.wire.net import parse_address
from p2pledger.wire.queues import SendQueue
from p2pledger.wire.ratelimit import ReceiveThrottle, TokenBucket
from p2pledger.wire.replay import ReplayCache


def test_backoff_grows_with_jitter_and_resets() -> None:
    b = Backoff(initial=0.1, maximum=1.0, jitter=0.5, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for d, base in zip(delays, bases, strict=True):
        assert base * 0.5 <= d <= base
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next_delay() <= 0.1
    with pytest.raises(ValueError):
        Backoff(initial=1, maximum=0.5, jitter=0, rng=random.Random())


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=100.0)
    assert [bucket.take(100.0, 1) for _ in range(5)] == [0.0] * 5
    assert bucket.take(100.0, 1) == pytest.approx(0.1)
    assert bucket.take(100.1, 1) == pytest.approx(0.1)  # refilled one, still in debt
    assert bucket.take(101.0, 1) == 0.0
    assert bucket.take(50.0, 0) == 0.0  # a clock going backwards never refills


def test_receive_throttle_takes_the_slower_bucket() -> None:
    t = ReceiveThrottle(
        messages_per_second=1000, message_burst=10, bytes_per_second=100, byte_burst=100, now=0
    )
    assert t.delay(0.0, 100) == 0.0
    assert t.delay(0.0, 50) == pytest.approx(0.5)


def test_send_queue_lanes_bounds_and_batches() -> None:
    q = SendQueue(max_messages=3, max_bytes=10)
    assert q.offer(Lane.GOSSIP, b"g1")
    assert q.offer(Lane.CONSENSUS, b"c1")
    assert q.offer(Lane.CONSENSUS, b"c2")
    assert q.offer(Lane.CONSENSUS, b"c3")
    assert not q.offer(Lane.CONSENSUS, b"c4")  # 3 messages
    assert not q.offer(Lane.GOSSIP, b"x" * 9)  # 11 bytes
    assert q.depth(Lane.CONSENSUS) == (3, 6) and len(q) == 4
    assert q.take_batch(4) == [(Lane.CONSENSUS, b"c1"), (Lane.CONSENSUS, b"c2")]
    assert q.take_batch(100, max_messages=1) == [(Lane.CONSENSUS, b"c3")]
    assert q.take_batch(1) == [(Lane.GOSSIP, b"g1")]  # one message even if over budget
    assert q.take_batch(100) == []
    q.offer(Lane.GOSSIP, b"a")
    assert q.clear() == 1 and len(q) == 0


def test_replay_cache_forgets_the_oldest() -> None:
    c = ReplayCache(2)
    assert not c.check_and_remember(b"a")
    assert not c.check_and_remember(b"b")
    assert c.check_and_remember(b"a")
    assert not c.check_and_remember(b"c")  # forgets b, the least recent
    assert not c.check_and_remember(b"b")
    assert len(c) == 2
    off = ReplayCache(0)
    assert not off.check_and_remember(b"a") and not off.check_and_remember(b"a")


def test_config_validation() -> None:
    TransportConfig()
    for bad in (
        {"handshake_timeout": 0},
        {"dead_after": 1.0, "heartbeat_interval": 1.0},
        {"backoff_jitter": 1.0},
        {"backoff_initial": 2.0, "backoff_max": 1.0},
        {"max_frame_size": 10, "receive_burst_bytes": 5},
        {"protocol_version": 70000},
    ):
        with pytest.raises(ValueError):
            TransportConfig(**bad)  # type: ignore[arg-type]


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:7000") == ("127.0.0.1", 7000)
    assert parse_address("[::1]:80") == ("::1", 80)
    for bad in ("nohost", ":80", "h:0", "h:x", "h:70000"):
        with pytest.raises(PeerUnreachable):
            parse_address(bad)


async def test_inbox_is_fair_and_bounded_per_peer() -> None:
    inbox: FairInbox[str] = FairInbox(max_messages=2, max_bytes=100)
    await inbox.put("flood", "f1", 1)
    await inbox.put("flood", "f2", 1)
    blocked = trio.Event()

    async def third() -> None:
        await inbox.put("flood", "f3", 1)  # waits: flood's share is full
        blocked.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(third)
        await trio.testing.wait_all_tasks_blocked()
        assert not blocked.is_set()
        await inbox.put("calm", "c1", 1)  # another peer is not held up
        assert [await inbox.get(), await inbox.get()] == ["f1", "c1"]  # round-robin
        await blocked.wait()
    assert [inbox.get_nowait(), inbox.get_nowait()] == ["f2", "f3"]
    with pytest.raises(trio.WouldBlock):
        inbox.get_nowait()


async def test_inbox_get_waits_for_a_message() -> None:
    inbox: FairInbox[str] = FairInbox(max_messages=1, max_bytes=1)
    got: list[str] = []

    async def getter() -> None:
        got.append(await inbox.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(getter)
        await trio.testing.wait_all_tasks_blocked()
        await inbox.put("p", "big", 50)  # one message fits whatever its size
    assert got == ["big"] and len(inbox) == 0
