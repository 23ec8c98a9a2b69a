"""The read endpoints against a FakeNode: blocks, balances with provenance, notary
records with receipts, status, health and metrics."""

from __future__ import annotations

import hashlib

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

from p2pledger.chain.receipt import verify_receipt
from tests.api.conftest import Call, submit_body
from tests.api.fake_node import FakeNode
from tests.api.txs import account, anchoring, issue, transfer
from tests.factory import TestNetwork


async def submit_and_commit(api: Call, node: FakeNode, *raws: bytes) -> None:
    for raw in raws:
        assert (await api("POST", "/v1/transactions", json_body=submit_body(raw))).status == 202
    node.commit_pending()


async def test_blocks_by_height_and_latest(api: Call, net: TestNetwork, node: FakeNode) -> None:
    tx = issue(net, to=1, amount=5)
    await submit_and_commit(api, node, tx.raw)

    genesis = await api("GET", "/v1/blocks/0")
    assert genesis.status == 200
    assert genesis.json()["hash"] == net.chain_id.hex()

    latest = (await api("GET", "/v1/blocks/latest")).json()
    assert latest == (await api("GET", "/v1/blocks/1")).json()
    assert latest["header"]["height"] == 1
    assert latest["tx_ids"] == [tx.id.hex()]
    assert "txs" not in latest
    with_txs = (await api("GET", "/v1/blocks/1?txs=true")).json()
    assert with_txs["txs"] == [tx.raw.hex()]

    missing = await api("GET", "/v1/blocks/7")
    assert (missing.status, missing.error_code) == (404, "unknown_block")


async def test_balance_shows_each_lot_with_its_issue_and_transfer_path(
    api: Call, net: TestNetwork, node: FakeNode
) -> None:
    allocation = issue(net, to=1, amount=100)
    await submit_and_commit(api, node, allocation.raw)
    payment = transfer(net, sender=1, to=2, amount=30)
    await submit_and_commit(api, node, payment.raw)

    recipient = await api("GET", f"/v1/funds/relief/accounts/{account(net, 2).hex()}")
    assert recipient.status == 200
    assert recipient.json() == {
        "fund": "relief",
        "account": account(net, 2).hex(),
        "balance": 30,
        "lots": [
            {
                "amount": 30,
                "origin": allocation.id.hex(),
                "origin_height": 1,
                "path": [{"tx_id": payment.id.hex(), "height": 2}],
            }
        ],
    }
    sender = (await api("GET", f"/v1/funds/relief/accounts/{account(net, 1).hex()}")).json()
    assert sender["balance"] == 70
    assert sender["lots"][0]["path"] == []

    empty = (await api("GET", f"/v1/funds/relief/accounts/{'00' * 32}")).json()
    assert (empty["balance"], empty["lots"]) == (0, [])

    unknown = await api("GET", f"/v1/funds/food/accounts/{account(net, 1).hex()}")
    assert (unknown.status, unknown.error_code) == (404, "unknown_fund")


async def test_notary_record_comes_with_a_verifiable_receipt(
    api: Call, net: TestNetwork, node: FakeNode
) -> None:
    digest = hashlib.sha256(b"invoice 42").digest()
    tx = anchoring(net, digest)
    await submit_and_commit(api, node, tx.raw)

    answer = await api("GET", f"/v1/notary/{digest.hex()}")
    assert answer.status == 200
    body = answer.json()
    assert body["record"] == {
        "digest": digest.hex(),
        "signer": net.user_keys[1].public_key.hex,
        "tx_id": tx.id.hex(),
        "height": 1,
        "time_ms": node.ledger.tip.header.time_ms,
        "description": "invoice",
    }
    proof = verify_receipt(body["receipt"], net.network, net.chain_id)
    assert proof.tx.id == tx.id

    missing = await api("GET", f"/v1/notary/{'cd' * 32}")
    assert (missing.status, missing.error_code) == (404, "not_anchored")


async def test_status_reports_the_member_and_its_peers(
    api: Call, net: TestNetwork, node: FakeNode
) -> None:
    answer = await api("GET", "/v1/status")
    assert answer.status == 200
    assert answer.json() == {
        "member": "m0",
        "role": "leader",
        "chain_name": "test-chain",
        "chain_id": net.chain_id.hex(),
        "height": 0,
        "term": 1,
        "leader": "m0",
        "healthy": True,
        "peers": [
            {"name": "m1", "connected": True, "lag": 0},
            {"name": "m2", "connected": False, "lag": None},
        ],
    }


async def test_health_is_200_only_when_healthy(api: Call, node: FakeNode) -> None:
    ok = await api("GET", "/health")
    assert (ok.status, ok.json()) == (200, {"status": "ok"})
    node.is_healthy = False
    sick = await api("GET", "/health")
    assert (sick.status, sick.error_code) == (503, "unhealthy")
    assert sick.json()["error"]["message"] == node.unhealthy_reason  # says why
    node.unhealthy_reason = "removed from the membership"
    assert (await api("GET", "/health")).json()["error"]["message"] == node.unhealthy_reason
    assert (await api("GET", "/v1/status")).json()["healthy"] is False


async def test_metrics_are_prometheus_text_with_requests_and_rejections(
    api: Call, net: TestNetwork, registry: CollectorRegistry
) -> None:
    await api("GET", "/v1/status")
    await api("GET", "/v1/blocks/0")
    await api("GET", "/v1/blocks/0")
    await api("GET", "/no/such/route")
    await api("POST", "/v1/transactions", json_body={"tx": "00"})

    answer = await api("GET", "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.body.decode())}
    requests = {
        (s.labels["endpoint"], s.labels["status"]): s.value
        for s in families["p2pledger_api_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests[("/v1/status", "200")] == 1
    assert requests[("/v1/blocks/{height}", "200")] == 2
    assert requests[("unmatched", "404")] == 1
    assert requests[("/v1/transactions", "400")] == 1
    rejected = {
        s.labels["reason"]: s.value
        for s in families["p2pledger_api_rejected_transactions"].samples
        if s.name.endswith("_total")
    }
    assert rejected == {"malformed": 1}


async def test_metrics_expose_the_whole_registry_given(
    api: Call, registry: CollectorRegistry
) -> None:
    Gauge("p2pledger_test_gauge", "A collector of another part", registry=registry).set(3)
    text = (await api("GET", "/metrics")).body.decode()
    assert "p2pledger_test_gauge 3.0" in text
