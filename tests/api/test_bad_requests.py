"""Every endpoint refuses bad input with a 4xx and a JSON error naming the reason, and
changes nothing: malformed JSON, wrong types, unknown fields, oversized or stalled
bodies, bad ids, digests, heights and fund names, unknown routes, wrong methods."""

from __future__ import annotations

import pytest
import trio.testing
from prometheus_client import CollectorRegistry

from p2pledger.api import create_app
from tests.api.asgi import call
from tests.api.conftest import Call
from tests.api.fake_node import FakeNode

TX = "/v1/transactions"
ID = "ab" * 32
GOOD_TX_HEX = "00"  # well-formed hex; a malformed transaction, refused by the service


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", "malformed_json"),
        (b"", "malformed_json"),
        (b"   ", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'{"tx": "00", "tx": "01"}', "malformed_json"),
        (b'{"tx": "00", "timeout_s": NaN}', "malformed_json"),
        (b'{"tx": "00", "wait": true, "timeout_s": Infinity}', "malformed_json"),
        (b"[]", "bad_request"),
        (b'"tx"', "bad_request"),
        (b"null", "bad_request"),
        (b"{}", "bad_request"),
        (b'{"tx": "00", "extra": 1}', "unknown_field"),
        (b'{"TX": "00"}', "unknown_field"),
        (b'{"tx": 5}', "bad_request"),
        (b'{"tx": null}', "bad_request"),
        (b'{"tx": ["00"]}', "bad_request"),
        (b'{"tx": ""}', "bad_request"),
        (b'{"tx": "abc"}', "bad_request"),
        (b'{"tx": "zz"}', "bad_request"),
        (b'{"tx": "00 11"}', "bad_request"),
        (b'{"tx": " 0011"}', "bad_request"),
        (b'{"tx": "0011\\n"}', "bad_request"),
        (b'{"tx": "\\u0660\\u0661"}', "bad_request"),
        (b'{"tx": "00", "wait": 1}', "bad_request"),
        (b'{"tx": "00", "wait": "true"}', "bad_request"),
        (b'{"tx": "00", "timeout_s": true}', "bad_request"),
        (b'{"tx": "00", "timeout_s": "10"}', "bad_request"),
        (b'{"tx": "00", "timeout_s": 0}', "bad_request"),
        (b'{"tx": "00", "timeout_s": -1}', "bad_request"),
        (b'{"tx": "00", "timeout_s": 61}', "bad_request"),
        (b'{"tx": "00", "timeout_s": 1e400}', "bad_request"),
    ],
)
async def test_submit_refuses_bad_bodies(
    api: Call, node: FakeNode, registry: CollectorRegistry, body: bytes, code: str
) -> None:
    answer = await api("POST", TX, body=body)
    assert (answer.status, answer.error_code) == (400, code)
    assert answer.headers["content-type"] == "application/json"
    assert not node.pending
    counted = registry.get_sample_value(
        "p2pledger_api_rejected_transactions_total", {"reason": code}
    )
    assert counted == 1


async def test_submit_refuses_a_query_string(api: Call) -> None:
    answer = await api("POST", f"{TX}?wait=true", json_body={"tx": GOOD_TX_HEX})
    assert (answer.status, answer.error_code) == (400, "unknown_field")


async def test_a_declared_oversized_body_is_refused_before_it_is_read(
    node: FakeNode, registry: CollectorRegistry
) -> None:
    app = create_app(node, registry, max_body_bytes=1000)
    # The body never arrives: if the app tried to read it, the call would hang.
    answer = await call(
        app,
        "POST",
        TX,
        headers=[("content-length", "1001")],
        content_length=False,
        body=b"",
        body_arrives=False,
    )
    assert (answer.status, answer.error_code) == (413, "body_too_large")


async def test_an_oversized_body_without_a_length_is_cut_off(
    node: FakeNode, registry: CollectorRegistry
) -> None:
    app = create_app(node, registry, max_body_bytes=1000)
    chunks = [b'{"tx": "', b"00" * 400, b"00" * 400, b'"}']
    answer = await call(app, "POST", TX, chunks=chunks)
    assert (answer.status, answer.error_code) == (413, "body_too_large")
    fits = await call(app, "POST", TX, chunks=[b'{"tx": "', b"00" * 100, b'"}'])
    assert (fits.status, fits.error_code) == (400, "malformed")  # read whole, then refused


async def test_a_bad_content_length_is_400(api: Call) -> None:
    answer = await api(
        "POST", TX, body=b"{}", content_length=False, headers=[("content-length", "ten")]
    )
    assert (answer.status, answer.error_code) == (400, "bad_request")


async def test_a_stalled_body_times_out_with_408(
    node: FakeNode, registry: CollectorRegistry, autojump_clock: trio.testing.MockClock
) -> None:
    app = create_app(node, registry, body_timeout_s=5)
    answer = await call(app, "POST", TX, body=b'{"tx": "00"}', body_arrives=False)
    assert (answer.status, answer.error_code) == (408, "body_timeout")


@pytest.mark.parametrize(
    "target",
    [
        f"{TX}/xyz",
        f"{TX}/{ID[:-2]}",
        f"{TX}/{ID}00",
        f"{TX}/{'g' * 64}",
        "/v1/blocks/-1",
        "/v1/blocks/abc",
        "/v1/blocks/1.5",
        "/v1/blocks/+1",
        "/v1/blocks/99999999999999999999",
        "/v1/blocks/LATEST",
        "/v1/blocks/0?txs=maybe",
        "/v1/blocks/0?txs=1&txs=0",
        f"/v1/funds/Relief/accounts/{ID}",
        f"/v1/funds/-relief/accounts/{ID}",
        f"/v1/funds/{'a' * 64}/accounts/{ID}",
        "/v1/funds/relief/accounts/zz",
        f"/v1/funds/relief/accounts/{ID[:-2]}",
        "/v1/notary/short",
        f"/v1/notary/{ID}ff",
    ],
)
async def test_bad_path_and_query_values_are_400(api: Call, target: str) -> None:
    answer = await api("GET", target)
    assert (answer.status, answer.error_code) == (400, "bad_request"), answer.body


@pytest.mark.parametrize(
    "target",
    [
        f"{TX}/{ID}?receipt=1",
        "/v1/blocks/0?tx=1",
        f"/v1/funds/relief/accounts/{ID}?at=3",
        f"/v1/notary/{ID}?x=1",
        "/v1/status?verbose=1",
        "/health?x=1",
        "/metrics?name=x",
    ],
)
async def test_unknown_query_parameters_are_refused(api: Call, target: str) -> None:
    answer = await api("GET", target)
    assert (answer.status, answer.error_code) == (400, "unknown_field")


@pytest.mark.parametrize("target", ["/", "/v1", "/v1/status/", "/v2/status", "/v1/blocks"])
async def test_unknown_routes_are_404_json(api: Call, target: str) -> None:
    answer = await api("GET", target)
    assert (answer.status, answer.error_code) == (404, "not_found")


@pytest.mark.parametrize(
    ("method", "target", "allow"),
    [
        ("GET", TX, "POST"),
        ("PUT", f"{TX}/{ID}", "GET"),
        ("DELETE", "/v1/status", "GET"),
        ("POST", "/health", "GET"),
        ("POST", "/metrics", "GET"),
        ("PATCH", "/v1/blocks/latest", "GET"),
    ],
)
async def test_wrong_methods_are_405_json(api: Call, method: str, target: str, allow: str) -> None:
    answer = await api(method, target)
    assert (answer.status, answer.error_code) == (405, "method_not_allowed")
    assert allow in answer.headers["allow"]


async def test_a_failing_service_is_500_json_without_details(
    node: FakeNode, registry: CollectorRegistry
) -> None:
    def broken() -> bool:
        raise RuntimeError("secret internals")

    node.healthy = broken  # type: ignore[method-assign]
    answer = await call(create_app(node, registry), "GET", "/health")
    assert (answer.status, answer.error_code) == (500, "internal_error")
    assert b"secret" not in answer.body
