"""The middleware's own contract: pass-through, one access-log line per request, failures, lifespan."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Message, Receive, Scope, Send

from support.asgi_tools import SentMessages, asgi_client, capture_all_logs, read_request_body

ACCESS_FIELDS = {
    "ts", "request_id", "method", "path", "status", "duration_ms", "ttfb_ms", "bytes_in", "bytes_out",
    "model", "stream", "usage", "tenant", "stored", "error", "content_logged",
}  # fmt: skip


def client_for(app: Any) -> httpx.AsyncClient:
    return asgi_client(app)


class StreamingEcho:
    """An unknown route that streams back what it receives, chunk for chunk, as it receives it."""

    def __init__(self) -> None:
        self.received_messages: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-upstream", b"yes")]})
        while True:
            message = await receive()
            self.received_messages.append(message)
            await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": True})
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def test_unknown_routes_pass_through_unbuffered_in_both_directions() -> None:
    upstream = StreamingEcho()
    outer = SentMessages(RetentionMiddleware(upstream, RetentionSettings()))
    chunks = [b"first", b"second", b"third"]
    received: list[Message] = []

    async def receive() -> Message:
        body = chunks[len(received)] if len(received) < len(chunks) else b""
        message = {"type": "http.request", "body": body, "more_body": len(received) < len(chunks) - 1}
        received.append(message)
        return message

    scope = {"type": "http", "method": "PUT", "path": "/custom/thing", "headers": [], "query_string": b"a=1"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            # Each chunk comes back before the next one has been read from the client.
            assert message["body"] == chunks[len(received) - 1]

    await outer(scope, receive, send)
    assert [m["body"] for m in upstream.received_messages] == chunks
    bodies = [m["body"] for m in outer.body_messages]
    assert bodies == [*chunks, b""]
    headers = outer.messages[0]["headers"]
    assert headers[0] == (b"x-upstream", b"yes") and [name for name, _ in headers] == [b"x-upstream", b"x-request-id"]


async def test_one_access_line_per_request_with_metadata_only() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_request_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b" world"})

    middleware = RetentionMiddleware(app, RetentionSettings(tenant_secret="x" * 32))
    with capture_all_logs() as logs:
        async with client_for(middleware) as client:
            response = await client.post(
                "/anything?secret_query=QUERYCANARY",
                content=b"BODYCANARY",
                headers={"authorization": "Bearer sk-KEYCANARY", "x-custom": "HEADERCANARY"},
            )
    assert response.text == "hello world"
    lines = logs.access_lines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert set(entry) == ACCESS_FIELDS
    assert entry["method"] == "POST" and entry["path"] == "/anything" and entry["status"] == 200
    assert entry["bytes_in"] == 10 and entry["bytes_out"] == 11
    assert entry["ttfb_ms"] is not None and entry["ttfb_ms"] <= entry["duration_ms"]
    assert len(entry["tenant"]) == 32 and entry["tenant"] != "anonymous"
    for canary in ("QUERYCANARY", "BODYCANARY", "KEYCANARY", "HEADERCANARY", "sk-", "127.0.0.1"):
        assert canary not in logs.text()


async def test_same_key_same_tenant_other_key_other_tenant() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = RetentionMiddleware(app, RetentionSettings(tenant_secret="x" * 32))
    with capture_all_logs() as logs:
        async with client_for(middleware) as client:
            for key in ("sk-a", "sk-a", "sk-b"):
                await client.get("/x", headers={"authorization": f"Bearer {key}"})
            await client.get("/x")
    tenants = [json.loads(line)["tenant"] for line in logs.access_lines()]
    assert tenants[0] == tenants[1] != tenants[2]
    assert tenants[3] == "anonymous"


async def test_client_address_only_when_asked() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    for flag in (False, True):
        middleware = RetentionMiddleware(app, RetentionSettings(log_client_address=flag))
        transport = httpx.ASGITransport(app=middleware, client=("203.0.113.7", 5555))
        with capture_all_logs() as logs:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await client.get("/x")
        assert ("203.0.113.7" in logs.text()) is flag


async def test_an_app_that_raises_gets_a_500_line_and_the_error_propagates() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    middleware = SentMessages(RetentionMiddleware(app, RetentionSettings()))
    with capture_all_logs() as logs:
        async with client_for(middleware) as client:
            with pytest.raises(RuntimeError, match="boom"):
                await client.get("/x")
    entry = json.loads(logs.access_lines()[0])
    assert entry["status"] == 500 and entry["error"] == "app_error"
    assert middleware.messages[0]["status"] == 500
    assert json.loads(middleware.body_messages[0]["body"])["error"]["type"] == "server_error"


async def test_an_app_that_raises_mid_stream_keeps_its_status_and_records_the_error() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("mid-stream")

    middleware = RetentionMiddleware(app, RetentionSettings())
    with capture_all_logs() as logs:
        async with client_for(middleware) as client:
            with pytest.raises(RuntimeError):
                await client.get("/x")
    lines = logs.access_lines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["status"] == 200 and entry["error"] == "app_error" and entry["bytes_out"] == 4


async def test_client_disconnect_mid_stream_is_one_line_with_its_error() -> None:
    gate = asyncio.Event()  # set once the app has seen the disconnect

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_request_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        message = await receive()  # the way starlette's StreamingResponse notices a disconnect
        assert message["type"] == "http.disconnect"
        gate.set()

    messages = [{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        pass

    scope = {"type": "http", "method": "GET", "path": "/stream", "headers": [], "query_string": b""}
    with capture_all_logs() as logs:
        await RetentionMiddleware(app, RetentionSettings())(scope, receive, send)
    lines = logs.access_lines()
    assert gate.is_set() and len(lines) == 1
    assert json.loads(lines[0])["error"] == "client_disconnected"


async def test_websocket_and_lifespan_scopes_pass_through() -> None:
    seen: list[tuple[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        seen.append((scope["type"], message))
        if scope["type"] == "lifespan":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "websocket.accept"})

    middleware = RetentionMiddleware(app, RetentionSettings())
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def lifespan_receive() -> Message:
        return {"type": "lifespan.startup"}

    async def ws_receive() -> Message:
        return {"type": "websocket.connect"}

    with capture_all_logs() as logs:
        await middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_receive, send)
        await middleware({"type": "websocket", "path": "/ws", "headers": []}, ws_receive, send)
    assert seen == [("lifespan", {"type": "lifespan.startup"}), ("websocket", {"type": "websocket.connect"})]
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "websocket.accept"}]
    assert logs.access_lines() == []


def test_constructed_with_no_settings_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_TTL", "12h")
    monkeypatch.setenv("RETENTION_POLICY", "zero")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    middleware = RetentionMiddleware(app)
    assert middleware.settings.policy == "zero"
    assert middleware.settings.ttl.total_seconds() == 12 * 3600


def test_a_bad_environment_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_TTL", "forever")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    with pytest.raises(ValueError, match="RETENTION_TTL"):
        RetentionMiddleware(app)


def test_access_logger_is_silent_unless_configured() -> None:
    logger = logging.getLogger("retention_middleware.access")
    assert logger.handlers == []


async def test_a_cancelled_request_is_logged_once_and_not_answered() -> None:
    started = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await asyncio.Event().wait()  # until cancelled

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/slow", "headers": [], "query_string": b""}
    with capture_all_logs() as logs:
        task = asyncio.create_task(RetentionMiddleware(app, RetentionSettings())(scope, receive, send))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sent == []
    [line] = logs.access_lines()
    assert json.loads(line)["error"] == "cancelled"
