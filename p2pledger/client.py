"""A small synchronous client of a member's HTTP API, on the standard library only.

Why sync and stdlib: the CLI and netsim's drivers call it from plain threads, and a
client should not need more than Python to talk to a ledger. It speaks exactly the
API of ``p2pledger.api`` and returns its JSON answers as dicts.

Errors are p2pledger's: ``BadApiUrl``, ``ApiUnreachable`` (nothing answers at the URL, or the
connection broke), ``ApiTimeout`` (no answer in time), ``ApiRequestFailed`` (the API
answered with an error: its status, code and message, and ``retry_after_s`` for a
full mempool), ``ApiResponseInvalid`` (the answer is not the API's JSON). Proxies
from the environment are ignored: the API is a member's own, usually on localhost.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Final

from p2pledger.errors import LocalError, RemoteError

__all__ = [
    "DEFAULT_API_URL",
    "ApiClient",
    "ApiRequestFailed",
    "ApiResponseInvalid",
    "ApiTimeout",
    "ApiUnreachable",
    "BadApiUrl",
    "api_url",
]

DEFAULT_API_URL: Final = "http://127.0.0.1:8401"
DEFAULT_TIMEOUT_S: Final = 30.0
#: The most bytes of one answer the client reads (a block can be large, not endless).
MAX_RESPONSE_BYTES: Final = 128 * 1024 * 1024
#: Extra seconds a waiting submit gives the server beyond its own commit timeout.
_WAIT_MARGIN_S: Final = 5.0
_ANY_HOST: Final = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}


class ApiUnreachable(LocalError):
    """Nothing answers at the API's URL, or the connection to it broke."""


class BadApiUrl(LocalError):
    """The API's URL, as given, is not an http(s)://host:port URL."""


class ApiTimeout(LocalError):
    """The API did not answer in time."""


class ApiResponseInvalid(RemoteError):
    """The API's answer is not the JSON it should be."""


class ApiRequestFailed(RemoteError):
    """The API answered with an error (4xx or 5xx)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after_s: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
        self.details: dict[str, Any] = details or {}


def api_url(text: str) -> str:
    """A base URL from ``http(s)://host:port`` or a bare ``host:port`` (as in node.toml).

    A wildcard listen host (0.0.0.0, ::) is reached through the loopback address.
    """
    text = text.strip()
    if "://" not in text:
        text = f"http://{text}"
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise BadApiUrl(f"{text!r} is not an API URL; write http://host:port")
    if parts.query or parts.fragment or parts.path not in {"", "/"}:
        raise BadApiUrl(f"{text!r} is not an API URL; write http://host:port")
    netloc = parts.netloc
    host, sep, port = netloc.rpartition(":")
    if sep and host in _ANY_HOST and port.isdigit():
        netloc = f"{_ANY_HOST[host]}:{port}"
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise BadApiUrl(f"{text!r} is not an API URL: {exc}") from exc
    return f"{parts.scheme}://{netloc}"


class ApiClient:
    """Calls one member's API; every call is one HTTP request with a timeout."""

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        self.base_url = api_url(base_url)
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # --- endpoints ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._json("GET", "/v1/status")

    def chain_id(self) -> bytes:
        """The chain id transactions must carry, as the member reports it."""
        text = self.status().get("chain_id")
        try:
            chain_id = bytes.fromhex(text) if isinstance(text, str) else b""
        except ValueError:
            chain_id = b""
        if len(chain_id) != 32:
            raise ApiResponseInvalid(f"{self.base_url} reported no valid chain id")
        return chain_id

    def submit(self, raw: bytes, *, wait: bool = False, timeout_s: float = 10.0) -> dict[str, Any]:
        """Send a signed transaction; with ``wait``, return once it is committed (the
        API answers 504 "commit_timeout" after ``timeout_s``)."""
        body: dict[str, Any] = {"tx": raw.hex(), "wait": wait}
        if wait:
            body["timeout_s"] = timeout_s
        http_timeout = max(self.timeout_s, timeout_s + _WAIT_MARGIN_S) if wait else None
        return self._json("POST", "/v1/transactions", body, timeout_s=http_timeout)

    def transaction(self, tx_id: bytes) -> dict[str, Any]:
        return self._json("GET", f"/v1/transactions/{tx_id.hex()}")

    def block(self, height: int | None = None, *, txs: bool = False) -> dict[str, Any]:
        which = "latest" if height is None else str(height)
        query = "?txs=true" if txs else ""
        return self._json("GET", f"/v1/blocks/{which}{query}")

    def balance(self, fund: str, account: bytes) -> dict[str, Any]:
        fund_part = urllib.parse.quote(fund, safe="")
        return self._json("GET", f"/v1/funds/{fund_part}/accounts/{account.hex()}")

    def anchor(self, digest: bytes) -> dict[str, Any] | None:
        """The anchoring of ``digest`` with its receipt, or None if it is not anchored."""
        try:
            return self._json("GET", f"/v1/notary/{digest.hex()}")
        except ApiRequestFailed as exc:
            if exc.code == "not_anchored":
                return None
            raise

    def config(self) -> dict[str, Any]:
        """The membership in force: ``version``, ``chain_id``, ``network``, ``toml``."""
        return self._json("GET", "/v1/config")

    def config_history(self) -> dict[str, Any]:
        """Every membership version: ``{"versions": [...]}``."""
        return self._json("GET", "/v1/config/history")

    def healthy(self) -> bool:
        try:
            self._json("GET", "/health")
        except ApiRequestFailed as exc:
            if exc.code == "unhealthy":
                return False
            raise
        return True

    def metrics(self) -> str:
        _, data = self._send("GET", "/metrics", None, self.timeout_s)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiResponseInvalid("the metrics are not UTF-8 text") from exc

    # --- HTTP ---------------------------------------------------------------------

    def _json(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        _, answer = self._send(method, path, data, timeout_s or self.timeout_s)
        value = _parse_json(answer)
        if not isinstance(value, dict):
            raise ApiResponseInvalid(f"{method} {path}: the answer is not a JSON object")
        return value

    def _send(
        self, method: str, path: str, data: bytes | None, timeout_s: float
    ) -> tuple[int, bytes]:
        url = self.base_url + path
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=timeout_s) as response:
                return response.status, _read(response)
        except urllib.error.HTTPError as exc:
            with exc:
                raise _failure(exc.code, _read(exc), exc.headers.get("Retry-After")) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from exc
        except TimeoutError as exc:
            raise ApiTimeout(
                f"the API at {self.base_url} did not answer within {timeout_s:g} s"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, reason: object) -> LocalError:
        if isinstance(reason, TimeoutError):
            return ApiTimeout(f"the API at {self.base_url} did not answer in time")
        if isinstance(reason, ConnectionRefusedError):
            return ApiUnreachable(f"cannot reach the API at {self.base_url}: is the node running?")
        text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return ApiUnreachable(f"cannot reach the API at {self.base_url}: {text}")


def _read(response: Any) -> bytes:
    data: bytes = response.read(MAX_RESPONSE_BYTES + 1)
    if len(data) > MAX_RESPONSE_BYTES:
        raise ApiResponseInvalid(f"the answer is over {MAX_RESPONSE_BYTES} bytes")
    return data


def _parse_json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiResponseInvalid(f"the answer is not JSON: {exc}") from exc


def _failure(status: int, data: bytes, retry_after: str | None) -> ApiRequestFailed:
    try:
        error = _parse_json(data)["error"]
        code, message = error["code"], error["message"]
        if not isinstance(code, str) or not isinstance(message, str):
            raise TypeError("code and message must be strings")
    except (ApiResponseInvalid, KeyError, TypeError):
        text = data[:200].decode("utf-8", "replace").strip() or "no body"
        return ApiRequestFailed(status, "http_error", f"HTTP {status}: {text}")
    seconds = int(retry_after) if retry_after is not None and retry_after.isdigit() else None
    details = {k: v for k, v in error.items() if k not in {"code", "message"}}
    return ApiRequestFailed(status, code, message, retry_after_s=seconds, details=details)
