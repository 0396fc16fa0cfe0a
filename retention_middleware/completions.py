"""Chat completions, completions and embeddings: forwarded as they are, metered on the way back.

The request body is read (bounded) to learn the model, whether it streams, and the content the log
guard must hide; it reaches the app byte for byte unless usage has to be requested. For a streamed
chat completion or completion whose client did not ask for usage, ``stream_options.include_usage``
is added upstream, and the usage-only chunk it produces is removed before the client sees it, so
every stream is metered and the client still gets exactly what it asked for.
"""

from __future__ import annotations

import enum
import re
from typing import Any

import orjson

from ._types import ASGIApp, Message, Send
from .errors import OpenAIError, send_error
from .exchange import Exchange
from .inflight import InFlightRegistry
from .logs.early_answer import EarlyAnswer
from .logs.log_guard import GuardedContent
from .policy.content_log import ContentLog
from .routes import Route
from .wire.assemble import StreamAssembler
from .wire.json_object import json_object, request_object
from .wire.metering import completion_chunk_texts, is_usage_only_chunk, normalise_usage, usage_of_body
from .wire.request_body import ClientGone, read_body, replay, with_body_length
from .wire.sse import DONE, MAX_EVENT_BYTES, SSEEvent, SSEParser
from .wire.tee import BodyKind, body_kind_of, without_content_length


class _Edit(enum.Enum):
    KEEP = 0  # falsy members would read as "changed": compare with ``is``
    DROP = 1
    CUT_NULL_USAGE = 2

    def __bool__(self) -> bool:
        return self is not _Edit.KEEP


# The member as servers write it, with the comma that joins it to its neighbour. "usage" can only
# be a key here (inside a JSON string its quotes would be escaped) and chunks nest no other usage.
_NULL_USAGE_AFTER = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])')
_NULL_USAGE_BEFORE = re.compile(rb'"usage"\s*:\s*null\s*,\s*')


def without_null_usage(raw_event: bytes) -> bytes:
    """One raw SSE event with its top-level ``"usage": null`` member removed, every other byte kept."""
    cut, count = _NULL_USAGE_AFTER.subn(b"", raw_event, count=1)
    if count:
        return cut
    return _NULL_USAGE_BEFORE.sub(b"", raw_event, count=1)


def _client_wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


class CompletionsHandler:
    """Owns chat completions, completions and embeddings requests."""

    def __init__(
        self,
        app: ASGIApp,
        max_body: int,
        content_log: ContentLog,
        inflight: InFlightRegistry,
        max_json_depth: int = 128,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_json_depth = max_json_depth
        self.content_log = content_log
        self.inflight = inflight

    async def __call__(self, exchange: Exchange) -> None:
        scope = exchange.scope
        try:
            body = await read_body(exchange.receive, scope["headers"], self.max_body)
            request = request_object(body, self.max_json_depth)
        except ClientGone:
            return
        except OpenAIError as error:
            exchange.record.error = error.code
            await send_error(exchange.send, error)
            return
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
                options = options if isinstance(options, dict) else {}
                upstream_request = {**request, "stream_options": {**options, "include_usage": True}}
                body = orjson.dumps(upstream_request)
                scope = with_body_length(scope, len(body))
                strip_usage = True
        reason = self.content_log.reason(exchange.record.tenant, exchange.record.model, scope["headers"])
        if reason is None:
            tee = UsageTee(exchange, exchange.send, guard, strip_usage)
            await self.app(scope, replay(body, exchange.receive), tee.send)
            return
        # A documented exception: this request's content is kept (never logged); see content_log.
        entry = self.inflight.open(exchange.record.tenant)
        try:
            send = self.content_log.disclosing(exchange.send, reason)
            tee = UsageTee(exchange, send, guard, strip_usage, StreamAssembler())
            await self.app(scope, replay(body, exchange.receive), tee.send)
            kept_request = request if request is not None else body.decode("utf-8", "replace")
            await self.content_log.keep(
                exchange.record,
                entry,
                reason=reason,
                endpoint=exchange.record.path,
                request=kept_request,
                response=tee.result(),
            )
        finally:
            self.inflight.close(entry)


class UsageTee:
    """A send wrapper that forwards each body message at once and meters it on the way."""

    __slots__ = (
        "exchange",
        "downstream",
        "guard",
        "strip_usage",
        "assembler",
        "kind",
        "parser",
        "held",
        "json_body",
        "early",
        "answer",
    )

    def __init__(
        self,
        exchange: Exchange,
        downstream: Send,
        guard: GuardedContent | None,
        strip_usage: bool,
        assembler: StreamAssembler | None = None,
    ) -> None:
        self.exchange = exchange
        self.downstream = downstream
        self.guard = guard
        self.strip_usage = strip_usage
        self.assembler = assembler  # only for a request whose content is kept
        self.kind = BodyKind.OTHER
        self.parser: SSEParser | None = None  # made once the answer turns out to be a stream
        self.held = bytearray()  # strip mode only: bytes of an event not yet complete
        self.json_body: bytearray | None = bytearray()
        self.early = EarlyAnswer()
        self.answer: Any = None

    def result(self) -> Any:
        """The complete answer: the JSON body, or a stream assembled (content records only)."""
        if self.kind is BodyKind.SSE and self.assembler is not None:
            return self.assembler.result()
        return self.answer

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.kind = body_kind_of(message)
            if self.kind is BodyKind.SSE:
                self.parser = SSEParser()
                self.exchange.record.stream = True
                if self.strip_usage:
                    message = without_content_length(message)  # a chunk will be removed
            await self.downstream(message)
            return
        if message["type"] != "http.response.body":
            await self.downstream(message)
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self.kind is BodyKind.SSE:
            if self.strip_usage:
                await self._send_without_usage_chunk(message, body, more)
                return
            await self.downstream(message)
            assert self.parser is not None  # made with the SSE start
            for event in self.parser.feed(body):
                self._inspect(event)
        elif self.kind is BodyKind.JSON:
            self._collect_json(body, more)  # first: the guard must know the answer before it passes
            await self.downstream(message)
        else:
            await self.downstream(message)

    async def _send_without_usage_chunk(self, message: Message, body: bytes, more: bool) -> None:
        # The usage-only chunk can arrive split across messages, so bytes of an unfinished event are
        # held until it completes; an SSE client can do nothing with half an event anyway. Servers
        # send one event per message, so in practice nothing is held and nothing is coalesced.
        # OpenAI-style upstreams asked for usage also add "usage": null to every other chunk; that
        # member is cut out too, so the client gets the bytes it would have got without the request.
        assert self.parser is not None  # made with the SSE start
        events = self.parser.feed(body)
        held = self.held
        unchanged = not held
        covered = 0
        edits = []
        for event in events:  # a loop, not comprehensions: this runs once per streamed token
            edit = self._inspect(event)
            edits.append(edit)
            covered += event.raw_length
            if edit is not _Edit.KEEP:
                unchanged = False
        if unchanged and covered == len(body):
            await self.downstream(message)  # whole events, none changed: the very message that came in
            return
        held += body
        out = bytearray()
        position = 0
        for event, edit in zip(events, edits, strict=True):
            end = position + event.raw_length
            if edit is _Edit.KEEP:
                out += held[position:end]
            elif edit is _Edit.CUT_NULL_USAGE:
                out += without_null_usage(bytes(held[position:end]))
            position = end
        del held[:position]
        if not more or len(held) > MAX_EVENT_BYTES:
            out += held
            held.clear()
        # One message out for every message in, even an empty one, so the stream keeps its rhythm.
        await self.downstream({"type": "http.response.body", "body": bytes(out), "more_body": more})

    def _inspect(self, event: SSEEvent) -> _Edit:
        """Meter one event; what strip mode does with it (drop the usage-only chunk this middleware
        asked for, cut the ``"usage": null`` it made the upstream add)."""
        data = event.data
        if data == DONE:
            return _Edit.KEEP
        chunk = json_object(data)
        if chunk is None:
            return _Edit.KEEP
        if self.assembler is not None:
            self.assembler.add(chunk)
        usage = normalise_usage(chunk.get("usage"))
        if usage is not None:
            self.exchange.record.usage = usage
        if self.guard is not None:
            for key, text in completion_chunk_texts(chunk):
                self.guard.add_generated(key, text)
        if not self.strip_usage:
            return _Edit.KEEP
        if is_usage_only_chunk(chunk):
            return _Edit.DROP
        if "usage" in chunk and chunk["usage"] is None:
            return _Edit.CUT_NULL_USAGE
        return _Edit.KEEP

    def _collect_json(self, body: bytes, more: bool) -> None:
        collected = self.json_body
        if collected is None:
            return
        collected += body
        if len(collected) > MAX_EVENT_BYTES:
            self.json_body = None  # too large to meter; forwarded all the same
            return
        if more:
            early = self.early.attempt(collected) if self.guard is not None else None
            if early is not None and self.guard is not None:
                self.guard.add_source(early)
            return
        answer = self.early.parsed(collected)
        if answer is None:
            answer = json_object(collected)
            if answer is None:
                return
            if self.guard is not None:
                self.guard.add_source(answer)
        self.answer = answer
        self.exchange.record.usage = usage_of_body(answer)
