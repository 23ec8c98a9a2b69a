"""Reading what a client sends: bounded JSON bodies, strict fields, path and query values.

Why strict: a client's typo must fail loudly, never be half-understood. A body is read
only up to ``max_bytes`` (a larger Content-Length is refused before a byte is read),
within a deadline; it must be one JSON object with no repeated keys and no NaN or
Infinity; unknown fields are refused ("unknown_field"), wrong types too
("bad_request"), and ``bool`` is never taken for a number. Every refusal is a
``RequestRefused`` naming the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from contextlib import aclosing
from typing import Any, Final

import trio
from starlette.requests import ClientDisconnect, Request

from p2pledger.api.errors import RequestRefused
from p2pledger.config import NAME_PATTERN

__all__ = [
    "JsonObject",
    "bad_request",
    "check_query",
    "hex_value",
    "optional_bool",
    "optional_number",
    "parse_digest",
    "parse_fund",
    "parse_height",
    "parse_id",
    "query_flag",
    "read_json_object",
    "require_fields",
]

JsonObject = dict[str, Any]

_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})*")
_DIGITS: Final = re.compile(r"[0-9]{1,19}")
_FUND: Final = re.compile(NAME_PATTERN)
_MAX_HEIGHT: Final = 2**63 - 1
_ID_HEX: Final = 64
_FLAGS: Final[Mapping[str, bool]] = {"true": True, "1": True, "false": False, "0": False}


def bad_request(message: str) -> RequestRefused:
    return RequestRefused(400, "bad_request", message)


async def read_json_object(request: Request, *, max_bytes: int, timeout_s: float) -> JsonObject:
    """The request body as a JSON object, read within ``timeout_s`` and ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _DIGITS.fullmatch(declared.strip()):
            raise bad_request("the Content-Length header is not a number")
        if int(declared) > max_bytes:
            raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        with trio.fail_after(timeout_s):
            async with aclosing(request.stream()) as stream:
                async for chunk in stream:
                    size += len(chunk)
                    if size > max_bytes:
                        raise _too_large(max_bytes)
                    chunks.append(chunk)
    except trio.TooSlowError:
        raise RequestRefused(
            408, "body_timeout", f"the request body did not arrive within {timeout_s:g} s"
        ) from None
    except ClientDisconnect:
        raise RequestRefused(400, "client_disconnected", "the client went away") from None
    return parse_json_object(b"".join(chunks))


def parse_json_object(data: bytes) -> JsonObject:
    """Parse one JSON object: UTF-8, no duplicate keys, no NaN or Infinity."""
    if not data.strip():
        raise RequestRefused(400, "malformed_json", "the request body is empty; send a JSON object")
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RequestRefused(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise bad_request(f"the body must be a JSON object, not {_json_type(value)}")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> JsonObject:
    out: JsonObject = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _too_large(max_bytes: int) -> RequestRefused:
    return RequestRefused(413, "body_too_large", f"the request body is over {max_bytes} bytes")


def require_fields(
    body: JsonObject, *, required: Collection[str], optional: Collection[str] = ()
) -> None:
    """Refuse unknown fields first (a typo explains a missing one), then missing ones."""
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        allowed = ", ".join(sorted({*required, *optional}))
        raise RequestRefused(
            400, "unknown_field", f"unknown field(s) {', '.join(unknown)}; allowed: {allowed}"
        )
    missing = sorted(set(required) - set(body))
    if missing:
        raise bad_request(f"missing field(s): {', '.join(missing)}")


def hex_value(value: Any, name: str) -> bytes:
    """A JSON string of hex digits, as bytes."""
    if not isinstance(value, str):
        raise bad_request(f"{name!r} must be a string of hex digits, not {_json_type(value)}")
    # fromhex skips whitespace between bytes, which the length check then refuses;
    # it is many times quicker than a regular expression over a whole transaction.
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if not raw or 2 * len(raw) != len(value):
        raise bad_request(f"{name!r} must be a non-empty, even number of hex digits")
    return raw


def optional_bool(body: JsonObject, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise bad_request(f"{name!r} must be true or false, not {_json_type(value)}")
    return value


def optional_number(
    body: JsonObject, name: str, default: float, *, low: float, high: float
) -> float:
    """A number in ``(low, high]``."""
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{name!r} must be a number, not {_json_type(value)}")
    number = float(value)
    if not math.isfinite(number) or not low < number <= high:
        raise bad_request(f"{name!r} must be more than {low:g} and at most {high:g}")
    return number


def parse_id(text: str, what: str = "transaction id") -> bytes:
    """A 32-byte id or digest written as 64 hex digits in a path."""
    if len(text) != _ID_HEX or not _HEX.fullmatch(text):
        raise bad_request(f"{text[:80]!r} is not a {what} (64 hex digits)")
    return bytes.fromhex(text)


def parse_digest(text: str) -> bytes:
    return parse_id(text, "SHA-256 digest")


def parse_height(text: str) -> int:
    """A block height in a path: decimal digits, no sign."""
    if not _DIGITS.fullmatch(text) or int(text) > _MAX_HEIGHT:
        raise bad_request(f"{text[:80]!r} is not a block height (a number, or 'latest')")
    return int(text)


def parse_fund(text: str) -> str:
    if not _FUND.fullmatch(text):
        raise bad_request(
            f"{text[:80]!r} is not a fund name (1 to 63 lowercase letters, digits, hyphens)"
        )
    return text


def check_query(request: Request, allowed: Collection[str] = ()) -> None:
    """Refuse query parameters the endpoint does not take, and repeated ones."""
    params = request.query_params
    unknown = sorted(set(params.keys()) - set(allowed))
    if unknown:
        what = ", ".join(allowed) or "none"
        raise RequestRefused(
            400,
            "unknown_field",
            f"unknown query parameter(s) {', '.join(unknown)}; allowed: {what}",
        )
    for key in params:
        if len(params.getlist(key)) > 1:
            raise bad_request(f"the query parameter {key!r} is given more than once")


def query_flag(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        return _FLAGS[value.lower()]
    except KeyError:
        raise bad_request(f"the query parameter {name!r} must be true or false") from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
