"""Tests of the LMDB ledger store: chaining rules, atomicity, locking, formats, growth,
and crash safety with a real writer process killed at chosen and random moments."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pledger.chain import VALID, ZERO_HASH, Block, build_block, network_of_genesis
from p2pledger.chain import validate_block as validate
from p2pledger.errors import (
    BlockRejected,
    NotFound,
    StoreError,
    StoreFormatError,
    StoreLocked,
)
from p2pledger.store import LEDGER_DIR, LOCK_FILE, LedgerStore, Txn
from p2pledger.store.env import LmdbEnvironment
from p2pledger.store.ledger import _prefix_end
from tests import factory
from tests.procs import LINE_TIMEOUT, Lines, start_module, stop
from tests.store_writer import filler

MiB = 1024 * 1024

NET = factory.TestNetwork()
OTHER_NET = factory.TestNetwork(n=4)
CHAIN = list(NET.chain(12, txs_per_block=2))
LONG_CHAIN = list(NET.chain(150, txs_per_block=1))


# --- helpers -------------------------------------------------------------------------


def snapshot(store: LedgerStore) -> dict[str, Any]:
    """Everything observable about a store, to compare before and after a refusal."""
    tip = store.tip()
    heights = range(0 if tip is None else tip[0] + 1)
    return {
        "tip": tip,
        "chain_id": store.chain_id(),
        "entries": dict(store.statistics().entries),
        "blocks": [store.block_bytes(h) for h in heights],
        "state": store.state_items(),
    }


def tx_id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def reseal(block: Block, key_index: int, **changes: Any) -> Block:
    """``block`` with header fields changed, signed again by a member's node key."""
    header = dataclasses.replace(block.header, **changes)
    return Block.seal(header, block.txs, block.results, NET.node_keys[key_index])


def child_block(parent: Block, txs: list[bytes]) -> Block:
    return build_block(
        parent=parent.header,
        parent_hash=parent.hash,
        txs=txs,
        results=[VALID] * len(txs),
        state_root=ZERO_HASH,
        time_ms=parent.header.time_ms + 1000,
        term=1,
        membership_version=0,
        proposer=NET.node_keys[0],
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LedgerStore]:
    with LedgerStore.open(tmp_path / "node", create=True) as s:
        yield s


def start_helper(*args: str) -> subprocess.Popen[bytes]:
    return start_module("tests.store_writer", *args)


def check_ledger(store: LedgerStore, acknowledged: int, txs_per_block: int) -> int:
    """Audit a ledger the writer made: whole, valid, indexed, and holding every ack."""
    tip = store.tip()
    assert tip is not None, "the store lost its genesis"
    tip_height, tip_hash = tip
    assert tip_height >= acknowledged, f"acknowledged block {acknowledged} is lost"
    genesis = store.block(0)
    network = network_of_genesis(genesis)
    assert store.chain_id() == genesis.hash
    expected = NET.chain(tip_height, txs_per_block)
    parent: Block | None = None
    for height, (block, want) in enumerate(zip(store.blocks(0), expected, strict=True)):
        assert block.height == height
        assert block.encode() == want.encode()
        if parent is not None:
            validate(block, parent=parent.header, parent_hash=parent.hash, network=network)
            for index, raw in enumerate(block.txs):
                assert store.tx_location(tx_id(raw)) == (height, index)
        assert store.height_of(block.hash) == height
        assert store.state_get(b"fill/%08d" % height) == filler(height)
        parent = block
    assert parent is not None and parent.hash == tip_hash
    with pytest.raises(NotFound):
        store.block(tip_height + 1)
    assert store.state_get(b"height") == str(tip_height).encode()
    entries = store.statistics().entries
    assert entries["blocks"] == entries["block_hashes"] == tip_height + 1
    assert entries["tx_index"] == tip_height * txs_per_block
    assert entries["state"] == tip_height + 2
    return tip_height


# --- appending and reading -----------------------------------------------------------


def test_appended_blocks_read_back_with_their_indexes(store: LedgerStore) -> None:
    assert store.tip() is None and store.chain_id() is None
    for block in CHAIN:
        store.append_block(block)
    assert store.tip() == (CHAIN[-1].height, CHAIN[-1].hash)
    assert store.chain_id() == CHAIN[0].hash
    for block in CHAIN:
        assert store.block(block.height) == block
        assert store.block_bytes(block.height) == block.encode()
        assert store.block_by_hash(block.hash) == block
        assert store.height_of(block.hash) == block.height
    for block in CHAIN[1:]:
        for index, raw in enumerate(block.txs):
            assert store.tx_location(tx_id(raw)) == (block.height, index)
    # genesis's entry is the network description, not a transaction
    assert store.tx_location(tx_id(CHAIN[0].txs[0])) is None
    assert store.height_of(bytes(32)) is None
    assert store.tx_location(bytes(32)) is None
    assert store.height_of(b"") is None and store.tx_location(b"x" * 600) is None
    with pytest.raises(NotFound, match="no block at height 13 \\(the tip is at height 12\\)"):
        store.block(13)
    with pytest.raises(NotFound):
        store.block(-1)
    with pytest.raises(NotFound, match=bytes(32).hex()):
        store.block_by_hash(bytes(32))


def test_empty_store_has_no_blocks(store: LedgerStore) -> None:
    with pytest.raises(NotFound, match="the ledger is empty"):
        store.block_bytes(0)
    assert list(store.blocks(0)) == []
    stats = store.statistics()
    assert stats.tip_height is None
    assert stats.entries["blocks"] == 0


def test_state_writes_commit_with_the_block_and_none_deletes(store: LedgerStore) -> None:
    store.append_block(CHAIN[0], state_writes={b"a": b"1", b"b": b"2"})
    store.append_block(CHAIN[1], state_writes={b"a": None, b"c": b""})
    assert store.state_get(b"a") is None
    assert store.state_items() == [(b"b", b"2"), (b"c", b"")]
    with pytest.raises(ValueError, match="state key"):
        store.append_block(CHAIN[2], state_writes={b"": b"x"})
    with pytest.raises(ValueError, match="state key"):
        store.append_block(CHAIN[2], state_writes={b"k" * 512: b"x"})
    assert store.tip() == (1, CHAIN[1].hash)


@pytest.fixture(scope="module")
def long_store() -> Iterator[LedgerStore]:
    with (
        tempfile.TemporaryDirectory() as directory,
        LedgerStore.open(Path(directory) / "node", create=True) as s,
    ):
        for block in LONG_CHAIN:
            s.append_block(block)
        yield s


@given(start=st.integers(0, 160), stop=st.none() | st.integers(0, 1 << 70))
@settings(max_examples=40, deadline=None)
def test_blocks_yields_a_height_range(
    long_store: LedgerStore, start: int, stop: int | None
) -> None:
    got = [b.hash for b in long_store.blocks(start, stop)]
    assert got == [b.hash for b in LONG_CHAIN[start:stop]]


def test_blocks_refuses_a_negative_start(store: LedgerStore) -> None:
    with pytest.raises(ValueError, match="start height"):
        store.blocks(-1)


STATE_KEYS = [b"a", b"ab", b"abc", b"b", b"b\xff", b"b\xff\xff", b"c\x00", b"\xff", b"\xff\x01"]
PREFIXES = [b"", b"a", b"ab", b"b", b"b\xff", b"c", b"\xff", b"\xff\xff"]


@given(
    batches=st.lists(
        st.dictionaries(st.sampled_from(STATE_KEYS), st.none() | st.binary(max_size=8)),
        min_size=1,
        max_size=len(CHAIN),
    ),
    prefix=st.sampled_from(PREFIXES),
)
@settings(max_examples=30, deadline=None)
def test_state_matches_a_dict_model(
    batches: list[dict[bytes, bytes | None]], prefix: bytes
) -> None:
    model: dict[bytes, bytes] = {}
    with (
        tempfile.TemporaryDirectory() as directory,
        LedgerStore.open(Path(directory) / "node", create=True) as store,
    ):
        for block, batch in zip(CHAIN, batches, strict=False):
            store.append_block(block, state_writes=batch)
            for key, value in batch.items():
                if value is None:
                    model.pop(key, None)
                else:
                    model[key] = value
        assert {k: store.state_get(k) for k in STATE_KEYS} == {k: model.get(k) for k in STATE_KEYS}
        want = sorted((k, v) for k, v in model.items() if k.startswith(prefix))
        assert store.state_items(prefix) == want


@given(prefix=st.binary(max_size=4), key=st.binary(min_size=1, max_size=6))
def test_prefix_end_bounds_exactly_the_keys_with_the_prefix(prefix: bytes, key: bytes) -> None:
    end = _prefix_end(prefix)
    in_range = prefix <= key and (end is None or key < end)
    assert in_range == key.startswith(prefix)


# --- refusals change nothing ---------------------------------------------------------


def _skip() -> Block:
    return CHAIN[5]


def _repeat() -> Block:
    return CHAIN[3]


def _genesis_again() -> Block:
    return CHAIN[0]


def _wrong_prev() -> Block:
    return reseal(CHAIN[4], 1, prev=CHAIN[2].hash)


def _other_chain() -> Block:
    return list(OTHER_NET.chain(4, 2))[4]


def _committed_tx() -> Block:
    return child_block(CHAIN[3], [NET.tx(1000).raw, CHAIN[2].txs[0]])


def _tx_twice() -> Block:
    raw = NET.tx(1001).raw
    return child_block(CHAIN[3], [raw, raw])


REFUSALS: dict[str, tuple[Callable[[], Block], str]] = {
    "height gap": (_skip, "expected height 4, got height 5"),
    "height repeated": (_repeat, "expected height 4, got height 3"),
    "second genesis": (_genesis_again, "got a genesis block: the ledger already has"),
    "wrong prev": (_wrong_prev, f"follow the tip {CHAIN[3].hash.hex()}, got prev"),
    "other chain": (_other_chain, f"expected a block of chain {CHAIN[0].hash.hex()}"),
    "committed tx": (_committed_tx, f"{tx_id(CHAIN[2].txs[0]).hex()} is already committed"),
    "tx twice in block": (_tx_twice, f"{tx_id(NET.tx(1001).raw).hex()} appears twice"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_block_changes_nothing(store: LedgerStore, case: str) -> None:
    make, message = REFUSALS[case]
    for block in CHAIN[:4]:
        store.append_block(block, state_writes={b"h": bytes([block.height])})
    before = snapshot(store)
    bad = make()
    with pytest.raises(BlockRejected, match=message):
        store.append_block(bad, state_writes={b"h": b"bad", b"new": b"bad"})
    assert snapshot(store) == before
    for raw in bad.txs:
        location = store.tx_location(tx_id(raw))
        assert location is None or location[0] < 4
    store.append_block(CHAIN[4])  # the store still takes the right block
    assert store.tip() == (4, CHAIN[4].hash)


def test_empty_store_takes_only_a_genesis(store: LedgerStore) -> None:
    with pytest.raises(
        BlockRejected, match="expected the genesis block \\(height 0\\), got height 1"
    ):
        store.append_block(CHAIN[1])
    fake = Block.seal(dataclasses.replace(CHAIN[0].header, prev=CHAIN[0].hash), (), (), None)
    with pytest.raises(BlockRejected, match="expected a genesis block"):
        store.append_block(fake)
    assert snapshot(store)["entries"]["blocks"] == 0


def test_expected_chain_id_refuses_another_genesis(tmp_path: Path) -> None:
    with LedgerStore.open(tmp_path / "n", create=True, expected_chain_id=NET.chain_id) as store:
        with pytest.raises(
            BlockRejected,
            match=f"genesis of chain {NET.chain_id.hex()}, got the genesis of chain "
            f"{OTHER_NET.chain_id.hex()}",
        ):
            store.append_block(OTHER_NET.genesis)
        assert store.tip() is None
        store.append_block(NET.genesis)
        assert store.chain_id() == NET.chain_id


# --- opening: missing, locked, other formats and chains ------------------------------


def test_missing_directory_needs_init(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(StoreError, match="does not exist; run `p2pledger init`"):
        LedgerStore.open(missing)
    assert not missing.exists()
    missing.mkdir()
    with pytest.raises(StoreError, match="holds no ledger; run `p2pledger init`"):
        LedgerStore.open(missing)


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    with LedgerStore.open(tmp_path / "n", create=True) as store:
        for block in CHAIN:
            store.append_block(block, state_writes={b"k%d" % block.height: b"v"})
        before = snapshot(store)
    with LedgerStore.open(tmp_path / "n", expected_chain_id=NET.chain_id) as store:
        assert snapshot(store) == before


def test_second_open_in_this_process_is_locked(store: LedgerStore) -> None:
    with pytest.raises(StoreLocked, match=f"already open in this process \\(pid {os.getpid()}\\)"):
        LedgerStore.open(store.data_dir)
    store.close()
    with LedgerStore.open(store.data_dir) as again:
        assert again.tip() is None


def test_closed_store_refuses_calls(store: LedgerStore) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="is closed"):
        store.tip()


def test_another_process_holding_the_store_locks_us_out(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    proc = start_helper("hold", str(data_dir))
    try:
        line = Lines(proc).next(time.monotonic() + LINE_TIMEOUT)
        assert line == f"open {proc.pid}"
        with pytest.raises(StoreLocked, match=f"in use by process {proc.pid}"):
            LedgerStore.open(data_dir)
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=LINE_TIMEOUT) == 0
    finally:
        stop(proc)
    with LedgerStore.open(data_dir) as store:
        assert store.tip() is None


def test_we_holding_the_store_lock_out_another_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    with LedgerStore.open(data_dir, create=True) as store:
        store.append_block(CHAIN[0])
        proc = start_helper("append", str(data_dir), "--blocks", "3")
        try:
            out, err_bytes = proc.communicate(timeout=LINE_TIMEOUT)
        finally:
            stop(proc)
        err = err_bytes.decode(errors="replace")
        assert proc.returncode == 3, err
        assert out == b""
        assert f"StoreLocked: the data directory {data_dir} is in use by process" in err
        assert str(os.getpid()) in err
        assert store.tip() == (0, CHAIN[0].hash)


def test_a_reader_process_follows_a_live_writer_through_map_growth(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    with LedgerStore.open(data_dir, create=True, initial_map_size=MiB) as store:
        store.append_block(CHAIN[0])
        proc = start_helper("read", str(data_dir))
        try:
            assert proc.stdin is not None
            lines = Lines(proc)
            proc.stdin.write(b"?\n")
            proc.stdin.flush()
            assert lines.next(time.monotonic() + LINE_TIMEOUT) == "tip 0"
            before = store.statistics().map_size
            for block in CHAIN[1:]:
                store.append_block(block, state_writes={b"big%d" % block.height: bytes(MiB // 2)})
            assert store.statistics().map_size > before  # the writer grew the map
            proc.stdin.write(b"?\n")
            proc.stdin.flush()
            assert lines.next(time.monotonic() + LINE_TIMEOUT) == f"tip {CHAIN[-1].height}"
            proc.stdin.close()
            assert proc.wait(timeout=LINE_TIMEOUT) == 0
        finally:
            stop(proc)


def test_readonly_open_of_a_missing_ledger_says_to_init(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="p2pledger init"):
        LedgerStore.open(tmp_path / "nothing", readonly=True)


def _tamper(data_dir: Path, fn: Callable[[Txn], object], dbs: list[str]) -> None:
    env = LmdbEnvironment.open(data_dir / LEDGER_DIR, create=True, map_size=MiB)
    try:
        env.open_dbs(dbs, create=True)
        env.write(fn)
    finally:
        env.close()


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    LedgerStore.open(data_dir, create=True).close()
    _tamper(data_dir, lambda txn: txn.put("meta", b"format_version", b"999"), ["meta"])
    with pytest.raises(
        StoreFormatError, match="format version 999; this p2pledger reads version 1"
    ):
        LedgerStore.open(data_dir)
    # the refusal released the lock: once fixed, the directory opens
    _tamper(data_dir, lambda txn: txn.put("meta", b"format_version", b"1"), ["meta"])
    LedgerStore.open(data_dir).close()


def test_another_chain_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    with LedgerStore.open(data_dir, create=True) as store:
        store.append_block(NET.genesis)
    with pytest.raises(StoreFormatError) as info:
        LedgerStore.open(data_dir, expected_chain_id=OTHER_NET.chain_id)
    assert NET.chain_id.hex() in str(info.value)
    assert OTHER_NET.chain_id.hex() in str(info.value)
    LedgerStore.open(data_dir, expected_chain_id=NET.chain_id).close()


def test_an_lmdb_environment_that_is_not_a_ledger_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    (data_dir / LEDGER_DIR).mkdir()
    _tamper(data_dir, lambda txn: txn.put("other", b"k", b"v"), ["other"])
    with pytest.raises(StoreFormatError, match="not a p2pledger ledger \\(its databases: other\\)"):
        LedgerStore.open(data_dir, create=True)


def test_garbage_files_are_refused_with_a_translated_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    (data_dir / LEDGER_DIR).mkdir(parents=True)
    (data_dir / LEDGER_DIR / "data.mdb").write_bytes(random.Random(7).randbytes(64 * 1024))
    with pytest.raises(StoreFormatError, match="damaged or not an LMDB environment") as info:
        LedgerStore.open(data_dir)
    assert isinstance(info.value.__cause__, lmdb.Error)
    assert (data_dir / LOCK_FILE).exists()
    # the lock was released on the way out
    with pytest.raises(StoreFormatError):
        LedgerStore.open(data_dir)


# --- the map grows by itself ---------------------------------------------------------


def test_map_grows_far_past_its_initial_size_under_concurrent_reads(tmp_path: Path) -> None:
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    blocks = list(NET.chain(24, txs_per_block=1))
    values = {b.height: rng.randbytes(256 * 1024) for b in blocks}
    values[10] = rng.randbytes(3 * MiB)  # larger than the map doubled once
    errors: list[BaseException] = []
    reads = [0, 0]
    started = threading.Barrier(3)
    done = threading.Event()

    def reader(slot: int) -> None:
        started.wait()
        try:
            while not done.is_set():
                tip = store.tip()
                if tip is not None:
                    assert store.block(tip[0]).hash == tip[1]
                    assert store.state_get(b"v%d" % tip[0]) == values[tip[0]]
                reads[slot] += 1
                # Pace the readers: two threads reading in a tight loop can starve the
                # writer of the GIL for minutes (seen on 2 cores), which tests nothing.
                done.wait(0.0005)
        except BaseException as exc:
            errors.append(exc)

    store = LedgerStore.open(tmp_path / "node", create=True, initial_map_size=MiB)
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        started.wait()
        for block in blocks:
            store.append_block(block, state_writes={b"v%d" % block.height: values[block.height]})
    finally:
        done.set()
        for thread in threads:
            thread.join()
        stats = store.statistics()
        store.close()
    assert not errors, errors
    assert min(reads) > 0
    assert stats.map_growths >= 3
    assert stats.used_bytes > 8 * MiB
    assert stats.map_size >= stats.used_bytes
    assert stats.file_bytes >= stats.used_bytes - stats.page_size
    with LedgerStore.open(tmp_path / "node", initial_map_size=MiB) as store:
        for height, value in values.items():
            assert store.state_get(b"v%d" % height) == value
        assert store.tip() == (24, blocks[-1].hash)


# --- the reserved databases ----------------------------------------------------------


def test_transact_reaches_only_the_reserved_databases(tmp_path: Path) -> None:
    with LedgerStore.open(tmp_path / "node", create=True, initial_map_size=MiB) as store:

        def append_entries(txn: Txn) -> int:
            for index in range(1, 11):
                txn.put("raft_log", index.to_bytes(8, "big"), b"entry%d" % index)
            txn.put("raft_state", b"hard", b"term=3")
            return txn.count("raft_log")

        assert store.transact(append_entries, write=True) == 10

        def truncate(txn: Txn) -> int:
            return txn.delete_range("raft_log", start=(8).to_bytes(8, "big"))

        assert store.transact(truncate, write=True) == 3

        def compact(txn: Txn) -> int:
            return txn.delete_range("raft_log", stop=(3).to_bytes(8, "big"))

        assert store.transact(compact, write=True) == 2

        def read(txn: Txn) -> tuple[Any, ...]:
            return (
                txn.first("raft_log"),
                txn.last("raft_log"),
                txn.get("raft_state", b"hard"),
                len(txn.items("raft_log", limit=4)),
            )

        first, last, hard, some = store.transact(read)
        assert first == ((3).to_bytes(8, "big"), b"entry3")
        assert last == ((7).to_bytes(8, "big"), b"entry7")
        assert (hard, some) == (b"term=3", 4)

        with pytest.raises(ValueError, match="'blocks' is not open to this transaction"):
            store.transact(lambda txn: txn.get("blocks", b"k"))
        with pytest.raises(ValueError, match="read transaction"):
            store.transact(lambda txn: txn.put("raft_state", b"k", b"v"))

        def fail_midway(txn: Txn) -> None:
            txn.put("raft_state", b"hard", b"term=4")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            store.transact(fail_midway, write=True)
        assert store.transact(lambda txn: txn.get("raft_state", b"hard")) == b"term=3"

        big = os.urandom(3 * MiB)  # needs the map to grow: fn runs again
        store.transact(lambda txn: txn.put("raft_log", b"big", big), write=True)
        assert store.transact(lambda txn: txn.get("raft_log", b"big")) == big
        assert store.statistics().map_growths >= 1


async def test_calls_work_from_trio_worker_threads(tmp_path: Path) -> None:
    store = await trio.to_thread.run_sync(lambda: LedgerStore.open(tmp_path / "node", create=True))
    tips: list[int] = []
    written = trio.Event()

    async def write() -> None:
        for block in CHAIN:
            await trio.to_thread.run_sync(store.append_block, block)
        written.set()

    async def watch() -> None:
        while not written.is_set():
            tip = await trio.to_thread.run_sync(store.tip)
            tips.append(-1 if tip is None else tip[0])

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            nursery.start_soon(watch)
        assert tips == sorted(tips)
        assert await trio.to_thread.run_sync(store.tip) == (12, CHAIN[-1].hash)
    finally:
        await trio.to_thread.run_sync(store.close)


# --- crash safety --------------------------------------------------------------------


def test_killed_writer_leaves_every_acknowledged_block_whole(tmp_path: Path) -> None:
    seed = int(os.environ.get("P2PLEDGER_TEST_SEED", random.randrange(1 << 32)))
    print(f"crash test seed {seed} (set P2PLEDGER_TEST_SEED={seed} to replay)")
    rng = random.Random(seed)
    data_dir = tmp_path / "node"
    txs = 3
    # kill after N acknowledged blocks, then once after a seeded random time
    plans: list[tuple[str, float]] = [("acks", 1), ("acks", 7), ("acks", 23)]
    plans.append(("seconds", rng.uniform(0.0, 0.12)))
    acknowledged = -1
    for kind, amount in plans:
        target = acknowledged + (40 if kind == "acks" else 400)
        proc = start_helper("append", str(data_dir), "--txs", str(txs), "--blocks", str(target))
        err = ""
        heights: list[int] = []
        try:
            lines = Lines(proc)
            resume = lines.next(time.monotonic() + LINE_TIMEOUT)
            assert resume is not None and resume.startswith("resume "), resume
            assert int(resume.split()[1]) >= acknowledged
            if kind == "acks":
                while len(heights) < amount:
                    line = lines.next(time.monotonic() + LINE_TIMEOUT)
                    assert line is not None, "the writer stopped early"
                    heights.append(int(line))
            else:
                kill_at = time.monotonic() + amount
                try:
                    while (line := lines.next(kill_at)) is not None:
                        heights.append(int(line))
                except TimeoutError:
                    pass
            proc.kill()
            # heights already in the pipe were printed after their append returned
            while (line := lines.next(time.monotonic() + LINE_TIMEOUT)) is not None:
                heights.append(int(line))
        finally:
            err = stop(proc)
        finished = proc.returncode == 0 and heights[-1:] == [target]
        assert proc.returncode == -9 or finished, f"writer failed ({proc.returncode}): {err}"
        if heights:
            assert heights == list(range(heights[0], heights[-1] + 1))
            acknowledged = heights[-1]
        with LedgerStore.open(data_dir) as store:
            tip = check_ledger(store, acknowledged, txs)
        print(f"{kind} {amount}: acknowledged {acknowledged}, tip {tip}")
    assert acknowledged >= 1 + 7 + 23 - 1
