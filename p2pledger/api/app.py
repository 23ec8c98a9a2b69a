"""The HTTP/JSON API of a member: routes, request handling and error mapping.

``create_app`` builds an ASGI application over a ``LedgerService``; it does no I/O of
its own beyond the request and response (``server.serve_api`` serves it). Every
answer is JSON; every error is ``{"error": {"code", "message"}}`` with a 4xx or 5xx
status, including unknown routes (404 "not_found"), wrong methods (405
"method_not_allowed") and failures of our own (500 "internal_error").

Endpoints (bytes as lowercase hex):

- ``POST /v1/transactions`` ``{"tx": hex, "wait": false, "timeout_s": 10}``: 202
  ``{"id", "status": "pending"}``; with ``wait`` 200 and the committed status, or 504
  "commit_timeout" (it may still commit). Resubmitting with ``wait`` a transaction
  that is already pending or committed waits for it (or answers at once) instead of
  refusing it, so a client can retry after a timeout. Mempool full: 503 with
  ``Retry-After``. Entry refusals: the service's reason code as the error code.
  ``{"txs": [hex, ...], "wait", "timeout_s"}`` submits up to 1000 at once (every
  check per transaction): 202 (200 with ``wait``) ``{"results": [...]}``, one answer
  per transaction in order, either what the one-transaction form gives or
  ``{"id", "http_status", "error"}``; ``Retry-After`` when any found the mempool full.
- ``GET /v1/transactions/{id}``: status; once committed, block, verdict and receipt.
- ``GET /v1/blocks/{height}``, ``/v1/blocks/latest`` (``?txs=true`` adds the bytes).
- ``GET /v1/funds/{fund}/accounts/{account}``: balance and lots with provenance.
- ``GET /v1/notary/{digest}``: the first anchoring of a digest, with its receipt.
- ``GET /v1/config``: the membership in force (``version``, ``chain_id``, ``network``
  as JSON, ``toml`` as network.toml text); ``GET /v1/config/history``: every version.
- ``GET /v1/status``, ``GET /health`` (503 when unhealthy), ``GET /metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog
import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from p2pledger.api import inputs
from p2pledger.api.errors import RequestRefused, TxRejected, Unavailable, rejection_status
from p2pledger.api.metrics import UNMATCHED, ApiMetrics
from p2pledger.api.service import LedgerService, TxState
from p2pledger.api.views import (
    anchor_json,
    balance_json,
    config_history_json,
    config_json,
    node_status_json,
    tx_status_json,
)
from p2pledger.crypto import sha256
from p2pledger.errors import NotFound

__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_MAX_BATCH_TXS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_WAIT_S",
    "DEFAULT_WAIT_S",
    "ApiLimits",
    "create_app",
]

DEFAULT_MAX_BODY_BYTES: Final = 1 << 20
DEFAULT_WAIT_S: Final = 10.0
DEFAULT_MAX_WAIT_S: Final = 60.0
DEFAULT_BODY_TIMEOUT_S: Final = 30.0
DEFAULT_MAX_BATCH_TXS: Final = 1000

#: Entry refusals that, with ``wait``, mean "already on its way": wait for it instead.
_RESUMABLE: Final = frozenset({"already_pending", "already_committed"})
_NOT_A_REJECTION: Final = frozenset({"commit_timeout"})

Handler = Callable[[Request], Awaitable[Response]]

_log = structlog.get_logger("p2pledger.api")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiLimits:
    """Bounds on what one request may make the API read or wait for."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_batch_txs: int = DEFAULT_MAX_BATCH_TXS

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1 or self.max_batch_txs < 1:
            raise ValueError("max_body_bytes and max_batch_txs must be positive")
        if not (self.max_wait_s > 0 and self.body_timeout_s > 0):
            raise ValueError("max_wait_s and body_timeout_s must be positive")

    @property
    def default_wait_s(self) -> float:
        return min(DEFAULT_WAIT_S, self.max_wait_s)


def create_app(
    service: LedgerService,
    registry: CollectorRegistry,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    max_batch_txs: int = DEFAULT_MAX_BATCH_TXS,
) -> ASGIApp:
    """The API over ``service``; its counters are registered on ``registry``, and
    ``GET /metrics`` exposes the whole of ``registry``."""
    limits = ApiLimits(
        max_body_bytes=max_body_bytes,
        max_wait_s=max_wait_s,
        body_timeout_s=body_timeout_s,
        max_batch_txs=max_batch_txs,
    )
    metrics = ApiMetrics(registry)
    h = _Handlers(service, registry, metrics, limits)
    routes = [
        Route("/v1/transactions", _endpoint(h.submit), methods=["POST"]),
        Route("/v1/transactions/{tx_id}", _endpoint(h.transaction), methods=["GET"]),
        Route("/v1/blocks/{height}", _endpoint(h.block), methods=["GET"]),
        Route("/v1/funds/{fund}/accounts/{account}", _endpoint(h.balance), methods=["GET"]),
        Route("/v1/notary/{digest}", _endpoint(h.notary), methods=["GET"]),
        Route("/v1/config", _endpoint(h.config), methods=["GET"]),
        Route("/v1/config/history", _endpoint(h.config_history), methods=["GET"]),
        Route("/v1/status", _endpoint(h.status), methods=["GET"]),
        Route("/health", _endpoint(h.health), methods=["GET"]),
        Route("/metrics", _endpoint(h.metrics), methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _routing_error})
    app.router.redirect_slashes = False  # /v1/status/ is a 404, not a redirect
    return _Metered(app, metrics)


class _Handlers:
    """One method per endpoint; each raises RequestRefused for what it will not do."""

    def __init__(
        self,
        service: LedgerService,
        registry: CollectorRegistry,
        metrics: ApiMetrics,
        limits: ApiLimits,
    ) -> None:
        self._service = service
        self._registry = registry
        self._metrics = metrics
        self._limits = limits

    # --- transactions ---------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        try:
            return await self._submit(request)
        except RequestRefused as exc:
            if exc.code not in _NOT_A_REJECTION:
                self._metrics.rejection(exc.code)
            raise

    async def _submit(self, request: Request) -> Response:
        inputs.check_query(request)
        body = await inputs.read_json_object(
            request,
            max_bytes=self._limits.max_body_bytes,
            timeout_s=self._limits.body_timeout_s,
        )
        if "txs" in body:
            return await self._submit_batch(body)
        inputs.require_fields(body, required=("tx",), optional=("wait", "timeout_s"))
        raw = inputs.hex_value(body["tx"], "tx")
        wait = inputs.optional_bool(body, "wait", False)
        timeout_s = inputs.optional_number(
            body, "timeout_s", self._limits.default_wait_s, low=0.0, high=self._limits.max_wait_s
        )
        tx_id = await self._admit(raw, resume=wait)
        if not wait:
            return JSONResponse({"id": tx_id.hex(), "status": TxState.PENDING.value}, 202)
        with trio.move_on_after(timeout_s):
            status = await self._service.wait_committed(tx_id)
            return JSONResponse(tx_status_json(status), 200)
        raise RequestRefused(
            504,
            "commit_timeout",
            f"transaction {tx_id.hex()} was accepted but not committed within "
            f"{timeout_s:g} s; it may still commit: ask GET /v1/transactions/{tx_id.hex()}",
            extra={"id": tx_id.hex()},
        )

    async def _submit_batch(self, body: inputs.JsonObject) -> Response:
        """``{"txs": [hex, ...]}``: each transaction gets its own answer, in order, in
        ``results``: what the one-transaction form would answer, as ``{"id", "status",
        ...}`` or ``{"id", "http_status", "error"}``. The request itself is 202 (200
        with ``wait``); it fails as a whole only for what is wrong with the request."""
        inputs.require_fields(body, required=("txs",), optional=("wait", "timeout_s"))
        items = body["txs"]
        if not isinstance(items, list) or not items:
            raise inputs.bad_request("'txs' must be a non-empty list of hex strings")
        if len(items) > self._limits.max_batch_txs:
            raise RequestRefused(
                413,
                "batch_too_large",
                f"{len(items)} transactions in one request; at most {self._limits.max_batch_txs}",
            )
        raws = [inputs.hex_value(v, f"txs[{i}]") for i, v in enumerate(items)]
        wait = inputs.optional_bool(body, "wait", False)
        timeout_s = inputs.optional_number(
            body, "timeout_s", self._limits.default_wait_s, low=0.0, high=self._limits.max_wait_s
        )
        try:
            outcomes = await self._service.submit_many(raws)
        except Unavailable as exc:  # the member takes nothing now (shutting down, not a member)
            raise _unavailable(exc) from exc
        answers: list[dict[str, Any] | None] = []
        accepted: dict[int, bytes] = {}
        retry_after: int | None = None
        for i, (raw, outcome) in enumerate(zip(raws, outcomes, strict=True)):
            if isinstance(outcome, bytes):
                accepted[i] = outcome
                answers.append(None)
                continue
            if isinstance(outcome, TxRejected) and wait and outcome.reason in _RESUMABLE:
                accepted[i] = sha256(raw)
                answers.append(None)
                continue
            refused = (
                RequestRefused(rejection_status(outcome.reason), outcome.reason, outcome.message)
                if isinstance(outcome, TxRejected)
                else _unavailable(outcome)
            )
            if "Retry-After" in refused.headers:
                retry_after = max(retry_after or 0, int(refused.headers["Retry-After"]))
            self._metrics.rejection(refused.code)
            answers.append(_item_error(sha256(raw), refused))
        if wait and accepted:
            with trio.move_on_after(timeout_s):
                await self._service.wait_all_committed(list(accepted.values()))
        statuses = (
            await self._service.tx_statuses(list(accepted.values())) if wait and accepted else []
        )
        for n, (i, tx_id) in enumerate(accepted.items()):
            if not wait:
                answers[i] = {"id": tx_id.hex(), "status": TxState.PENDING.value}
            elif statuses[n].state is TxState.COMMITTED:
                answers[i] = tx_status_json(statuses[n])
            else:
                answers[i] = _item_error(
                    tx_id,
                    RequestRefused(
                        504,
                        "commit_timeout",
                        f"transaction {tx_id.hex()} was accepted but not committed within "
                        f"{timeout_s:g} s; it may still commit",
                    ),
                )
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return JSONResponse({"results": answers}, 200 if wait else 202, headers=headers)

    async def _admit(self, raw: bytes, *, resume: bool) -> bytes:
        try:
            return await self._service.submit(raw)
        except TxRejected as exc:
            if resume and exc.reason in _RESUMABLE:
                return sha256(raw)  # the id of a transaction is the hash of its bytes
            raise RequestRefused(rejection_status(exc.reason), exc.reason, exc.message) from exc
        except Unavailable as exc:
            raise _unavailable(exc) from exc

    async def transaction(self, request: Request) -> Response:
        inputs.check_query(request)
        tx_id = inputs.parse_id(request.path_params["tx_id"])
        status = await self._service.tx_status(tx_id)
        if status.state is TxState.UNKNOWN:
            raise RequestRefused(
                404,
                "unknown_transaction",
                f"transaction {tx_id.hex()} is neither pending nor committed on this member",
            )
        out = tx_status_json(status)
        if status.state is TxState.COMMITTED:
            out["receipt"] = await self._service.receipt(tx_id)
        return JSONResponse(out)

    # --- chain and state --------------------------------------------------------------

    async def block(self, request: Request) -> Response:
        inputs.check_query(request, ("txs",))
        text = request.path_params["height"]
        height = None if text == "latest" else inputs.parse_height(text)
        with_txs = inputs.query_flag(request, "txs")
        try:
            block = await self._service.block(height)
        except NotFound as exc:
            raise RequestRefused(404, "unknown_block", str(exc)) from exc
        return JSONResponse(block.to_json(with_txs=with_txs))

    async def balance(self, request: Request) -> Response:
        inputs.check_query(request)
        fund = inputs.parse_fund(request.path_params["fund"])
        account = inputs.parse_id(request.path_params["account"], "account (a user key)")
        try:
            amount, lots = await self._service.balance(fund, account)
        except NotFound as exc:
            raise RequestRefused(404, "unknown_fund", str(exc)) from exc
        return JSONResponse(balance_json(fund, account, amount, lots))

    async def notary(self, request: Request) -> Response:
        inputs.check_query(request)
        digest = inputs.parse_digest(request.path_params["digest"])
        record = await self._service.anchor(digest)
        if record is None:
            raise RequestRefused(
                404, "not_anchored", f"the digest {digest.hex()} is not anchored on this ledger"
            )
        receipt = await self._service.receipt(record.tx_id)
        return JSONResponse(anchor_json(record, receipt))

    # --- membership -------------------------------------------------------------------

    async def config(self, request: Request) -> Response:
        inputs.check_query(request)
        network = await self._service.network()
        return JSONResponse(config_json(self._service.status().chain_id, network))

    async def config_history(self, request: Request) -> Response:
        inputs.check_query(request)
        return JSONResponse(config_history_json(await self._service.config_history()))

    # --- the member itself ------------------------------------------------------------

    async def status(self, request: Request) -> Response:
        inputs.check_query(request)
        healthy = self._service.healthy()
        return JSONResponse(node_status_json(self._service.status(), healthy=healthy))

    async def health(self, request: Request) -> Response:
        inputs.check_query(request)
        if not self._service.healthy():
            problem = self._service.health_problem()
            raise RequestRefused(
                503,
                "unhealthy",
                problem or "the store is closed or no quorum or leader is in reach",
            )
        return JSONResponse({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        inputs.check_query(request)
        return Response(
            generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def _unavailable(exc: Unavailable) -> RequestRefused:
    """503 with Retry-After, with the code that says why (a full mempool, shutting down,
    not a member)."""
    seconds = max(0, math.ceil(exc.retry_after_s))
    return RequestRefused(
        503,
        exc.code,
        f"{exc.message}; retry after {seconds} s",
        headers={"Retry-After": str(seconds)},
        extra={"retry_after_s": seconds},
    )


def _item_error(tx_id: bytes, refused: RequestRefused) -> dict[str, Any]:
    """One transaction's refusal inside a batch answer."""
    return {"id": tx_id.hex(), "http_status": refused.status, **refused.body()}


def _endpoint(handler: Handler) -> Handler:
    """Turn what ``handler`` raises into JSON error responses."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestRefused as exc:
            return error_response(exc)
        except NotFound as exc:
            return error_response(RequestRefused(404, "not_found", str(exc)))
        except Exception:
            _log.exception("api.request.failed", method=request.method, path=request.url.path)
            return error_response(
                RequestRefused(500, "internal_error", "the member failed to answer; see its log")
            )

    return endpoint


def error_response(exc: RequestRefused) -> JSONResponse:
    return JSONResponse(exc.body(), exc.status, headers=dict(exc.headers))


_ROUTING_CODES: Final = {404: "not_found", 405: "method_not_allowed"}


async def _routing_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405, in the API's error shape."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    path = request.url.path
    headers = dict(exc.headers or {})
    if status == 404:
        message = f"no endpoint at {path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {path}; use {headers.get('Allow', '?')}"
    else:  # pragma: no cover - the router raises only 404 and 405
        message = str(exc.detail)
    code = _ROUTING_CODES.get(status, "http_error")
    return error_response(RequestRefused(status, code, message, headers=headers))


class _Metered:
    """Counts every answered request by route template and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status: int | None = None

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_counted)
        finally:
            if status is not None:
                self._metrics.request(_endpoint_label(scope), status)


def _endpoint_label(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
