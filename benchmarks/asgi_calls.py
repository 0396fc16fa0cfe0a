"""Calling an ASGI app by hand: a built scope, a one-shot receive and a counting send.

No server and no client library sit in the timed path, so what is timed is the app (and the
middleware around it) plus a few attribute updates that cost the same for every variant.
"""

from __future__ import annotations

import asyncio
from time import perf_counter_ns
from typing import Any

from retention_middleware._types import ASGIApp, Message, Scope

# Headers as the OpenAI Python SDK sends them; the middleware scans them for the tenant.
_CLIENT_HEADERS: list[tuple[bytes, bytes]] = [
    (b"host", b"127.0.0.1:8000"),
    (b"accept", b"application/json"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"),
    (b"user-agent", b"OpenAI/Python 1.99.0"),
    (b"x-stainless-lang", b"python"),
    (b"authorization", b"Bearer sk-benchmark"),
    (b"content-type", b"application/json"),
]


def http_scope(method: str, path: str, body: bytes) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii"),
        "root_path": "",
        "query_string": b"",
        "headers": [*_CLIENT_HEADERS, (b"content-length", str(len(body)).encode("ascii"))],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


class Client:
    """The client side of one call: what arrived, and when the first body byte did."""

    __slots__ = (
        "body",
        "sent",
        "status",
        "body_messages",
        "data_messages",
        "body_bytes",
        "first_byte_ns",
        "done",
        "last_chunk",
    )

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent = False
        self.status: int | None = None
        self.body_messages = 0
        self.data_messages = 0  # body messages that carried bytes
        self.body_bytes = 0
        self.first_byte_ns = 0
        self.done = False
        self.last_chunk = b""  # kept so a run can check what it measured (e.g. a stored id)

    async def receive(self) -> Message:
        if not self.sent:
            self.sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        # A client that stays connected: the app's disconnect watcher waits here until cancelled.
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            self.body_messages += 1
            body = message.get("body", b"")
            if body and not self.first_byte_ns:
                self.first_byte_ns = perf_counter_ns()
            if body:
                self.data_messages += 1
                self.body_bytes += len(body)
                self.last_chunk = body
            if not message.get("more_body", False):
                self.done = True
        elif message["type"] == "http.response.start":
            self.status = message["status"]


class Request:
    """One request to replay many times: a scope template and its body."""

    def __init__(self, method: str, path: str, body: bytes) -> None:
        self.body = body
        self._scope = http_scope(method, path, body)

    def scope(self) -> Scope:
        # A fresh dict per call, as a server makes one per request; the header list may be shared
        # because nothing in an ASGI app may mutate it.
        return dict(self._scope)


async def timed_call(app: ASGIApp, request: Request, client: Client | None = None) -> tuple[int, int, Client]:
    """Run one request; returns (total ns, ns to first body byte, client)."""
    client = client or Client(request.body)
    scope = request.scope()
    started = perf_counter_ns()
    await app(scope, client.receive, client.send)
    finished = perf_counter_ns()
    if client.status != 200 or not client.done:
        raise RuntimeError(f"{request.scope()['path']} answered {client.status} (complete: {client.done})")
    return finished - started, client.first_byte_ns - started, client


def expect(condition: bool, what: str, **details: Any) -> None:
    """Fail the run loudly when a benchmark is not measuring what it claims to."""
    if not condition:
        raise RuntimeError(f"benchmark sanity check failed: {what} {details or ''}")
