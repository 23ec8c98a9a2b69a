"""Shared helpers of the wire tests: seeded keys, handshakes driven in memory."""

from __future__ import annotations

import random
from collections.abc import Collection

import trio
import trio.testing

from p2pledger.crypto import PublicKey, SigningKey
from p2pledger.crypto.aead import MAX_MESSAGES
from p2pledger.crypto.kx import EphemeralKey
from p2pledger.membership import Network
from p2pledger.wire.channel import SecureChannel
from p2pledger.wire.config import PROTOCOL_VERSION, TransportConfig
from p2pledger.wire.errors import RefusalReason
from p2pledger.wire.handshake import Handshake, HandshakeState, Side
from p2pledger.wire.replay import ReplayCache
from tests.factory import TestNetwork, seeded_key

INTRUDER = seeded_key("intruder")


class BadSigner(SigningKey):
    """A node key that signs everything with a wrong signature."""

    __slots__ = ()

    def sign(self, message: bytes) -> bytes:
        good = super().sign(message)
        return bytes([good[0] ^ 1]) + good[1:]


def handshake(
    side: Side,
    identity: SigningKey,
    net: TestNetwork,
    rng: random.Random,
    *,
    network: Network | None = None,
    chain_id: bytes | None = None,
    expected: PublicKey | None = None,
    cache: ReplayCache | None = None,
    removed: Collection[bytes] = frozenset(),
    version: int = PROTOCOL_VERSION,
    ephemeral: EphemeralKey | None = None,
    session_message_limit: int = MAX_MESSAGES,
) -> Handshake:
    return Handshake(
        side=side,
        identity=identity,
        chain_id=net.chain_id if chain_id is None else chain_id,
        network=net.network if network is None else network,
        removed_keys=removed,
        expected_peer=expected,
        ephemeral=ephemeral if ephemeral is not None else EphemeralKey(rng.randbytes(32)),
        replay_cache=cache,
        version=version,
        session_message_limit=session_message_limit,
    )


def pump(a: Handshake, b: Handshake, *, accept: bool = True) -> None:
    """Move bytes between two handshakes until neither has anything to say.

    Raises whatever refusal either side raises; the listener accepts (or rejects as a
    duplicate) when asked for its verdict.
    """
    for _ in range(10):
        moved = False
        for src, dst in ((a, b), (b, a)):
            if dst.state is HandshakeState.NEED_VERDICT:
                if accept:
                    dst.accept()
                else:
                    dst.reject(RefusalReason.DUPLICATE)
            data = src.data_to_send()
            if data and dst.state not in (HandshakeState.DONE, HandshakeState.FAILED):
                dst.receive_data(data)
                moved = True
        if not moved:
            return


def channel_pair(
    net: TestNetwork,
    rng: random.Random,
    *,
    config: TransportConfig | None = None,
    dialer: int = 0,
    listener: int = 1,
) -> tuple[SecureChannel, SecureChannel]:
    """Two channels joined by an in-memory stream pair, handshakes not yet run."""
    cfg = config or TransportConfig()
    a, b = trio.testing.memory_stream_pair()
    d = SecureChannel(
        a,
        handshake(
            Side.DIALER,
            net.node_keys[dialer],
            net,
            rng,
            expected=net.node_keys[listener].public_key,
            session_message_limit=cfg.session_message_limit,
        ),
        config=cfg,
    )
    l_ = SecureChannel(
        b,
        handshake(
            Side.LISTENER,
            net.node_keys[listener],
            net,
            rng,
            session_message_limit=cfg.session_message_limit,
        ),
        config=cfg,
    )
    return d, l_


async def connect_pair(d: SecureChannel, l_: SecureChannel) -> None:
    """Run both handshakes to completion."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(d.do_handshake)
        nursery.start_soon(l_.do_handshake)
