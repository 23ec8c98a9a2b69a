"""The mempool keeps arrival order within its limits and never drops silently."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pledger.gossip import Mempool, MempoolFull, SeenCache
from tests.factory import TestNetwork

NET = TestNetwork(n=3)
TXS = [NET.tx(i, user=i % 3) for i in range(1, 40)]


def test_batches_come_out_in_arrival_order_and_stay_until_removed() -> None:
    pool = Mempool(max_transactions=100, max_bytes=1 << 20)
    for tx in TXS[:10]:
        assert pool.add(tx)
    first = pool.batch(max_transactions=4, max_bytes=1 << 20)
    assert [t.id for t in first] == [t.id for t in TXS[:4]]
    assert len(pool) == 10  # batching does not remove
    skipped = pool.batch(max_transactions=4, max_bytes=1 << 20, skip=frozenset(t.id for t in first))
    assert [t.id for t in skipped] == [t.id for t in TXS[4:8]]
    assert pool.remove(t.id for t in first) == 4
    assert [t.id for t in pool.batch(max_transactions=2, max_bytes=1 << 20)] == [
        TXS[4].id,
        TXS[5].id,
    ]


def test_a_duplicate_is_not_added_twice() -> None:
    pool = Mempool(max_transactions=10, max_bytes=1 << 20)
    assert pool.add(TXS[0])
    assert not pool.add(TXS[0])
    assert len(pool) == 1
    assert pool.statistics().bytes == len(TXS[0].raw)


def test_full_by_count_refuses_and_changes_nothing() -> None:
    pool = Mempool(max_transactions=3, max_bytes=1 << 20, retry_after_s=2.5)
    for tx in TXS[:3]:
        pool.add(tx)
    before = pool.ids()
    with pytest.raises(MempoolFull) as info:
        pool.add(TXS[3])
    assert info.value.retry_after_s == 2.5
    assert pool.ids() == before


def test_full_by_bytes_refuses() -> None:
    size = len(TXS[0].raw)
    pool = Mempool(max_transactions=100, max_bytes=size * 2 + size // 2)
    pool.add(TXS[0])
    pool.add(TXS[1])
    with pytest.raises(MempoolFull, match="full"):
        pool.add(TXS[2])
    assert len(pool) == 2


def test_batch_respects_the_byte_limit() -> None:
    pool = Mempool(max_transactions=100, max_bytes=1 << 20)
    for tx in TXS[:6]:
        pool.add(tx)
    limit = sum(len(t.raw) for t in TXS[:3])
    assert len(pool.batch(max_transactions=100, max_bytes=limit)) == 3


@settings(derandomize=True, database=None, max_examples=60)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, len(TXS) - 1)), max_size=80))
def test_limits_hold_under_any_sequence(ops: list[tuple[bool, int]]) -> None:
    pool = Mempool(max_transactions=8, max_bytes=len(TXS[0].raw) * 6)
    for add, i in ops:
        if add:
            with contextlib.suppress(MempoolFull):
                pool.add(TXS[i])
        else:
            pool.remove([TXS[i].id])
        stats = pool.statistics()
        assert stats.transactions <= 8
        assert stats.bytes <= pool.max_bytes
        assert stats.bytes == sum(len(pool.get(i).raw) for i in pool.ids())  # type: ignore[union-attr]


def test_seen_cache_forgets_the_oldest() -> None:
    seen = SeenCache(capacity=2)
    assert seen.add(b"a") and seen.add(b"b")
    assert not seen.add(b"a")  # refreshes a
    assert seen.add(b"c")  # evicts b, the least recently seen
    assert b"a" in seen and b"c" in seen and b"b" not in seen
    assert len(seen) == 2
