"""Driving an ASGI app in-process: one request in, the whole answer out.

No sockets: the scope and the body messages are built here, so a test can send what
a real client cannot easily send (a Content-Length with no body behind it, a body in
chunks without a length) and prove what the app reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from starlette.types import ASGIApp, Message

#: No in-process request may take longer than this (real seconds, or virtual ones).
CALL_TIMEOUT_S = 120.0


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str:
        error = self.json()["error"]
        assert set(error) >= {"code", "message"}, error
        assert isinstance(error["message"], str) and error["message"]
        code: str = error["code"]
        return code


async def call(
    app: ASGIApp,
    method: str,
    target: str,
    *,
    body: bytes | None = None,
    json_body: Any = None,
    chunks: Sequence[bytes] | None = None,
    headers: Sequence[tuple[str, str]] = (),
    content_length: bool = True,
    body_arrives: bool = True,
) -> Answer:
    """Send one request; ``chunks`` sends the body in parts without a Content-Length,
    ``body_arrives=False`` declares the body but never sends it."""
    if json_body is not None:
        body = json.dumps(json_body).encode()
    parts = list(chunks) if chunks is not None else [body or b""]
    path, _, query = target.partition("?")
    sent_headers = [(k.lower().encode(), v.encode()) for k, v in headers]
    if content_length and chunks is None and body is not None:
        sent_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": sent_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8401),
    }
    queue: list[Message] = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    answer = Answer(status=0)
    started = trio.Event()

    async def receive() -> Message:
        if body_arrives and queue:
            return queue.pop(0)
        await trio.sleep_forever()  # the client sends nothing more and stays connected
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            started.set()
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    with trio.fail_after(CALL_TIMEOUT_S):
        await app(scope, receive, send)
    assert started.is_set(), "the app answered nothing"
    return answer
