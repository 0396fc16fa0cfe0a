"""Telling clients which models log: ``GET /v1/models`` marks every model in ``RETENTION_LOGGED_MODELS``.

Each such entry gains ``"data_logging": true`` and a sentence in its ``description`` saying that
prompts and generations sent to it are logged, and for how long. Entries of other models keep every
byte the server wrote, and an answer that lists no logged model, is not JSON, or is an error passes
through untouched. (The answers to requests for such a model carry a header as well; see
``content_log``.)
"""

from __future__ import annotations

from typing import Any

import orjson

from .._types import ASGIApp, Message
from ..exchange import Exchange
from ..settings import RetentionSettings, format_duration
from ..wire.json_object import json_object
from ..wire.json_spans import top_level_array_elements
from ..wire.sse import MAX_EVENT_BYTES
from ..wire.tee import BodyKind, body_kind_of

_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds", "ms": "milliseconds"}


def _spelled_out(duration: str) -> str:
    number = duration.rstrip("wdhms")
    unit = _UNITS[duration[len(number) :]]
    return f"{number} {unit[:-1] if number == '1' else unit}"


class ModelsDisclosureHandler:
    """Owns ``GET /v1/models`` and ``GET /v1/models/{id}`` when any model is disclosed as logging."""

    def __init__(self, app: ASGIApp, settings: RetentionSettings) -> None:
        self.app = app
        self.logged = settings.logged_models
        kept_for = _spelled_out(format_duration(settings.content_ttl))
        self.notice = f"Prompts and generations sent to this model are logged by the operator and kept for {kept_for}."

    async def __call__(self, exchange: Exchange) -> None:
        if not self.logged:
            await self.app(exchange.scope, exchange.receive, exchange.send)
            return
        held: list[Message] = []  # a successful JSON answer, held whole so content-length can be corrected
        body = bytearray()

        async def send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start" and 200 <= message["status"] < 300:
                if body_kind_of(message) is BodyKind.JSON:
                    held.append(message)
                    return
            elif kind == "http.response.body" and held:
                held.append(message)
                body.extend(message.get("body", b""))
                more = message.get("more_body", False)
                if more and len(body) <= MAX_EVENT_BYTES:
                    return
                if more:  # far too large to be a model list: passed on as it is, and the rest as it comes
                    await self._release(exchange, held)
                else:
                    await self._send_disclosed(exchange, held, bytes(body))
                held.clear()
                return
            await exchange.send(message)

        await self.app(exchange.scope, exchange.receive, send)

    async def _release(self, exchange: Exchange, held: list[Message]) -> None:
        for message in held:
            await exchange.send(message)

    async def _send_disclosed(self, exchange: Exchange, held: list[Message], body: bytes) -> None:
        rewritten = self.disclose(body)
        if rewritten is None:
            await self._release(exchange, held)
            return
        start = held[0]
        headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(rewritten)).encode("latin-1")))
        await exchange.send({**start, "headers": headers})
        await exchange.send({"type": "http.response.body", "body": rewritten, "more_body": False})

    def disclose(self, body: bytes) -> bytes | None:
        """The body with every logged model marked, or None when nothing needs marking."""
        document = json_object(body)
        if document is None:
            return None
        if document.get("object") == "model":  # GET /v1/models/{id}
            return orjson.dumps(self._marked(document)) if document.get("id") in self.logged else None
        spans = top_level_array_elements(body, "data")
        if not spans:
            return None
        pieces: list[bytes] = []
        position = 0
        for start, end in spans:
            entry = orjson.loads(body[start:end])
            if isinstance(entry, dict) and entry.get("id") in self.logged:
                pieces += [body[position:start], orjson.dumps(self._marked(entry))]
                position = end
        if position == 0:
            return None
        pieces.append(body[position:])
        return b"".join(pieces)

    def _marked(self, entry: dict[str, Any]) -> dict[str, Any]:
        description = entry.get("description")
        text = f"{description} {self.notice}" if isinstance(description, str) and description else self.notice
        return {**entry, "data_logging": True, "description": text}
