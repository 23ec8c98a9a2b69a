"""The verification pool: entry checks in worker threads, in order, and the cache of
verified ids that block validation skips."""

from __future__ import annotations

import pytest
import trio

from p2pledger import codec
from p2pledger.api import TxRejected
from p2pledger.api.admission import check_entry
from p2pledger.chain import Transaction
from p2pledger.config import NodeLimits
from p2pledger.crypto import SigningKey
from p2pledger.node.verify import Verifier, default_verify_threads
from tests.factory import TestNetwork, seeded_key


def forged(tx: Transaction) -> bytes:
    return codec.encode({"body": tx.body, "sig": bytes(64)})


@pytest.mark.parametrize("threads", [0, 1, 2, 4])
async def test_results_keep_their_order_and_verified_ids_are_remembered(threads: int) -> None:
    net = TestNetwork(n=3)
    txs = [net.tx(n, user=n % 3) for n in range(1, 101)]
    raws = [t.raw for t in txs]
    raws[7] = forged(txs[7])
    verifier = Verifier(threads=threads, cache_size=1000)
    seen: list[list[bytes]] = []

    def committed(ids: list[bytes]) -> set[bytes]:
        seen.append(ids)
        return {txs[3].id} & set(ids)

    checked, done = await verifier.check(
        raws,
        chain_id=net.chain_id,
        network=net.network,
        max_tx_bytes=65536,
        committed=committed,
    )
    assert isinstance(checked[7], TxRejected) and checked[7].reason == "bad_signature"
    assert [c.id for c in checked if isinstance(c, Transaction)] == [
        t.id for i, t in enumerate(txs) if i != 7
    ]
    assert done == {txs[3].id}
    assert sum(len(ids) for ids in seen) == 99  # one store lookup per chunk, all checked ids
    assert txs[0].id in verifier and txs[99].id in verifier and txs[7].id not in verifier
    assert txs[0].id in verifier.verified


async def test_the_cache_is_bounded() -> None:
    net = TestNetwork(n=3)
    txs = [net.tx(n) for n in range(1, 21)]
    verifier = Verifier(threads=2, cache_size=5)
    await verifier.check(
        [t.raw for t in txs], chain_id=net.chain_id, network=net.network, max_tx_bytes=65536
    )
    assert [t.id in verifier for t in txs].count(True) == 5
    assert txs[-1].id in verifier and txs[0].id not in verifier


async def test_no_more_threads_verify_at_once_than_configured() -> None:
    net = TestNetwork(n=3)
    txs = [net.tx(n) for n in range(1, 201)]
    verifier = Verifier(threads=2, cache_size=1000)
    peak = 0
    original = trio.to_thread.run_sync

    async def counting(*args: object, limiter: trio.CapacityLimiter, **kw: object) -> object:
        nonlocal peak
        result = await original(*args, limiter=limiter, **kw)  # type: ignore[arg-type]
        peak = max(peak, limiter.total_tokens)
        return result

    trio.to_thread.run_sync = counting  # type: ignore[assignment]
    try:
        await verifier.check(
            [t.raw for t in txs], chain_id=net.chain_id, network=net.network, max_tx_bytes=65536
        )
    finally:
        trio.to_thread.run_sync = original
    assert peak == 2


def test_threads_must_not_be_negative_and_default_to_the_cores() -> None:
    with pytest.raises(ValueError):
        Verifier(threads=-1, cache_size=10)
    assert default_verify_threads() >= 1
    assert NodeLimits().verify_threads == 0  # 0: one per core
    assert NodeLimits().worker_threads  # threads unless the member is told otherwise


async def test_with_no_threads_the_checks_run_on_the_loop_and_let_it_in() -> None:
    net = TestNetwork(n=3)
    txs = [net.tx(n) for n in range(1, 601)]  # five slices
    verifier = Verifier(threads=0, cache_size=1000)
    original = trio.to_thread.run_sync
    offloaded: list[object] = []
    ticks = 0

    async def recording(*args: object, **kw: object) -> object:
        offloaded.append(args[0])
        return await original(*args, **kw)  # type: ignore[arg-type]

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    trio.to_thread.run_sync = recording  # type: ignore[assignment]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.lowlevel.checkpoint()
            before = ticks
            checked, _ = await verifier.check(
                [t.raw for t in txs], chain_id=net.chain_id, network=net.network, max_tx_bytes=65536
            )
            during = ticks - before
            nursery.cancel_scope.cancel()
    finally:
        trio.to_thread.run_sync = original
    assert [c.id for c in checked if isinstance(c, Transaction)] == [t.id for t in txs]
    assert offloaded == []
    # the loop ran the other task between the slices (at most once in one go)
    assert during >= 3


@pytest.mark.parametrize("threads", [0, 1, 2])
async def test_a_batch_gives_each_transaction_the_code_check_entry_gives_it(threads: int) -> None:
    # The pool checks a chunk's signatures after all its other checks: the code of a
    # transaction with several faults must still be the one the single check gives.
    net = TestNetwork(n=3)

    def signed(key: SigningKey, chain_id: bytes) -> Transaction:
        args = {"digest": bytes(32), "description": "x"}
        return Transaction.create(
            key, chain_id=chain_id, op="notary.anchor", args=args, nonce=1, time_ms=1
        )

    stranger = signed(seeded_key("stranger"), net.chain_id)
    good = [net.tx(n, user=n % 3) for n in range(1, 40)]
    raws = [t.raw for t in good]
    raws[3] = forged(good[3])  # bad signature
    raws[5] = b"\x00"  # malformed
    raws[9] = signed(net.user_keys[0], bytes(32)).raw  # another chain
    raws[11] = stranger.raw  # unknown signer
    raws[13] = forged(stranger)  # unknown signer and a bad signature: the signer comes first
    raws[17] = good[17].raw + bytes(70_000)  # too large, and malformed
    verifier = Verifier(threads=threads, cache_size=1000)
    checked, _ = await verifier.check(
        raws, chain_id=net.chain_id, network=net.network, max_tx_bytes=65536
    )

    def code(raw: bytes) -> str | bytes:
        try:
            return check_entry(raw, chain_id=net.chain_id, network=net.network).id
        except TxRejected as exc:
            return exc.reason

    got = [c.reason if isinstance(c, TxRejected) else c.id for c in checked]
    assert got == [code(raw) for raw in raws]
    assert [got[i] for i in (3, 5, 9, 11, 13, 17)] == [
        "bad_signature",
        "malformed",
        "wrong_chain",
        "unknown_signer",
        "unknown_signer",
        "too_large",
    ]
    assert good[3].id not in verifier and stranger.id not in verifier
