"""The checker on real exported ledgers: a clean run passes, each planted fault is named.

The ledgers are built by p2pledger's own ``Ledger`` (real signatures, real state
roots) and turned into the dicts ``p2pledger export`` writes with ``Block.to_json()``;
each test then breaks one thing and expects exactly the violation kinds it caused.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsim.checker import (
    VIOLATION_KINDS,
    AuditResult,
    CheckInputError,
    Verdict,
    Violation,
    check,
    short,
)
from netsim.history import Event, Outcome, Request
from p2pledger.chain import Block, Transaction, build_block
from p2pledger.ledger import Ledger
from tests.factory import GENESIS_TIME_MS, TestNetwork

MEMBERS = ("m0", "m1", "m2")
BOUND = 5.0
HEIGHTS = 6
TXS_PER_BLOCK = 3
#: The height of the block holding one invalid transaction (a repeated anchor).
INVALID_AT = 4
FORK_AT = 3

Blocks = list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class World:
    chain: Blocks  # the good chain, genesis and HEIGHTS blocks
    fork: Blocks  # the same up to FORK_AT - 1, other transactions from FORK_AT on
    diverged: dict[str, Any]  # block FORK_AT with the good txs and verdicts, another state root


def _grow(ledger: Ledger, net: TestNetwork, batches: Sequence[Sequence[Transaction]]) -> None:
    for txs in batches:
        height = ledger.tip.height + 1
        block = ledger.propose(
            txs, key=net.node_keys[height % net.n], time_ms=GENESIS_TIME_MS + height, term=1
        )
        ledger.commit(block, verified_tx_ids={t.id for t in txs})


def _batches(net: TestNetwork, first_nonce: int, count: int) -> list[list[Transaction]]:
    return [
        [net.tx(first_nonce + b * TXS_PER_BLOCK + i, user=i) for i in range(TXS_PER_BLOCK)]
        for b in range(count)
    ]


def _blocks(ledger: Ledger) -> list[Block]:
    return [ledger.store.block(h) for h in range(ledger.tip.height + 1)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    net = TestNetwork(n=3)
    tmp: Path = tmp_path_factory.mktemp("ledgers")
    batches = _batches(net, 1, HEIGHTS)
    again = Transaction.create(  # anchors nonce 1's digest again: already_anchored
        net.user_keys[1],
        chain_id=net.chain_id,
        op="notary.anchor",
        args={"digest": hashlib.sha256((1).to_bytes(8, "big")).digest(), "description": "x"},
        nonce=10_000,
        time_ms=GENESIS_TIME_MS + 10_000,
    )
    batches[INVALID_AT - 1][1] = again
    with Ledger.create(tmp / "good", net.network) as good:
        _grow(good, net, batches)
        chain = _blocks(good)
    with Ledger.create(tmp / "fork", net.network) as other:
        for block in chain[1:FORK_AT]:
            other.commit(block)
        _grow(other, net, _batches(net, 500, HEIGHTS - FORK_AT + 1))
        fork = _blocks(other)
    like = chain[FORK_AT]
    diverged = build_block(
        parent=chain[FORK_AT - 1].header,
        parent_hash=chain[FORK_AT - 1].hash,
        txs=like.txs,
        results=like.results,
        state_root=bytes(32),
        time_ms=like.header.time_ms,
        term=like.header.term,
        membership_version=like.header.membership_version,
        proposer=net.node_keys[FORK_AT % net.n],
    )
    assert diverged.header.state_root != like.header.state_root
    assert fork[FORK_AT].hash != like.hash and fork[FORK_AT - 1].hash == chain[FORK_AT - 1].hash
    return World(
        chain=[b.to_json() for b in chain],
        fork=[b.to_json() for b in fork],
        diverged=diverged.to_json(),
    )


def fresh_id(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def committed(blocks: Blocks, height: int, index: int, *, t: float) -> Request:
    result = blocks[height]["results"][index]
    return Request(
        id=blocks[height]["tx_ids"][index],
        client=index,
        member=MEMBERS[index % 3],
        op="notary.anchor",
        sent=t,
        done=t + 0.25,
        outcome=Outcome.COMMITTED,
        height=height,
        valid=result["valid"],
        reason=result["reason"],
    )


def pending(tx: str, member: str = "m1", sent: float = 3.0) -> Request:
    return Request(
        id=tx,
        client=1,
        member=member,
        op="notary.anchor",
        sent=sent,
        done=sent + 5,
        outcome=Outcome.PENDING,
        reason="commit_timeout",
    )


def history_of(blocks: Blocks, max_height: int = HEIGHTS) -> list[Request]:
    """Every transaction of ``blocks`` committed as told, plus one rejected and one
    unknown request that never committed, and one pending request that did commit."""
    out = [
        committed(blocks, h, i, t=h * 1.0 + i * 0.1)
        for h in range(1, max_height + 1)
        for i in range(len(blocks[h]["tx_ids"]))
    ]
    last = out.pop()
    out.append(pending(last.id, sent=last.sent))
    common: dict[str, Any] = {
        "client": 2,
        "member": "m2",
        "op": "notary.anchor",
        "sent": 1.0,
        "done": 1.1,
    }
    out.append(Request(id=fresh_id("r"), outcome=Outcome.REJECTED, reason="bad_args", **common))
    out.append(Request(id=fresh_id("u"), outcome=Outcome.UNKNOWN, **common))
    return out


def events_of(*extra: Event, converged_t: float = 6.0) -> list[Event]:
    out = [
        Event(t=0.0, kind="run.start", data={"scenario": "t", "seed": 1, "members": list(MEMBERS)}),
        Event(t=0.5, kind="leader", data={"leader": "m0", "term": 1}),
        Event(t=2.0, kind="fault.start", data={"id": 1, "fault": "partition", "target": "halves"}),
        Event(t=4.0, kind="fault.end", data={"id": 1, "fault": "partition", "target": "halves"}),
        *extra,
        Event(t=converged_t, kind="converged", data={"height": HEIGHTS}),
        Event(t=converged_t + 1, kind="run.end"),
    ]
    return sorted(out, key=lambda e: e.t)


def ok_audits() -> dict[str, AuditResult]:
    return {m: AuditResult(member=m, ok=True, message="ok") for m in MEMBERS}


def run(
    world: World,
    *,
    ledgers: dict[str, Blocks] | None = None,
    audits: dict[str, AuditResult] | None = None,
    history: list[Request] | None = None,
    events: list[Event] | None = None,
    bound: float = BOUND,
) -> Verdict:
    return check(
        ledgers=ledgers if ledgers is not None else {m: world.chain for m in MEMBERS},
        audits=audits if audits is not None else ok_audits(),
        history=history if history is not None else history_of(world.chain),
        events=events if events is not None else events_of(),
        recovery_bound_s=bound,
    )


def kinds(verdict: Verdict) -> set[str]:
    return {v.kind for v in verdict.violations}


def of_kind(verdict: Verdict, kind: str) -> list[Violation]:
    return [v for v in verdict.violations if v.kind == kind]


# --- a clean run ---------------------------------------------------------------------


def test_clean_run_passes_with_its_figures(world: World) -> None:
    verdict = run(world)
    assert verdict.violations == ()
    assert verdict.ok
    s = verdict.stats
    assert s["reference"] == "m0"
    assert s["reference_height"] == HEIGHTS
    assert s["committed_txs"] == HEIGHTS * TXS_PER_BLOCK
    assert (s["valid"], s["invalid"]) == (HEIGHTS * TXS_PER_BLOCK - 1, 1)
    assert s["outcomes"] == {"committed": 17, "pending": 1, "rejected": 1, "unknown": 1}
    assert s["pending_committed"] == 1
    assert s["pending_lost_with_crash"] == 0
    assert s["unknown_committed"] == 0
    assert s["verdict_mismatch"] == 0
    assert s["tips"] == {m: {"height": HEIGHTS, "hash": world.chain[-1]["hash"]} for m in MEMBERS}
    assert s["recovery_s"] == pytest.approx(2.0)


def test_the_invalid_transaction_is_really_invalid(world: World) -> None:
    reasons = [r["reason"] for r in world.chain[INVALID_AT]["results"]]
    assert reasons == [None, "already_anchored", None]


# --- forks and divergence ------------------------------------------------------------


def test_a_planted_fork_is_named_once_per_pair_at_its_lowest_height(world: World) -> None:
    # A client sent the fork's transactions too (unknown outcome): no phantoms.
    sent = [
        Request(
            id=tx,
            client=9,
            member="m2",
            op="notary.anchor",
            sent=2.0,
            done=3.0,
            outcome=Outcome.UNKNOWN,
        )
        for b in world.fork[FORK_AT:]
        for tx in b["tx_ids"]
    ]
    verdict = run(
        world,
        ledgers={"m0": world.chain, "m1": world.chain, "m2": world.fork},
        history=history_of(world.chain) + sent,
    )
    forks = of_kind(verdict, "fork")
    assert [(v.height, v.message.split(" differ")[0]) for v in forks] == [
        (FORK_AT, "m0 and m2"),
        (FORK_AT, "m1 and m2"),
    ]
    assert short(world.fork[FORK_AT]["hash"]) in forks[0].message
    # m2 reached the top height without the good chain's later transactions.
    lost = of_kind(verdict, "lost")
    assert len(lost) == (HEIGHTS - FORK_AT + 1) * TXS_PER_BLOCK - 1  # one of them is pending
    assert {v.member for v in lost} == {"m2"}
    assert kinds(verdict) == {"fork", "lost", "not_converged"}
    assert not verdict.ok


def test_same_transactions_with_another_state_root_is_state_diverged(world: World) -> None:
    good = world.chain[: FORK_AT + 1]
    bad = [*world.chain[:FORK_AT], world.diverged]
    history = [r for r in history_of(world.chain) if r.height is None or r.height <= FORK_AT]
    verdict = run(
        world,
        ledgers={"m0": good, "m1": good, "m2": bad},
        history=[r for r in history if r.outcome is not Outcome.PENDING],
        events=events_of(),
    )
    assert kinds(verdict) == {"state_diverged", "not_converged"}
    diverged = of_kind(verdict, "state_diverged")
    assert [v.height for v in diverged] == [FORK_AT, FORK_AT]
    assert short(world.diverged["header"]["state_root"]) in diverged[0].message
    assert of_kind(verdict, "fork") == []


def test_same_transactions_with_other_verdicts_is_state_diverged(world: World) -> None:
    chain = copy.deepcopy(world.chain)
    other = copy.deepcopy(world.chain)
    # Another block at FORK_AT (a new hash, chained by its child) with one verdict flipped.
    other[FORK_AT] = copy.deepcopy(world.diverged)
    other[FORK_AT]["header"]["state_root"] = chain[FORK_AT]["header"]["state_root"]
    other[FORK_AT]["results"][0] = {"valid": False, "reason": "overdraft"}
    verdict = run(world, ledgers={"m0": chain, "m1": chain, "m2": other[: FORK_AT + 1]})
    diverged = of_kind(verdict, "state_diverged")
    assert len(diverged) == 2
    assert "1 of 3 verdicts differ" in diverged[0].message


# --- transactions --------------------------------------------------------------------


def test_a_committed_transaction_missing_from_every_ledger_is_lost(world: World) -> None:
    ghost = dataclasses.replace(committed(world.chain, 2, 0, t=2.0), id=fresh_id("ghost"))
    verdict = run(world, history=[*history_of(world.chain), ghost])
    assert kinds(verdict) == {"lost"}
    [lost] = verdict.violations
    assert lost.tx == ghost.id and lost.member is None
    assert short(ghost.id) in lost.message and "m0, m1, m2" in lost.message


def test_a_member_behind_is_not_converged_not_lost(world: World) -> None:
    ledgers = {"m0": world.chain, "m1": world.chain, "m2": world.chain[:-2]}
    verdict = run(world, ledgers=ledgers)
    assert kinds(verdict) == {"not_converged"}
    [v] = verdict.violations
    assert f"m2 {HEIGHTS - 2} " in v.message and f"m0 {HEIGHTS} " in v.message


@pytest.mark.parametrize("into_height", [1, 5])
def test_a_transaction_committed_twice_is_a_duplicate(world: World, into_height: int) -> None:
    chain = copy.deepcopy(world.chain)
    tx, result = chain[1]["tx_ids"][0], chain[1]["results"][0]
    block = chain[into_height]
    block["tx_ids"].append(tx)
    block["results"].append(result)
    block["header"]["tx_count"] += 1
    verdict = run(world, ledgers={m: chain for m in MEMBERS})
    assert kinds(verdict) == {"duplicate"}
    [dup] = verdict.violations
    assert (dup.tx, dup.height, dup.member) == (tx, into_height, None)
    assert f"height {into_height} #{TXS_PER_BLOCK}" in dup.message


def test_a_duplicate_on_one_member_names_that_member(world: World) -> None:
    chain = copy.deepcopy(world.chain)
    chain[2]["tx_ids"][1] = chain[2]["tx_ids"][0]
    verdict = run(world, ledgers={"m0": world.chain, "m1": world.chain, "m2": chain})
    dup = of_kind(verdict, "duplicate")
    assert [(v.member, v.height) for v in dup] == [("m2", 2)]


def test_a_transaction_no_client_sent_is_a_phantom(world: World) -> None:
    history = history_of(world.chain)
    gone = history.pop(4)
    verdict = run(world, history=history)
    assert kinds(verdict) == {"phantom"}
    [v] = verdict.violations
    assert v.tx == gone.id and v.height == gone.height
    assert "sent by no client" in v.message and short(gone.id) in v.message


ON_LEDGER = [(h, i) for h in range(1, HEIGHTS + 1) for i in range(TXS_PER_BLOCK)]


@settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(removed=st.sets(st.sampled_from(ON_LEDGER)))
def test_removing_any_requests_gives_exactly_that_many_phantoms(
    world: World, removed: set[tuple[int, int]]
) -> None:
    ids = {world.chain[h]["tx_ids"][i] for h, i in removed}
    history = [r for r in history_of(world.chain) if r.id not in ids]
    verdict = run(world, history=history)
    assert {v.tx for v in of_kind(verdict, "phantom")} == ids
    assert len(verdict.violations) == len(ids)
    assert verdict.ok == (not ids)


def test_a_rejected_transaction_that_committed(world: World) -> None:
    history = history_of(world.chain)
    r = history[2]
    history[2] = dataclasses.replace(
        r, outcome=Outcome.REJECTED, height=None, valid=None, reason="mempool_full"
    )
    verdict = run(world, history=history)
    assert kinds(verdict) == {"rejected_committed"}
    [v] = verdict.violations
    assert v.tx == r.id and v.height == r.height and "mempool_full" in v.message


def test_a_rejected_resubmission_of_an_accepted_transaction_is_fine(world: World) -> None:
    history = history_of(world.chain)
    again = dataclasses.replace(
        history[2], outcome=Outcome.REJECTED, height=None, valid=None, reason="duplicate"
    )
    assert run(world, history=[*history, again]).ok


def test_a_pending_transaction_that_never_committed_is_dropped(world: World) -> None:
    lost = pending(fresh_id("p"), member="m1", sent=3.0)
    verdict = run(world, history=[*history_of(world.chain), lost])
    assert kinds(verdict) == {"dropped_pending"}
    [v] = verdict.violations
    assert (v.member, v.tx) == ("m1", lost.id)
    assert short(lost.id) in v.message and "m1 did not crash" in v.message


def _kill(t: float, fault: str, target: object) -> list[Event]:
    data = {"id": 2, "fault": fault, "target": target}
    return [
        Event(t=t, kind="fault.start", data=data),
        Event(t=t + 1, kind="fault.end", data=data),
    ]


@pytest.mark.parametrize(
    ("fault", "target"), [("kill", "m1"), ("wipe", "m1"), ("kill", ["m2", "m1"])]
)
def test_a_pending_transaction_lost_with_its_crashed_member_is_no_violation(
    world: World, fault: str, target: object
) -> None:
    lost = pending(fresh_id("p"), member="m1", sent=3.0)
    verdict = run(
        world,
        history=[*history_of(world.chain), lost],
        events=events_of(*_kill(4.5, fault, target)),
    )
    assert verdict.ok, verdict.violations
    assert verdict.stats["pending_lost_with_crash"] == 1


@pytest.mark.parametrize(
    ("t", "fault", "target"),
    [(1.0, "kill", "m1"), (4.5, "kill", "m2"), (4.5, "pause", "m1")],
    ids=["crash-before-sent", "other-member", "not-a-crash"],
)
def test_pending_is_dropped_unless_its_own_member_crashed_after_sending(
    world: World, t: float, fault: str, target: str
) -> None:
    lost = pending(fresh_id("p"), member="m1", sent=3.0)
    verdict = run(
        world, history=[*history_of(world.chain), lost], events=events_of(*_kill(t, fault, target))
    )
    assert kinds(verdict) == {"dropped_pending"}


def test_committed_at_another_height_than_reported(world: World) -> None:
    history = history_of(world.chain)
    r = history[3]
    history[3] = dataclasses.replace(r, height=r.height + 1)  # type: ignore[operator]
    verdict = run(world, history=history)
    assert kinds(verdict) == {"height_mismatch"}
    [v] = verdict.violations
    assert v.tx == r.id and v.height == r.height
    assert f"at height {r.height + 1}" in v.message  # type: ignore[operator]


def test_a_committed_answer_with_another_verdict_is_a_violation(world: World) -> None:
    history = history_of(world.chain)
    i = next(i for i, r in enumerate(history) if r.valid is False)
    history[i] = dataclasses.replace(history[i], valid=True, reason=None)
    verdict = run(world, history=history)
    assert kinds(verdict) == {"verdict_mismatch"}
    [v] = verdict.violations  # one finding, merged over the members that show it
    assert v.tx == history[i].id and "answered valid" in v.message
    assert verdict.stats["verdict_mismatch"] == len(MEMBERS)


# --- convergence ---------------------------------------------------------------------


def test_a_not_converged_event_fails_the_run(world: World) -> None:
    events = [e for e in events_of() if e.kind != "converged"]
    events.append(Event(t=30.0, kind="not_converged", data={"heights": {"m0": 6, "m1": 5}}))
    verdict = run(world, events=events)
    assert kinds(verdict) == {"not_converged"}
    assert "t=30.000" in verdict.violations[0].message


def test_no_convergence_event_at_all_fails_the_run(world: World) -> None:
    verdict = run(world, events=[e for e in events_of() if e.kind != "converged"])
    assert kinds(verdict) == {"not_converged"}


def test_recovery_over_the_bound_gives_both_numbers(world: World) -> None:
    verdict = run(world, events=events_of(converged_t=11.5), bound=7.0)
    assert kinds(verdict) == {"not_converged"}
    [v] = verdict.violations
    assert "7.500 s" in v.message and "7.000 s" in v.message
    assert verdict.stats["recovery_s"] == pytest.approx(7.5)
    assert run(world, events=events_of(converged_t=11.5), bound=7.5).ok


# --- audits and shapes ---------------------------------------------------------------


def test_a_failed_audit(world: World) -> None:
    audits = ok_audits()
    audits["m1"] = AuditResult(member="m1", ok=False, message="block 4: bad_signature")
    verdict = run(world, audits=audits)
    assert kinds(verdict) == {"audit_failed"}
    [v] = verdict.violations
    assert v.member == "m1" and "bad_signature" in v.message


def test_a_missing_audit_or_export_is_an_audit_failure(world: World) -> None:
    audits = ok_audits()
    del audits["m2"]
    assert [v.member for v in run(world, audits=audits).violations] == ["m2"]
    ledgers = {"m0": world.chain, "m1": world.chain}
    verdict = run(world, ledgers=ledgers)
    assert [(v.kind, v.member) for v in verdict.violations] == [("audit_failed", "m2")]
    assert "no export" in verdict.violations[0].message


@pytest.mark.parametrize("breakage", ["unchained", "gap", "bad_hash", "no_results"])
def test_a_malformed_export_is_an_audit_failure_at_its_first_bad_block(
    world: World, breakage: str
) -> None:
    chain = copy.deepcopy(world.chain)
    if breakage == "unchained":
        chain[3]["header"]["prev"] = chain[1]["hash"]
    elif breakage == "gap":
        del chain[3]
    elif breakage == "bad_hash":
        chain[3]["hash"] = chain[2]["hash"]
    else:
        del chain[3]["results"]
    verdict = run(world, ledgers={"m0": world.chain, "m1": world.chain, "m2": chain})
    failed = of_kind(verdict, "audit_failed")
    assert [(v.member, v.height) for v in failed] == [("m2", 3)]
    assert "block #3" in failed[0].message
    # m2 is judged on heights 0..2: behind, so not converged, nothing lost on it.
    assert kinds(verdict) == {"audit_failed", "not_converged"}


# --- the records themselves ----------------------------------------------------------


def test_a_verdict_is_ok_exactly_without_violations() -> None:
    v = Violation(kind="lost", message="x")
    with pytest.raises(CheckInputError):
        Verdict(ok=True, violations=(v,), stats={})
    with pytest.raises(CheckInputError):
        Verdict(ok=False, violations=(), stats={})
    with pytest.raises(CheckInputError):
        Violation(kind="broken_chain", message="x")
    assert set(VIOLATION_KINDS) >= {"fork", "lost", "state_diverged", "audit_failed"}


@pytest.mark.parametrize("bound", [-1.0, float("nan"), float("inf")])
def test_a_bad_bound_is_refused(world: World, bound: float) -> None:
    with pytest.raises(CheckInputError):
        run(world, bound=bound)


# --- membership changes --------------------------------------------------------------


def _change(
    t: float, action: str, member: str, *, height: int = 3, error: str | None = None
) -> list[Event]:
    """The fault.start and fault.end a membership change of the runner writes."""
    detail: dict[str, Any] = {"action": action, "member": member, "version": 1}
    if error is None:
        detail["height"] = height
    else:
        detail.update(error=error, failed=True)
    start = {
        "id": 5,
        "fault": "membership",
        "target": member,
        "members": [] if error else [member],
        "detail": detail,
    }
    end = {"id": 5, "fault": "membership", "target": member, "members": start["members"]}
    return [Event(t=t, kind="fault.start", data=start), Event(t=t, kind="fault.end", data=end)]


def test_a_removed_member_is_not_expected_at_the_final_tip(world: World) -> None:
    ledgers = {m: world.chain for m in MEMBERS}
    ledgers["m2"] = world.chain[:4]  # heights 0..3: it stopped at its removal
    removal = _change(4.5, "remove", "m2", height=3)
    verdict = run(world, ledgers=ledgers, events=events_of(*removal))
    assert verdict.ok, verdict.violations
    assert verdict.stats["removed"] == {"m2": {"t": 4.5, "height": 3, "ledger_ends": 3}}
    assert verdict.stats["membership"][0]["action"] == "remove"
    # without the removal, the same ledgers are a member left behind
    assert kinds(run(world, ledgers=ledgers)) == {"not_converged"}


def test_a_removed_members_ledger_is_still_checked_for_forks(world: World) -> None:
    ledgers = {m: world.chain for m in MEMBERS}
    ledgers["m2"] = world.fork[: FORK_AT + 1]
    verdict = run(world, ledgers=ledgers, events=events_of(*_change(4.5, "remove", "m2")))
    assert "fork" in kinds(verdict)


def test_a_member_that_joined_late_is_judged_like_the_others(world: World) -> None:
    ledgers = {m: world.chain for m in (*MEMBERS, "m3")}
    audits = {**ok_audits(), "m3": AuditResult(member="m3", ok=True, message="ok")}
    joined = _change(3.0, "add", "m3", height=2)
    verdict = run(world, ledgers=ledgers, audits=audits, events=events_of(*joined))
    assert verdict.ok, verdict.violations
    assert "m3" in verdict.stats["tips"]
    ledgers["m3"] = world.chain[:3]  # it never caught up
    assert kinds(run(world, ledgers=ledgers, audits=audits, events=events_of(*joined))) == {
        "not_converged"
    }


def test_a_membership_change_that_did_not_go_through_fails_the_run(world: World) -> None:
    failed = _change(4.5, "add", "m3", error="m3 did not reach height 4 within 90 s")
    verdict = run(world, events=events_of(*failed))
    assert kinds(verdict) == {"membership_failed"}
    [v] = verdict.violations
    assert v.member == "m3" and "did not reach height 4" in v.message


def test_a_pending_request_lost_with_its_removed_member_is_no_violation(world: World) -> None:
    lost = pending(fresh_id("p"), member="m1", sent=3.0)
    ledgers = {**{m: world.chain for m in MEMBERS}, "m1": world.chain[:4]}
    verdict = run(
        world,
        ledgers=ledgers,
        history=[*history_of(world.chain), lost],
        events=events_of(*_change(4.5, "remove", "m1")),
    )
    assert verdict.ok, verdict.violations
    assert verdict.stats["pending_lost_with_membership"] == 1


def test_a_pending_request_whose_signer_was_revoked_must_still_commit(world: World) -> None:
    lost = pending(fresh_id("p"), member="m1", sent=3.0)
    verdict = run(
        world,
        history=[*history_of(world.chain), lost],
        events=events_of(*_change(4.5, "revoke-user", "m1")),
    )
    assert kinds(verdict) == {"dropped_pending"}
    [v] = verdict.violations
    assert "revoked at t=4.500" in v.message and "unknown_signer" in v.message


def test_a_revoked_signers_transaction_committed_invalid_is_no_violation(world: World) -> None:
    history = history_of(world.chain)
    invalid = next(i for i, r in enumerate(history) if r.valid is False)
    history[invalid] = dataclasses.replace(history[invalid], reason="unknown_signer")
    verdict = run(world, history=history, events=events_of(*_change(4.5, "revoke-user", "m1")))
    assert verdict.ok, verdict.violations
    assert verdict.stats["invalid_reasons"] == {"already_anchored": 1}
