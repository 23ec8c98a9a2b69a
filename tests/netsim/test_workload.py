"""netsim.workload: the outcome mapping, the open-loop schedule against a fake API,
and a short run against a real three-member cluster whose exports hold every
committed transaction."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from netsim.cluster import Cluster, ClusterSpec
from netsim.history import HistoryWriter, Outcome, read_history
from netsim.workload import (
    ANCHOR_OP,
    ISSUE_OP,
    TRANSFER_OP,
    Answer,
    Workload,
    WorkloadSetupFailed,
    WorkloadSpec,
    outcome_of,
)
from p2pledger.chain import Transaction
from p2pledger.client import (
    ApiRequestFailed,
    ApiResponseInvalid,
    ApiTimeout,
    ApiUnreachable,
)
from p2pledger.crypto import SigningKey
from p2pledger.errors import P2PLedgerError

TX = "ab" * 32


def fresh_seed() -> int:
    seed = random.randrange(2**32)
    print(f"netsim workload test seed: {seed}")
    return seed


def committed(height: int = 3, valid: bool = True, reason: str | None = None) -> dict[str, Any]:
    return {"id": TX, "status": "committed", "height": height, "valid": valid, "reason": reason}


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (committed(), Answer(outcome=Outcome.COMMITTED, height=3, valid=True)),
        (
            committed(valid=False, reason="overdraft"),
            Answer(outcome=Outcome.COMMITTED, height=3, valid=False, reason="overdraft"),
        ),
        (committed(height=0), Answer(outcome=Outcome.UNKNOWN, reason="invalid_answer")),
        (
            {**committed(), "id": "cd" * 32},
            Answer(outcome=Outcome.UNKNOWN, reason="invalid_answer"),
        ),
        (
            ApiRequestFailed(504, "commit_timeout", "not yet"),
            Answer(outcome=Outcome.PENDING, reason="commit_timeout"),
        ),
        (
            ApiRequestFailed(400, "bad_signature", "no"),
            Answer(outcome=Outcome.REJECTED, reason="bad_signature"),
        ),
        (
            ApiRequestFailed(503, "mempool_full", "later", retry_after_s=1),
            Answer(outcome=Outcome.REJECTED, reason="mempool_full"),
        ),
        (
            ApiRequestFailed(500, "internal_error", "oops"),
            Answer(outcome=Outcome.UNKNOWN, reason="internal_error"),
        ),
        (ApiTimeout("slow"), Answer(outcome=Outcome.UNKNOWN, reason="timeout")),
        (ApiUnreachable("down"), Answer(outcome=Outcome.UNKNOWN, reason="unreachable")),
        (ApiResponseInvalid("garbage"), Answer(outcome=Outcome.UNKNOWN, reason="invalid_answer")),
    ],
)
def test_outcome_of_maps_every_answer(result: Any, expected: Answer) -> None:
    assert outcome_of(result, tx_id=TX) == expected


# --- a fake cluster: no processes --------------------------------------------------------


@dataclass
class FakeTarget:
    names: list[str] = field(default_factory=lambda: ["m0", "m1", "m2"])
    users: dict[str, SigningKey] = field(init=False)
    chain_id: bytes = hashlib.sha256(b"fake chain").digest()

    def __post_init__(self) -> None:
        self.users = {n: SigningKey(hashlib.sha256(n.encode()).digest()) for n in self.names}

    def api_url(self, name: str) -> str:
        return f"http://127.0.0.1:1/{name}"


class FakeApi:
    """Answers submits from threads: by a script cycling over outcomes, after
    ``release`` is set (so answers can be held back)."""

    def __init__(self, script: list[Any], release: threading.Event) -> None:
        self.script = script
        self.release = release
        self.lock = threading.Lock()
        self.calls: list[Transaction] = []

    def submit(self, raw: bytes, *, wait: bool = False, timeout_s: float = 10.0) -> dict[str, Any]:
        assert wait
        tx = Transaction.decode(raw)
        tx.verify_signature()
        with self.lock:
            self.calls.append(tx)
            step = self.script[(len(self.calls) - 1) % len(self.script)]
        assert self.release.wait(timeout=10), "the test never released the answers"
        if isinstance(step, P2PLedgerError):
            raise step
        return {"id": tx.id.hex(), "status": "committed", **step}


async def test_every_sent_request_gets_its_mapped_outcome(tmp_path: Path) -> None:
    seed = fresh_seed()
    release = threading.Event()
    release.set()
    script: list[Any] = [
        {"height": 2, "valid": True, "reason": None},
        ApiRequestFailed(504, "commit_timeout", "later"),
        ApiRequestFailed(400, "unknown_signer", "who"),
        ApiTimeout("slow"),
    ]
    api = FakeApi(script, release)
    spec = WorkloadSpec(rate=200, duration_s=0.2, clients=1, transfer=0.5, seed=seed)
    with HistoryWriter(tmp_path / "history.jsonl") as history:
        w = Workload(
            FakeTarget(),
            spec,
            history,
            started_at=trio.current_time(),
            rng=random.Random(seed),
            client_factory=lambda url: api,
        )
        # clients=1 and instant answers: requests go one at a time, in schedule order.
        await w.run()
    records = read_history(tmp_path / "history.jsonl")
    stats = w.statistics()
    assert stats.scheduled == spec.requests == 40
    assert stats.sent == len(records) == len(api.calls) and stats.in_flight == 0
    assert stats.sent + stats.skipped == stats.scheduled
    expected = [Outcome.COMMITTED, Outcome.PENDING, Outcome.REJECTED, Outcome.UNKNOWN]
    by_id = {tx.id.hex(): i for i, tx in enumerate(api.calls)}
    for r in records:
        assert r.outcome is expected[by_id[r.id] % 4]
    assert stats.committed == sum(r.outcome is Outcome.COMMITTED for r in records)
    assert stats.rejected == sum(r.reason == "unknown_signer" for r in records)
    assert {r.op for r in records} == {TRANSFER_OP, ANCHOR_OP}
    target = FakeTarget()
    for tx in api.calls:
        member = next(m for m, k in target.users.items() if k.public_key == tx.signer)
        if tx.op == TRANSFER_OP:
            assert tx.args["from"] == tx.signer.raw != tx.args["to"]
            assert 1 <= tx.args["amount"] <= 10
        assert any(r.member == member for r in records if r.id == tx.id.hex())
    assert len({tx.id for tx in api.calls}) == len(api.calls)


async def test_the_schedule_is_open_loop_when_answers_are_slow(tmp_path: Path) -> None:
    seed = fresh_seed()
    release = threading.Event()
    api = FakeApi([{"height": 1, "valid": True, "reason": None}], release)
    spec = WorkloadSpec(rate=50, duration_s=0.4, clients=20, seed=seed)
    started = trio.current_time()
    with HistoryWriter(tmp_path / "history.jsonl") as history:
        w = Workload(
            FakeTarget(),
            spec,
            history,
            started_at=started,
            rng=random.Random(seed),
            client_factory=lambda url: api,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(w.run)
            with trio.fail_after(10):
                # (a request is counted sent when its task starts, just after it is
                # scheduled: wait for the last one's task too)
                while w.statistics().sent < spec.requests:
                    await trio.sleep(0.01)  # a poll interval
            # Every request went out while no answer had come back: the loop is open.
            assert w.statistics().sent == spec.requests == 20
            assert w.statistics().in_flight == 20
            release.set()
    records = sorted(read_history(tmp_path / "history.jsonl"), key=lambda r: r.sent)
    assert len(records) == 20 and all(r.outcome is Outcome.COMMITTED for r in records)
    for k, r in enumerate(records):
        assert abs(r.sent - records[0].sent - k / spec.rate) < 0.1, (k, r.sent)
    assert len({r.client for r in records}) == 20


async def test_requests_beyond_the_clients_are_skipped_not_queued(tmp_path: Path) -> None:
    seed = fresh_seed()
    release = threading.Event()
    api = FakeApi([{"height": 1, "valid": True, "reason": None}], release)
    spec = WorkloadSpec(rate=50, duration_s=0.4, clients=3, seed=seed)
    with HistoryWriter(tmp_path / "history.jsonl") as history:
        w = Workload(
            FakeTarget(),
            spec,
            history,
            started_at=trio.current_time(),
            client_factory=lambda url: api,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(w.run)
            with trio.fail_after(10):
                while w.statistics().scheduled < spec.requests:
                    await trio.sleep(0.01)  # a poll interval
            release.set()
    stats = w.statistics()
    assert (stats.sent, stats.skipped, stats.committed) == (3, 17, 3)
    assert len(read_history(tmp_path / "history.jsonl")) == 3


async def test_a_cancelled_run_still_records_what_it_sent(tmp_path: Path) -> None:
    release = threading.Event()
    api = FakeApi([{"height": 1, "valid": True, "reason": None}], release)
    spec = WorkloadSpec(rate=100, duration_s=10, clients=5)
    with HistoryWriter(tmp_path / "history.jsonl") as history:
        w = Workload(
            FakeTarget(),
            spec,
            history,
            started_at=trio.current_time(),
            client_factory=lambda u: api,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(w.run)
            with trio.fail_after(10):
                while w.statistics().in_flight < 5:
                    await trio.sleep(0.01)  # a poll interval
            nursery.cancel_scope.cancel()
    release.set()
    records = read_history(tmp_path / "history.jsonl")
    assert len(records) == 5 and {r.outcome for r in records} == {Outcome.UNKNOWN}
    assert {r.reason for r in records} == {"cancelled"}


async def test_setup_fails_clearly_when_funding_does_not_commit(tmp_path: Path) -> None:
    release = threading.Event()
    release.set()
    api = FakeApi([ApiRequestFailed(504, "commit_timeout", "later")], release)
    with HistoryWriter(tmp_path / "history.jsonl") as history:
        w = Workload(
            FakeTarget(),
            WorkloadSpec(),
            history,
            started_at=trio.current_time(),
            client_factory=lambda u: api,
        )
        with pytest.raises(WorkloadSetupFailed, match=r"m1 .*pending commit_timeout"):
            await w.setup()
    records = read_history(tmp_path / "history.jsonl")
    assert [r.op for r in records] == [ISSUE_OP] * 3
    assert all(tx.signer == FakeTarget().users["m0"].public_key for tx in api.calls)


# --- a real cluster -----------------------------------------------------------------------


async def test_a_short_run_against_a_real_cluster(tmp_path: Path) -> None:
    seed = fresh_seed()
    work = tmp_path / "work"
    spec = WorkloadSpec(rate=20, duration_s=3, clients=8, wait_timeout_s=5, seed=seed)
    async with Cluster(work, ClusterSpec(members=3, seed=seed)) as c:
        c.generate()
        await c.start_all()
        await c.wait_healthy(timeout_s=30)
        started = trio.current_time()
        with HistoryWriter(work / "history.jsonl") as history:
            w = Workload(c, spec, history, started_at=started, rng=random.Random(seed))
            with trio.fail_after(40):
                await w.setup()
                await w.run()
        stats = w.statistics()
        exports = {n: await c.export(n, work / "ledgers" / f"{n}.jsonl") for n in c.names}
        await c.stop_all()

    records = read_history(work / "history.jsonl")
    setup = [r for r in records if r.op == ISSUE_OP]
    load = [r for r in records if r.op != ISSUE_OP]
    assert len(setup) == 3 and all(r.outcome is Outcome.COMMITTED and r.valid for r in setup)
    assert stats.scheduled == spec.requests == 60
    assert len(load) == stats.sent and stats.in_flight == 0
    assert stats.skipped == 0 and stats.sent == 60, stats  # 8 clients are plenty here
    assert len({r.id for r in records}) == len(records)
    # An idle, healthy cluster commits everything it is sent.
    assert stats.committed == stats.sent, stats
    assert all(r.height is not None and r.height >= 1 and r.valid for r in load)

    # Open loop: sends follow the schedule (k / rate after the first), answers or not.
    sent = sorted(r.sent for r in load)
    first = sent[0]
    lateness = [s - first - k / spec.rate for k, s in enumerate(sent)]
    assert all(-0.01 < x < 0.25 for x in lateness), lateness

    for name, path in exports.items():
        blocks = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        heights_of = {tx: b["header"]["height"] for b in blocks for tx in b["tx_ids"]}
        for r in records:
            assert heights_of.get(r.id) == r.height, (name, r)
