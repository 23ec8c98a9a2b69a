"""The API on a real hypercorn server (127.0.0.1, port 0) and the stdlib client
against it: bound address, graceful stop, errors as the client sees them."""

from __future__ import annotations

import gc
import socket
import warnings
from functools import partial

import pytest
import trio
from prometheus_client import CollectorRegistry

from p2pledger.api import ApiServeError, create_app, serve_api
from p2pledger.client import ApiClient, ApiRequestFailed, ApiUnreachable
from tests.api.fake_node import FakeNode
from tests.api.server import running_api
from tests.api.txs import account, issue
from tests.factory import TestNetwork

CLIENT_TIMEOUT_S = 10.0


async def in_thread(fn: partial[object]) -> object:
    with trio.fail_after(30):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


async def test_serves_on_a_free_port_and_stops_gracefully(net: TestNetwork, node: FakeNode) -> None:
    node.commit_on_submit = True
    async with running_api(node) as url:
        assert not url.endswith(":0")
        client = ApiClient(url, timeout_s=CLIENT_TIMEOUT_S)
        status = await trio.to_thread.run_sync(client.status)
        assert status["chain_id"] == net.chain_id.hex()
        assert await trio.to_thread.run_sync(client.chain_id) == net.chain_id

        tx = issue(net, to=1, amount=9)
        result = await trio.to_thread.run_sync(partial(client.submit, tx.raw, wait=True))
        assert (result["status"], result["valid"]) == ("committed", True)
        answer = await trio.to_thread.run_sync(client.transaction, tx.id)
        assert answer["receipt"]["tx"]["id"] == tx.id.hex()
        assert (await trio.to_thread.run_sync(client.block))["header"]["height"] == 1
        balance = await trio.to_thread.run_sync(client.balance, "relief", account(net, 1))
        assert balance["balance"] == 9
        assert await trio.to_thread.run_sync(client.anchor, bytes(32)) is None
        assert await trio.to_thread.run_sync(client.healthy)
        assert "p2pledger_api_requests_total" in await trio.to_thread.run_sync(client.metrics)

    with pytest.raises(ApiUnreachable, match=r"cannot reach the API at .*: is the node running\?"):
        await trio.to_thread.run_sync(client.status)


async def test_the_client_sees_error_codes_and_retry_after(
    net: TestNetwork, node: FakeNode
) -> None:
    node.mempool_max = 0
    async with running_api(node, max_body_bytes=4096) as url:
        client = ApiClient(url, timeout_s=CLIENT_TIMEOUT_S)
        with pytest.raises(ApiRequestFailed) as full:
            await trio.to_thread.run_sync(client.submit, issue(net, to=1, amount=1).raw)
        assert (full.value.status, full.value.code, full.value.retry_after_s) == (
            503,
            "mempool_full",
            3,
        )
        with pytest.raises(ApiRequestFailed) as big:
            await trio.to_thread.run_sync(client.submit, bytes(4096))
        assert (big.value.status, big.value.code) == (413, "body_too_large")
        with pytest.raises(ApiRequestFailed) as missing:
            await trio.to_thread.run_sync(client.transaction, bytes(32))
        assert (missing.value.status, missing.value.code) == (404, "unknown_transaction")
        node.is_healthy = False
        assert not await trio.to_thread.run_sync(client.healthy)


async def test_a_port_in_use_is_a_clear_error(node: FakeNode) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = create_app(node, CollectorRegistry())
        refused = pytest.RaisesExc(ApiServeError, match=f"127.0.0.1:{port}: ")
        with warnings.catch_warnings():
            # hypercorn leaves the socket it failed to bind to the garbage collector
            warnings.simplefilter("ignore", ResourceWarning)
            with pytest.RaisesGroup(refused) as info, trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    await nursery.start(serve_api, app, "127.0.0.1", port)
            gc.collect()
        (error,) = info.value.exceptions
        assert "in use" in str(error), str(error)  # says why, not only that it failed


async def test_cancelling_the_nursery_stops_the_server(node: FakeNode) -> None:
    app = create_app(node, CollectorRegistry())
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(serve_api, app, "127.0.0.1", 0)
            client = ApiClient(f"http://127.0.0.1:{address.port}", timeout_s=CLIENT_TIMEOUT_S)
            assert await trio.to_thread.run_sync(client.healthy)
            nursery.cancel_scope.cancel()
    with pytest.raises(ApiUnreachable):
        await trio.to_thread.run_sync(client.status)
