"""``POST /v1/transactions`` with ``txs``: several signed transactions in one request,
each with its own id and verdict, every entry check per transaction, the same limits."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from p2pledger import codec
from p2pledger.api import create_app
from tests.api.asgi import Answer, call
from tests.api.conftest import Call
from tests.api.fake_node import FakeNode
from tests.api.txs import issue
from tests.factory import TestNetwork


def batch(*raws: bytes, **extra: Any) -> dict[str, Any]:
    return {"txs": [r.hex() for r in raws], **extra}


async def test_a_batch_answers_each_transaction_in_order(
    api: Call, net: TestNetwork, node: FakeNode, registry: CollectorRegistry
) -> None:
    good = issue(net, to=1, amount=1, nonce=1)
    other = issue(net, to=1, amount=2, nonce=2)
    forged = codec.encode({"body": other.body, "sig": bytes(64)})
    answer = await api("POST", "/v1/transactions", json_body=batch(good.raw, forged))
    assert answer.status == 202
    first, second = answer.json()["results"]
    assert first == {"id": good.id.hex(), "status": "pending"}
    assert second["http_status"] == 422 and second["error"]["code"] == "bad_signature"
    assert list(node.pending) == [good.id]
    assert registry.get_sample_value(
        "p2pledger_api_rejected_transactions_total", {"reason": "bad_signature"}
    )

    again = await api("POST", "/v1/transactions", json_body=batch(good.raw))
    assert again.json()["results"][0]["error"]["code"] == "already_pending"


async def test_a_batch_with_wait_answers_once_all_commit(
    api: Call, net: TestNetwork, node: FakeNode
) -> None:
    txs = [issue(net, to=1, amount=1, nonce=n) for n in (1, 2, 3)]
    results: list[Answer] = []

    async def send() -> None:
        body = batch(*(t.raw for t in txs), wait=True)
        results.append(await api("POST", "/v1/transactions", json_body=body))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        assert not results
        node.commit_pending()
    [answer] = results
    assert answer.status == 200
    items = answer.json()["results"]
    assert [i["id"] for i in items] == [t.id.hex() for t in txs]
    assert [(i["status"], i["height"], i["index"]) for i in items] == [
        ("committed", 1, k) for k in range(3)
    ]


async def test_a_batch_with_wait_times_out_per_transaction(
    api: Call, net: TestNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    tx = issue(net, to=1, amount=1)
    answer = await api("POST", "/v1/transactions", json_body=batch(tx.raw, wait=True, timeout_s=1))
    assert answer.status == 200
    [item] = answer.json()["results"]
    assert (item["http_status"], item["error"]["code"]) == (504, "commit_timeout")


async def test_a_full_mempool_refuses_the_rest_with_retry_after(
    api: Call, net: TestNetwork, node: FakeNode
) -> None:
    node.mempool_max = 1
    a, b = issue(net, to=1, amount=1, nonce=1), issue(net, to=1, amount=1, nonce=2)
    answer = await api("POST", "/v1/transactions", json_body=batch(a.raw, b.raw))
    assert answer.status == 202
    assert answer.headers["retry-after"] == "3"
    first, second = answer.json()["results"]
    assert first["status"] == "pending"
    assert (second["http_status"], second["error"]["code"]) == (503, "mempool_full")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"txs": []}, 400, "bad_request"),
        ({"txs": "00"}, 400, "bad_request"),
        ({"txs": ["zz"]}, 400, "bad_request"),
        ({"txs": [7]}, 400, "bad_request"),
        ({"txs": ["00"], "tx": "00"}, 400, "unknown_field"),
        ({"txs": ["00"], "wait": "yes"}, 400, "bad_request"),
        ({"txs": ["00"], "timeout_s": 0}, 400, "bad_request"),
    ],
)
async def test_a_bad_batch_is_refused_whole(
    api: Call, node: FakeNode, body: dict[str, Any], status: int, code: str
) -> None:
    answer = await api("POST", "/v1/transactions", json_body=body)
    assert (answer.status, answer.error_code) == (status, code)
    assert not node.pending


async def test_a_batch_over_the_limit_is_413(
    net: TestNetwork, node: FakeNode, registry: CollectorRegistry
) -> None:
    app = create_app(node, registry, max_batch_txs=2)
    txs = [issue(net, to=1, amount=1, nonce=n) for n in (1, 2, 3)]
    answer = await call(app, "POST", "/v1/transactions", json_body=batch(*(t.raw for t in txs)))
    assert (answer.status, answer.error_code) == (413, "batch_too_large")
    assert not node.pending
    ok = await call(app, "POST", "/v1/transactions", json_body=batch(*(t.raw for t in txs[:2])))
    assert ok.status == 202
