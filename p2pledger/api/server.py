"""Serving the API over HTTP with hypercorn, under trio, in a nursery the caller owns.

``serve_api`` is a trio service: ``await nursery.start(serve_api, app, host, port)``
returns the address actually bound (so port 0 works), and the call runs until the
server stops. Two ways to stop it: cancel the caller's scope (immediate), or pass
``shutdown_trigger``, an async callable whose return starts a graceful shutdown
(no new connections; requests in flight get ``graceful_timeout_s`` to finish).

Every wait is bounded: hypercorn closes a connection whose reads stall for
``read_timeout_s`` or that idles past its keep-alive timeout, and the app itself
bounds body reads and commit waits (see ``app``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.types import ASGIApp

from p2pledger.config import AddressError, HostPort, parse_address
from p2pledger.errors import LocalError

__all__ = ["ApiServeError", "serve_api"]

DEFAULT_GRACEFUL_TIMEOUT_S: Final = 5.0
DEFAULT_READ_TIMEOUT_S: Final = 30
_LOGGER: Final = "p2pledger.api.http"


class ApiServeError(LocalError):
    """The API cannot listen where it was told to (address in use, no permission)."""


async def serve_api(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    graceful_timeout_s: float = DEFAULT_GRACEFUL_TIMEOUT_S,
    read_timeout_s: int = DEFAULT_READ_TIMEOUT_S,
    task_status: trio.TaskStatus[HostPort] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` (0: any free port) until stopped.

    Reports the bound address through ``task_status.started``.
    """
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = graceful_timeout_s
    config.read_timeout = read_timeout_s
    config.accesslog = None
    config.errorlog = logging.getLogger(_LOGGER)
    config.include_server_header = False
    try:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(
                _serve, app, config, shutdown_trigger, name="p2pledger.api.hypercorn"
            )
            task_status.started(_bound_address(binds))
    except* OSError as group:
        first = _first_leaf(group)
        reason = getattr(first, "strerror", None) or str(first)
        raise ApiServeError(f"cannot serve the API on {host}:{port}: {reason}") from group


async def _serve(
    app: ASGIApp,
    config: Config,
    shutdown_trigger: Callable[[], Awaitable[None]] | None,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=task_status)  # type: ignore[arg-type]


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _bound_address(binds: list[str]) -> HostPort:
    """The first bound address, from hypercorn's ``http://host:port`` strings."""
    if not binds:
        raise ApiServeError("hypercorn reported no bound address")
    _, _, address = binds[0].partition("://")
    try:
        return parse_address(address)
    except AddressError as exc:  # pragma: no cover - hypercorn writes host:port
        raise ApiServeError(f"hypercorn reported an unusable address {binds[0]!r}") from exc
