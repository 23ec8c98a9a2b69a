"""Running the API on a real hypercorn server on 127.0.0.1, port 0, inside a test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio
from prometheus_client import CollectorRegistry

from p2pledger.api import LedgerService, create_app, serve_api
from p2pledger.config import HostPort

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


@asynccontextmanager
async def running_api(
    service: LedgerService, *, max_body_bytes: int = 1 << 20
) -> AsyncIterator[str]:
    """Serve ``service`` for the length of the block; yield the base URL."""
    app = create_app(service, CollectorRegistry(), max_body_bytes=max_body_bytes)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(START_TIMEOUT_S):
            address: HostPort = await nursery.start(
                partial(serve_api, app, "127.0.0.1", 0, shutdown_trigger=stop.wait)
            )
        try:
            yield f"http://{address.host}:{address.port}"
        finally:
            stop.set()
            nursery.cancel_scope.deadline = trio.current_time() + STOP_TIMEOUT_S
