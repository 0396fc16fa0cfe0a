"""Chat completions, completions and embeddings: forwarded as they are, metered on the way back.

The request body is read (bounded) to learn the model, whether it streams, and the content the log
guard must hide; it reaches the app byte for byte unless usage has to be requested. For a streamed
chat completion or completion whose client did not ask for usage, ``stream_options.include_usage``
is added upstream, and the usage-only chunk it produces is removed before the client sees it, so
every stream is metered and the client still gets exactly what it asked for.
"""

from __future__ import annotations

from typing import Any

import orjson

from ._types import ASGIApp, Message
from .errors import OpenAIError, send_error
from .exchange import Exchange
from .log_guard import GuardedContent
from .metering import completion_chunk_texts, is_usage_only_chunk, normalise_usage, usage_of_body
from .request_body import ClientGone, parse_json_object, read_body, replay, with_body_length
from .routes import Route
from .sse import DONE, MAX_EVENT_BYTES, SSEEvent, SSEParser
from .tee import BodyKind, body_kind_of


def _client_wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


class MeteredHandler:
    """Owns chat completions, completions and embeddings requests."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, exchange: Exchange) -> None:
        scope = exchange.scope
        try:
            body = await read_body(exchange.receive, scope["headers"], self.max_body)
        except ClientGone:
            return
        except OpenAIError as error:
            exchange.record.error = error.code
            await send_error(exchange.send, error)
            return
        request = parse_json_object(body)
        guard = exchange.guard()
        strip_usage = False
        if request is None:
            # Not a JSON object: forwarded unchanged and the upstream decides; its text is still
            # guarded, since a server may log what it failed to parse.
            if guard is not None and body:
                guard.add_source(body.decode("utf-8", "replace"))
        else:
            if guard is not None:
                guard.add_source(request)
            model = request.get("model")
            exchange.record.model = model if isinstance(model, str) else None
            streaming = request.get("stream") is True
            exchange.record.stream = streaming
            if streaming and exchange.route is not Route.EMBEDDINGS and not _client_wants_usage(request):
                options = request.get("stream_options")
                request["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
                body = orjson.dumps(request)
                scope = with_body_length(scope, len(body))
                strip_usage = True
        tee = UsageTee(exchange, guard, strip_usage)
        await self.app(scope, replay(body, exchange.receive), tee.send)


class UsageTee:
    """A send wrapper that forwards each body message at once and meters it on the way."""

    __slots__ = ("exchange", "guard", "strip_usage", "kind", "parser", "held", "json_body")

    def __init__(self, exchange: Exchange, guard: GuardedContent | None, strip_usage: bool) -> None:
        self.exchange = exchange
        self.guard = guard
        self.strip_usage = strip_usage
        self.kind = BodyKind.OTHER
        self.parser = SSEParser()
        self.held = bytearray()  # strip mode only: bytes of an event not yet complete
        self.json_body: bytearray | None = bytearray()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.kind = body_kind_of(message)
            if self.kind is BodyKind.SSE:
                self.exchange.record.stream = True
            await self.exchange.send(message)
            return
        if message["type"] != "http.response.body":
            await self.exchange.send(message)
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self.kind is BodyKind.SSE:
            if self.strip_usage:
                await self._send_without_usage_chunk(body, more)
                return
            await self.exchange.send(message)
            for event in self.parser.feed(body):
                self._inspect(event)
        elif self.kind is BodyKind.JSON:
            await self.exchange.send(message)
            self._collect_json(body, more)
        else:
            await self.exchange.send(message)

    async def _send_without_usage_chunk(self, body: bytes, more: bool) -> None:
        # The usage-only chunk can arrive split across messages, so bytes of an unfinished event are
        # held until it completes; an SSE client can do nothing with half an event anyway. Servers
        # send one event per message, so in practice nothing is held and nothing is coalesced.
        held = self.held
        held += body
        out = bytearray()
        position = 0
        for event in self.parser.feed(body):
            end = position + event.raw_length
            if not self._inspect(event):
                out += held[position:end]
            position = end
        del held[:position]
        if not more or len(held) > MAX_EVENT_BYTES:
            out += held
            held.clear()
        # One message out for every message in, even an empty one, so the stream keeps its rhythm.
        await self.exchange.send({"type": "http.response.body", "body": bytes(out), "more_body": more})

    def _inspect(self, event: SSEEvent) -> bool:
        """Meter one event; True when it is the usage-only chunk this middleware asked for."""
        data = event.data
        if data == DONE:
            return False
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(chunk, dict):
            return False
        usage = normalise_usage(chunk.get("usage"))
        if usage is not None:
            self.exchange.record.usage = usage
        if self.guard is not None:
            for key, text in completion_chunk_texts(chunk):
                self.guard.add_generated(key, text)
        return self.strip_usage and is_usage_only_chunk(chunk)

    def _collect_json(self, body: bytes, more: bool) -> None:
        collected = self.json_body
        if collected is None:
            return
        collected += body
        if len(collected) > MAX_EVENT_BYTES:
            self.json_body = None  # too large to meter; forwarded all the same
            return
        if more:
            return
        try:
            answer = orjson.loads(collected)
        except orjson.JSONDecodeError:
            return
        self.exchange.record.usage = usage_of_body(answer)
        if self.guard is not None:
            self.guard.add_source(answer)
