"""Fixtures of the API tests: a test network, a FakeNode over a real ledger, the app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from p2pledger.api import create_app
from tests.api.asgi import Answer, call
from tests.api.fake_node import FakeNode
from tests.factory import TestNetwork

Call = Callable[..., Awaitable[Answer]]


@pytest.fixture
def net() -> TestNetwork:
    return TestNetwork(n=3)


@pytest.fixture
def node(net: TestNetwork, tmp_path: Path) -> Iterator[FakeNode]:
    fake = FakeNode(net, tmp_path / "data")
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def app(node: FakeNode, registry: CollectorRegistry) -> ASGIApp:
    return create_app(node, registry)


@pytest.fixture
def api(app: ASGIApp) -> Call:
    """``await api("GET", "/v1/status")``: one in-process request to the app."""
    bound: Callable[..., Awaitable[Answer]] = partial(call, app)
    return bound


def submit_body(raw: bytes, **extra: Any) -> dict[str, Any]:
    return {"tx": raw.hex(), **extra}
