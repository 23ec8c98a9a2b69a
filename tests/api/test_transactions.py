"""Submitting transactions and following them: 202, waiting for the commit, 504 on a
commit timeout, idempotent resubmission with wait, entry refusals and a full mempool."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from p2pledger import codec
from p2pledger.chain import Transaction, chain_id_of
from p2pledger.chain.receipt import verify_receipt
from p2pledger.membership import Network
from tests.api.asgi import Answer
from tests.api.conftest import Call, submit_body
from tests.api.fake_node import FakeNode
from tests.api.txs import anchoring, issue, transfer
from tests.factory import TestNetwork, seeded_key


async def test_submit_answers_202_and_the_transaction_is_pending(
    api: Call, net: TestNetwork, node: FakeNode
) -> None:
    tx = issue(net, to=1, amount=100)
    answer = await api("POST", "/v1/transactions", json_body=submit_body(tx.raw))
    assert answer.status == 202
    assert answer.json() == {"id": tx.id.hex(), "status": "pending"}
    assert tx.id in node.pending

    status = await api("GET", f"/v1/transactions/{tx.id.hex()}")
    assert status.status == 200
    assert status.json() == {"id": tx.id.hex(), "status": "pending"}


async def test_a_committed_transaction_shows_its_block_verdict_and_a_receipt(
    api: Call, net: TestNetwork, node: FakeNode
) -> None:
    good, bad = issue(net, to=1, amount=5), transfer(net, sender=2, to=1, amount=1)
    for tx in (good, bad):
        assert (await api("POST", "/v1/transactions", json_body=submit_body(tx.raw))).status == 202
    node.commit_pending()

    answer = await api("GET", f"/v1/transactions/{good.id.hex()}")
    body = answer.json()
    assert answer.status == 200
    assert {k: body[k] for k in ("id", "status", "height", "valid", "reason")} == {
        "id": good.id.hex(),
        "status": "committed",
        "height": 1,
        "valid": True,
        "reason": None,
    }
    proof = verify_receipt(body["receipt"], net.network, net.chain_id)
    assert proof.tx.id == good.id and proof.index == body["index"]

    invalid = (await api("GET", f"/v1/transactions/{bad.id.hex()}")).json()
    assert (invalid["status"], invalid["valid"], invalid["reason"]) == (
        "committed",
        False,
        "overdraft",
    )


async def test_an_unknown_transaction_is_404(api: Call) -> None:
    answer = await api("GET", f"/v1/transactions/{'ab' * 32}")
    assert answer.status == 404
    assert answer.error_code == "unknown_transaction"


async def submit_waiting(api: Call, raw: bytes, results: list[Answer], **extra: object) -> None:
    results.append(
        await api("POST", "/v1/transactions", json_body=submit_body(raw, wait=True, **extra))
    )


async def test_wait_true_answers_once_the_transaction_commits(
    api: Call, net: TestNetwork, node: FakeNode
) -> None:
    tx = issue(net, to=1, amount=7)
    results: list[Answer] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit_waiting, api, tx.raw, results)
        await trio.testing.wait_all_tasks_blocked()
        assert node.waiting == 1 and not results
        node.commit_pending()
    [answer] = results
    assert answer.status == 200
    assert answer.json() == {
        "id": tx.id.hex(),
        "status": "committed",
        "height": 1,
        "index": 0,
        "valid": True,
        "reason": None,
    }


async def test_wait_true_times_out_with_504_saying_it_may_still_commit(
    api: Call, net: TestNetwork, node: FakeNode, autojump_clock: trio.testing.MockClock
) -> None:
    tx = issue(net, to=1, amount=7)
    start = trio.current_time()
    body = submit_body(tx.raw, wait=True, timeout_s=2.5)
    answer = await api("POST", "/v1/transactions", json_body=body)
    assert trio.current_time() - start == pytest.approx(2.5)
    assert answer.status == 504
    assert answer.error_code == "commit_timeout"
    error = answer.json()["error"]
    assert error["id"] == tx.id.hex()
    assert "may still commit" in error["message"]
    assert node.waiting == 0 and tx.id in node.pending


async def test_wait_true_resumes_a_pending_or_committed_transaction(
    api: Call, net: TestNetwork, node: FakeNode
) -> None:
    tx = issue(net, to=1, amount=7)
    assert (await api("POST", "/v1/transactions", json_body=submit_body(tx.raw))).status == 202
    results: list[Answer] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit_waiting, api, tx.raw, results)
        await trio.testing.wait_all_tasks_blocked()
        assert node.waiting == 1
        node.commit_pending()
    again = await api("POST", "/v1/transactions", json_body=submit_body(tx.raw, wait=True))
    for answer in (*results, again):
        assert answer.status == 200
        assert answer.json()["status"] == "committed"
    assert node.ledger.tip.height == 1


async def test_duplicates_without_wait_are_409(
    api: Call, net: TestNetwork, node: FakeNode, registry: CollectorRegistry
) -> None:
    tx = issue(net, to=1, amount=7)
    body = submit_body(tx.raw)
    assert (await api("POST", "/v1/transactions", json_body=body)).status == 202
    pending = await api("POST", "/v1/transactions", json_body=body)
    node.commit_pending()
    committed = await api("POST", "/v1/transactions", json_body=body)
    assert (pending.status, pending.error_code) == (409, "already_pending")
    assert (committed.status, committed.error_code) == (409, "already_committed")
    rejected = "p2pledger_api_rejected_transactions_total"
    assert registry.get_sample_value(rejected, {"reason": "already_pending"}) == 1


def _other_network_tx(net: TestNetwork) -> bytes:
    other = Network(
        chain_name="other-chain",
        genesis_time_ms=net.network.genesis_time_ms,
        limits=net.network.limits,
        members=net.network.members,
        funds=net.network.funds,
    )
    return Transaction.create(
        net.user_keys[0],
        chain_id=chain_id_of(other),
        op="notary.anchor",
        args={"digest": bytes(32), "description": ""},
        nonce=1,
        time_ms=1,
    ).raw


def _bad_signature(net: TestNetwork) -> bytes:
    tx = anchoring(net, bytes(32))
    return codec.encode({"body": tx.body, "sig": bytes(64)})


def _unknown_signer(net: TestNetwork) -> bytes:
    stranger = seeded_key("stranger")
    args = {"digest": bytes(32), "description": ""}
    return Transaction.create(
        stranger, chain_id=net.chain_id, op="notary.anchor", args=args, nonce=1, time_ms=1
    ).raw


def _malformed(net: TestNetwork) -> bytes:
    return b"\x00\x01"


def _too_large(net: TestNetwork) -> bytes:
    return bytes(70 * 1024)


@pytest.mark.parametrize(
    ("make", "status", "reason"),
    [
        (_malformed, 400, "malformed"),
        (_too_large, 413, "too_large"),
        (_other_network_tx, 422, "wrong_chain"),
        (_unknown_signer, 422, "unknown_signer"),
        (_bad_signature, 422, "bad_signature"),
    ],
)
async def test_entry_refusals_name_the_reason_and_are_counted(
    api: Call,
    net: TestNetwork,
    node: FakeNode,
    registry: CollectorRegistry,
    make: Callable[[TestNetwork], bytes],
    status: int,
    reason: str,
) -> None:
    raw = make(net)
    answer = await api("POST", "/v1/transactions", json_body=submit_body(raw, wait=True))
    assert (answer.status, answer.error_code) == (status, reason)
    assert not node.pending
    sample = registry.get_sample_value(
        "p2pledger_api_rejected_transactions_total", {"reason": reason}
    )
    assert sample == 1


async def test_a_full_mempool_is_503_with_retry_after(
    api: Call, net: TestNetwork, node: FakeNode, registry: CollectorRegistry
) -> None:
    node.mempool_max = 1
    first, second = issue(net, to=1, amount=1, nonce=1), issue(net, to=1, amount=1, nonce=2)
    assert (await api("POST", "/v1/transactions", json_body=submit_body(first.raw))).status == 202
    answer = await api("POST", "/v1/transactions", json_body=submit_body(second.raw))
    assert answer.status == 503
    assert answer.error_code == "mempool_full"
    assert answer.headers["retry-after"] == "3"  # 2.5 s, rounded up
    assert answer.json()["error"]["retry_after_s"] == 3
    assert second.id not in node.pending
    sample = registry.get_sample_value(
        "p2pledger_api_rejected_transactions_total", {"reason": "mempool_full"}
    )
    assert sample == 1


async def test_the_id_is_the_hash_of_the_signed_bytes(api: Call, net: TestNetwork) -> None:
    tx = anchoring(net, hashlib.sha256(b"doc").digest())
    answer = await api("POST", "/v1/transactions", json_body=submit_body(tx.raw))
    assert answer.json()["id"] == hashlib.sha256(tx.raw).hexdigest()
