"""The tee on ``POST /v1/responses``: forward every chunk at once, keep only the final response.

Deltas are never accumulated for storage: the terminal event (``response.completed``,
``response.incomplete`` or ``response.failed``) carries the whole response object, and a JSON answer
is one object. That object is stored before the bytes that finish it reach the client, so a GET
issued right after completion finds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .._types import Message, Send
from ..exchange import Exchange
from ..logs.early_answer import EarlyAnswer
from ..logs.log_guard import GuardedContent
from ..wire.json_object import json_object
from ..wire.metering import RESPONSE_TERMINAL_EVENTS, normalise_usage, response_event_text
from ..wire.sse import MAX_EVENT_BYTES, SSEParser
from ..wire.tee import BodyKind, body_kind_of, without_content_length
from .insert import KeyInserter
from .patch import StreamingPatcher

OnResponseId = Callable[[str], None]
OnFinal = Callable[[dict[str, Any]], Awaitable[None]]


class ResponseCapture:
    """A send wrapper for one ``POST /v1/responses``.

    ``store`` and ``previous_response_id`` are what the client asked: values the upstream wrote are
    rewritten (``patch``), keys it did not write are inserted (``insert``), both as the bytes pass.
    """

    __slots__ = (
        "exchange",
        "downstream",
        "guard",
        "patcher",
        "on_response_id",
        "on_final",
        "store",
        "previous_response_id",
        "inserter",
        "kind",
        "parser",
        "json_body",
        "early",
        "seen_id",
    )

    def __init__(
        self,
        exchange: Exchange,
        downstream: Send,
        guard: GuardedContent | None,
        patcher: StreamingPatcher | None,
        on_response_id: OnResponseId,
        on_final: OnFinal,
        *,
        store: bool = True,
        previous_response_id: str | None = None,
    ) -> None:
        self.exchange = exchange
        self.downstream = downstream
        self.guard = guard
        self.patcher = patcher
        self.on_response_id = on_response_id
        self.on_final = on_final
        self.store = store
        self.previous_response_id = previous_response_id
        self.inserter: KeyInserter | None = None
        self.kind = BodyKind.OTHER
        self.parser = SSEParser()
        self.json_body: bytearray | None = bytearray()
        self.early = EarlyAnswer()
        self.seen_id = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            # Only a successful answer carries a response object; errors pass through untouched.
            self.kind = body_kind_of(message) if 200 <= message["status"] < 300 else BodyKind.OTHER
            if self.kind is BodyKind.SSE:
                self.exchange.record.stream = True
            if self.kind is not BodyKind.OTHER:
                self.inserter = KeyInserter(
                    sse=self.kind is BodyKind.SSE, store=self.store, previous_response_id=self.previous_response_id
                )
                message = without_content_length(message)  # restoring a value may change the length
            await self.downstream(message)
            return
        if kind != "http.response.body" or self.kind is BodyKind.OTHER:
            await self.downstream(message)
            return
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        final: dict[str, Any] | None = None
        if self.kind is BodyKind.SSE:
            for event in self.parser.feed(body):
                final = self._inspect_event(event.data) or final
        else:
            final = self._collect_json(body, more)
        if final is not None:
            await self.on_final(final)
        if self.inserter is not None:
            body = self.inserter.feed(body)
        if self.patcher is not None:
            # Possibly empty when the whole chunk is the start of a pattern; it is sent all the same,
            # so there is one message out for every message in.
            body = self.patcher.feed(body, final=not more)
        await self.downstream({"type": "http.response.body", "body": body, "more_body": more})

    def _inspect_event(self, data: bytes) -> dict[str, Any] | None:
        """Meter one SSE event; the response object when it is the terminal event."""
        event = json_object(data)
        if event is None:
            return None
        if self.guard is not None:
            text = response_event_text(event)
            if text is not None:
                self.guard.add_generated(*text)
        response = event.get("response")
        if not isinstance(response, dict):
            return None
        self._learn_id(response)
        if event.get("type") in RESPONSE_TERMINAL_EVENTS:
            self.exchange.record.usage = normalise_usage(response.get("usage"))
            return response
        return None

    def _collect_json(self, body: bytes, more: bool) -> dict[str, Any] | None:
        collected = self.json_body
        if collected is None:
            return None
        collected += body
        if len(collected) > MAX_EVENT_BYTES:
            self.json_body = None
            return None
        if more:
            # Registered as soon as the bytes are whole: the final message may be an empty one.
            early = self.early.attempt(collected) if self.guard is not None else None
            if early is not None and self.guard is not None and early.get("object") == "response":
                self.guard.add_source(early)
            return None
        response = self.early.parsed(collected)
        registered = response is not None
        if response is None:
            response = json_object(collected)
        if response is None or response.get("object") != "response":
            return None
        self._learn_id(response)
        self.exchange.record.usage = normalise_usage(response.get("usage"))
        if self.guard is not None and not registered:
            self.guard.add_source(response)
        return response

    def _learn_id(self, response: dict[str, Any]) -> None:
        response_id = response.get("id")
        if not self.seen_id and isinstance(response_id, str):
            self.seen_id = True
            self.on_response_id(response_id)
