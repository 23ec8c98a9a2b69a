"""Gossip's resync: every (re)connection of a peer gets the whole mempool pushed."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from p2pledger.node.gossip import Gossip
from p2pledger.wire import Message


class FakePeers:
    """The two calls resync makes, with a session the test replaces at will."""

    def __init__(self) -> None:
        self.session: bytes | None = b"first"
        self.sent: list[tuple[str, Message]] = []

    def connected_peers(self) -> frozenset[str]:
        return frozenset({"m1"}) if self.session is not None else frozenset()

    def session_with(self, peer: str) -> bytes | None:
        return self.session

    def send_nowait(self, peer: str, message: Message) -> Any:
        self.sent.append((peer, message))


async def test_a_fast_reconnect_between_two_looks_is_resynced(
    mock_clock: trio.testing.MockClock,
) -> None:
    mock_clock.autojump_threshold = 0
    peers = FakePeers()
    gossip = Gossip(
        peers,  # type: ignore[arg-type]
        pending=lambda: [b"tx-a", b"tx-b"],
        interval_s=0.01,
        batch_txs=512,
        batch_bytes=1 << 20,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gossip.run)
        await trio.sleep(1.0)  # virtual time: many looks, one session
        assert len(peers.sent) == 1
        peers.session = b"second"  # dropped and back before the next look
        await trio.sleep(1.0)
        assert len(peers.sent) == 2
        assert peers.sent[-1] == (
            "m1",
            Message(type=peers.sent[0][1].type, body={"txs": [b"tx-a", b"tx-b"]}),
        )
        nursery.cancel_scope.cancel()
