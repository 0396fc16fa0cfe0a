"""One Responses request on its way upstream: as it is (native), or as a chat completion (translated).

``request`` gives the scope and body to call the app with, ``send`` wraps the send the answer goes to.
The chat call rewrites both ways: the path and body going up, and the answer coming back, so that
what reaches the create handler's capture is what a native upstream would have sent.
"""

from __future__ import annotations

from typing import Any

import orjson

from .._types import Message, Scope, Send
from ..wire.json_object import json_object
from ..wire.sse import MAX_EVENT_BYTES
from ..wire.tee import BodyKind, body_kind_of, without_content_length
from .completion_stream import stream_from_completion
from .response_translation import translate_json
from .stream_translation import StreamTranslator


class NativeCall:
    """The upstream serves ``/v1/responses`` itself: nothing to change."""

    def request(self, scope: Scope, body: bytes) -> tuple[Scope, bytes]:
        return scope, body

    def send(self, downstream: Send) -> Send:
        return downstream


NATIVE = NativeCall()


def _chat_path(path: str) -> str:
    # Keep the client's prefix: a bare /responses (llama.cpp style) goes to a bare /chat/completions.
    return path[: -len("responses")] + "chat/completions" if path.rstrip("/").endswith("responses") else path


class ChatCall:
    """The upstream speaks Chat Completions only: ``chat`` is the translated request."""

    __slots__ = ("response_request", "chat")

    def __init__(self, response_request: dict[str, Any], chat: dict[str, Any]) -> None:
        self.response_request = response_request
        self.chat = chat

    def request(self, scope: Scope, body: bytes) -> tuple[Scope, bytes]:
        path = _chat_path(scope["path"].rstrip("/"))
        # The answer is translated, so it must come uncompressed: no accept-encoding goes upstream.
        headers = [(name, value) for name, value in scope["headers"] if name.lower() != b"accept-encoding"]
        rewritten = {**scope, "path": path, "raw_path": path.encode("latin-1"), "query_string": b"", "headers": headers}
        return rewritten, orjson.dumps(self.chat)

    def send(self, downstream: Send) -> Send:
        return _TranslatingSend(self.response_request, downstream).send


class _TranslatingSend:
    """Turns the chat answer into the Responses answer; errors (non-2xx) pass through untouched."""

    __slots__ = ("request", "downstream", "kind", "translator", "start", "collected")

    def __init__(self, request: dict[str, Any], downstream: Send) -> None:
        self.request = request
        self.downstream = downstream
        self.kind = BodyKind.OTHER
        self.translator: StreamTranslator | None = None
        self.start: Message | None = None
        self.collected: bytearray | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.kind = body_kind_of(message) if 200 <= message["status"] < 300 else BodyKind.OTHER
            if self.kind is BodyKind.SSE:
                self.translator = StreamTranslator(self.request)
                await self.downstream(without_content_length(message))
            elif self.kind is BodyKind.JSON:
                # Held until the body is complete: the translated body has a length of its own.
                self.start = message
                self.collected = bytearray()
            else:
                await self.downstream(message)
            return
        if kind != "http.response.body" or self.kind is BodyKind.OTHER:
            await self.downstream(message)
            return
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self.translator is not None:
            translated = self.translator.feed(body, final=not more)
            await self.downstream({"type": "http.response.body", "body": translated, "more_body": more})
            return
        await self._json(body, more)

    async def _json(self, body: bytes, more: bool) -> None:
        collected = self.collected
        assert collected is not None and self.start is not None  # set together on a JSON start
        collected += body
        if more and len(collected) <= MAX_EVENT_BYTES:
            return
        start = without_content_length(self.start)
        if not more and self.request.get("stream") is True and (streamed := self._as_stream(collected)) is not None:
            start["headers"] = [(n, v) for n, v in start["headers"] if n.lower() != b"content-type"]
            start["headers"].append((b"content-type", b"text/event-stream; charset=utf-8"))
            await self.downstream(start)
            await self.downstream({"type": "http.response.body", "body": streamed, "more_body": False})
            return
        translated = translate_json(self.request, bytes(collected)) if not more else None
        out = translated if translated is not None else bytes(collected)
        if not more:
            start["headers"] = [*start["headers"], (b"content-length", str(len(out)).encode("latin-1"))]
        else:  # too large to be a completion we translate: the rest passes through as it comes
            self.kind = BodyKind.OTHER
        await self.downstream(start)
        await self.downstream({"type": "http.response.body", "body": out, "more_body": more})

    def _as_stream(self, body: bytearray) -> bytes | None:
        completion = json_object(body)
        if completion is None or not isinstance(completion.get("choices"), list):
            return None
        return stream_from_completion(self.request, completion)
