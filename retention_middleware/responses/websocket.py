"""OpenAI's Responses WebSocket mode on ``/v1/responses``, served over an upstream that speaks HTTP.

A client keeps one socket open and sends ``response.create`` events (the create body plus ``type``
and an optional ``stream_id`` lane); the server answers each with the events a streamed create
sends, one JSON text frame per event. Each ``response.create`` becomes a streamed
``POST /v1/responses`` through the middleware's own HTTP path (``http``), so rehydration, storing,
the log guard, metering and the access log apply exactly as over HTTP. Events are processed one at a
time, in the order they arrived; every event of a turn carries its ``stream_id`` when it had one.
An error is an ``error`` event (``status`` and OpenAI's ``error`` object) and the socket stays open.

``previous_response_id`` works across the socket as on OpenAI: a stored response is rehydrated from
the store; a ``store: false`` response created on this socket is kept for the socket's lifetime
only (``SocketCache``) so the next turn can continue it. A failed turn evicts the response it tried
to continue, as OpenAI's connection-local cache does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .._types import Message, Receive, Scope, Send
from ..errors import OpenAIError, invalid_request
from ..wire.json_object import json_object
from ..wire.sse import SSEParser
from ..wire.tee import BodyKind, body_kind_of
from .replay import replay_events
from .socket_cache import SocketCache

HTTPApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
# Headers of the upgrade request that mean nothing to the HTTP request each turn becomes.
_DROPPED = frozenset({b"connection", b"upgrade", b"content-length", b"content-type", b"transfer-encoding"})


_TURN_FAILED = OpenAIError(
    500, "The server had an error while processing your request.", type="server_error", code="internal_error"
)


def error_event(error: OpenAIError, stream_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "error",
        "status": error.status,
        "error": {"type": error.type, "code": error.code, "message": error.message, "param": error.param},
    }
    if stream_id is not None:
        event["stream_id"] = stream_id
    return event


class _Turn:
    """The HTTP side of one ``response.create``: what the middleware sends becomes frames."""

    def __init__(self, socket: ResponsesSocket, stream_id: str | None, previous_id: str | None, local: bool) -> None:
        self.socket = socket
        self.stream_id = stream_id
        self.previous_id = previous_id
        self.local = local  # continued from the socket's cache: the upstream was told another parent
        self.status = 0
        self.kind = BodyKind.OTHER
        self.parser = SSEParser()
        self.body = bytearray()
        self.final: dict[str, Any] | None = None
        self.failed = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.kind = body_kind_of(message)
            return
        if message["type"] != "http.response.body":
            return
        chunk: bytes = message.get("body", b"")
        if self.kind is BodyKind.SSE and 200 <= self.status < 300:
            for event in self.parser.feed(chunk):
                await self._event(event.data)
            return
        self.body += chunk
        if not message.get("more_body", False):
            await self._whole_body(bytes(self.body))

    async def _event(self, data: bytes) -> None:
        event = json_object(data)
        if event is None:
            return
        kind = event.get("type")
        response = event.get("response")
        if isinstance(response, dict):
            if self.local:
                response["previous_response_id"] = self.previous_id
            if kind in _TERMINAL:
                self.final = response
                self.failed = kind == "response.failed"
        if kind == "error":
            self.failed = True
        if self.stream_id is not None:
            event["stream_id"] = self.stream_id
        if self.stream_id is None and not (self.local and isinstance(response, dict)):
            await self.socket.send_text(data)  # the upstream's bytes, as the SSE stream had them
        else:
            await self.socket.send_text(orjson.dumps(event))

    async def _whole_body(self, body: bytes) -> None:
        answer = json_object(body)
        if 200 <= self.status < 300 and answer is not None and answer.get("object") == "response":
            # An upstream that answered JSON to a streamed request: the same events a replay sends.
            for event in replay_events(answer):
                await self._event(orjson.dumps(event))
            return
        self.failed = True
        error = answer.get("error") if isinstance(answer, dict) else None
        if not isinstance(error, dict):
            error = {"type": "server_error", "code": None, "message": "The upstream answered without a response."}
        frame: dict[str, Any] = {"type": "error", "status": self.status or 500, "error": error}
        if self.stream_id is not None:
            frame["stream_id"] = self.stream_id
        await self.socket.send_text(orjson.dumps(frame))


class ResponsesSocket:
    """One WebSocket connection in Responses WebSocket mode."""

    def __init__(self, http: HTTPApp, scope: Scope, receive: Receive, send: Send, max_message: int) -> None:
        self.http = http
        self.scope = scope
        self._receive = receive
        self._send = send
        self.max_message = max_message
        self.cache = SocketCache()
        self.incoming: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def run(self) -> None:
        if (await self._receive())["type"] != "websocket.connect":
            return
        await self._send({"type": "websocket.accept"})
        reader = asyncio.get_running_loop().create_task(self._read())
        try:
            while True:
                text = await self.incoming.get()
                if text is None:
                    return
                await self._turn(text)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self.cache.clear()  # the socket's store: false responses end with it

    async def _read(self) -> None:
        # Read all the time, not only between turns, so a client that goes away mid-turn is noticed
        # (its turn's upstream request is then cut off) and events sent meanwhile wait their turn.
        try:
            while True:
                message = await self._receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message["type"] == "websocket.receive":
                    data = message.get("text")
                    await self.incoming.put(data if data is not None else message.get("bytes") or b"")
        finally:
            self.closed.set()
            await self.incoming.put(None)

    async def send_text(self, data: bytes | str) -> None:
        if self.closed.is_set():
            return
        text = data if isinstance(data, str) else data.decode("utf-8")
        try:
            await self._send({"type": "websocket.send", "text": text})
        except Exception:  # the client went away between two events; the reader will notice
            self.closed.set()

    async def _turn(self, text: str | bytes) -> None:
        stream_id: str | None = None
        try:
            if len(text) > self.max_message:
                raise OpenAIError(413, "The message is larger than this server accepts.", code="request_too_large")
            event = json_object(text.encode("utf-8") if isinstance(text, str) else text)
            if event is None:
                raise invalid_request("The message is not a JSON object.", code="invalid_json")
            raw_stream_id = event.get("stream_id")
            stream_id = raw_stream_id if isinstance(raw_stream_id, str) else None
            if event.get("type") != "response.create":
                raise invalid_request(
                    "Unsupported event type: only 'response.create' is served here.", param="type", code="invalid_value"
                )
            body = {key: value for key, value in event.items() if key not in ("type", "stream_id")}
            body["stream"] = True
            previous = body.get("previous_response_id")
            previous_id = previous if isinstance(previous, str) else None
            local = previous_id is not None and previous_id in self.cache
            if local:
                body = self.cache.continued(body)
        except OpenAIError as error:
            await self.send_text(orjson.dumps(error_event(error, stream_id)))
            return
        turn = _Turn(self, stream_id, previous_id, local)
        request = orjson.dumps(body)
        try:
            await self.http(self._http_scope(len(request)), self._http_receive(request), turn.send)
        except Exception:
            # The turn's HTTP side has answered 500 (when it still could) and logged it; the socket
            # outlives one failed turn.
            if not turn.failed:
                await self.send_text(orjson.dumps(error_event(_TURN_FAILED, stream_id)))
            turn.failed = True
        if turn.failed or turn.final is None:
            if previous_id is not None:
                self.cache.evict(previous_id)
            return
        if body.get("store") is False:
            self.cache.keep(turn.final, body)

    def _http_scope(self, length: int) -> Scope:
        scope = self.scope
        headers = [(name, value) for name, value in scope.get("headers", ()) if name.lower() not in _DROPPED]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(length).encode("latin-1"))]
        return {
            "type": "http",
            "asgi": scope.get("asgi", {"version": "3.0"}),
            "http_version": scope.get("http_version", "1.1"),
            "method": "POST",
            "scheme": "https" if scope.get("scheme") == "wss" else "http",
            "path": scope["path"],
            "raw_path": scope.get("raw_path"),
            "query_string": b"",
            "root_path": scope.get("root_path", ""),
            "headers": headers,
            "client": scope.get("client"),
            "server": scope.get("server"),
            "state": dict(scope.get("state") or {}),
        }

    def _http_receive(self, body: bytes) -> Receive:
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await self.closed.wait()  # the request stays connected as long as the socket does
            return {"type": "http.disconnect"}

        return receive
