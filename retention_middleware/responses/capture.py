"""The tee on ``POST /v1/responses``: forward every chunk at once, keep only the final response.

Deltas are never accumulated for storage: the terminal event (``response.completed``,
``response.incomplete`` or ``response.failed``) carries the whole response object, and a JSON answer
is one object. That object is stored before the bytes that finish it reach the client, so a GET
issued right after completion finds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .._types import Message, Send
from ..errors import send_error
from ..exchange import Exchange
from ..logs.early_answer import EarlyAnswer
from ..logs.log_guard import GuardedContent
from ..wire.json_object import json_object
from ..wire.metering import RESPONSE_TERMINAL_EVENTS, normalise_usage, response_event_text
from ..wire.sse import MAX_EVENT_BYTES, SSEParser
from ..wire.tee import BodyKind, body_kind_of, without_content_length
from .insert import INSERTED_KEYS, KeyInserter
from .patch import StreamingPatcher
from .rehydrate import store_unavailable

OnResponseId = Callable[[str], None]
OnResponse = Callable[[dict[str, Any]], Awaitable[bool]]
"""Called with the first (``response.created``) or the final response object before the bytes that
carry it are sent; False means the store refused it in ``reject`` mode, and the client must not be
told it is stored."""

STORE_REFUSED = "The response could not be stored (RETENTION_STORE_FAILURE=reject); please retry shortly."


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
        "on_started",
        "on_final",
        "store",
        "previous_response_id",
        "conversation",
        "inserter",
        "hold_json",
        "held_start",
        "overflow",
        "kind",
        "parser",
        "json_body",
        "early",
        "seen_id",
        "sequence_number",
        "ended",
    )

    def __init__(
        self,
        exchange: Exchange,
        downstream: Send,
        guard: GuardedContent | None,
        patcher: StreamingPatcher | None,
        on_response_id: OnResponseId,
        on_started: OnResponse,
        on_final: OnResponse,
        *,
        store: bool = True,
        previous_response_id: str | None = None,
        conversation: str | None = None,
        hold_json: bool = False,
    ) -> None:
        self.exchange = exchange
        self.downstream = downstream
        self.guard = guard
        self.patcher = patcher
        self.on_response_id = on_response_id
        self.on_started = on_started
        self.on_final = on_final
        self.store = store
        self.previous_response_id = previous_response_id
        self.conversation = conversation  # the conversation the response is in, shown as ``{"id": ...}``
        self.inserter: KeyInserter | None = None
        # reject mode: a JSON answer is held whole, so a store failure can still be a 503.
        self.hold_json = hold_json
        self.held_start: Message | None = None
        self.overflow = b""  # a held answer that turned out too large to inspect
        self.kind = BodyKind.OTHER
        self.parser = SSEParser()
        self.json_body: bytearray | None = bytearray()
        self.early = EarlyAnswer()
        self.seen_id = False
        self.sequence_number = -1  # of the last event seen, so an error event we add comes next
        self.ended = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            # Only a successful answer carries a response object; errors pass through untouched.
            self.kind = body_kind_of(message) if 200 <= message["status"] < 300 else BodyKind.OTHER
            if self.kind is BodyKind.SSE:
                self.exchange.record.stream = True
            if self.kind is not BodyKind.OTHER:
                self.inserter = KeyInserter(
                    sse=self.kind is BodyKind.SSE,
                    store=self.store,
                    previous_response_id=self.previous_response_id,
                    conversation=self.conversation,
                )
                message = without_content_length(message)  # restoring a value may change the length
            if self.hold_json and self.kind is BodyKind.JSON:
                self.held_start = message
                return
            await self.downstream(message)
            return
        if kind != "http.response.body" or self.kind is BodyKind.OTHER:
            await self.downstream(message)
            return
        if self.ended:
            return  # we ended this answer early (the store refused it); the rest goes nowhere
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        final: dict[str, Any] | None = None
        if self.kind is BodyKind.SSE:
            started: dict[str, Any] | None = None
            # Where in ``body`` the terminal event begins; negative when it began in an earlier
            # message (the client already holds part of it).
            position = -self.parser.pending_bytes
            started_start = terminal_start = 0
            for event in self.parser.feed(body):
                started_here, final_here = self._inspect_event(event.data, started, final)
                if started_here is not started:
                    started, started_start = started_here, position
                if final_here is not final:
                    final, terminal_start = final_here, position
                position += event.raw_length
            # (A response that also finishes in this message is simply written once, at its end.)
            if started is not None and final is None and not await self.on_started(started):
                kept = body[: max(0, started_start)]
                await self.end_with_error("store_unavailable", STORE_REFUSED, keep=kept, open_event=started_start < 0)
                return
            if final is not None and not await self.on_final(final):
                # In place of the terminal event: the events before it in this message still go.
                kept = body[: max(0, terminal_start)]
                await self.end_with_error("store_unavailable", STORE_REFUSED, keep=kept, open_event=terminal_start < 0)
                return
        present: set[bytes] | None = None
        if self.kind is not BodyKind.SSE:
            final = self._collect_json(body, more)
            present = _present_keys(final)  # before on_final, which restores them in the stored copy
            if self.held_start is not None:
                await self._send_held_json(final, more, present)
                return
        if self.kind is BodyKind.JSON and final is not None and not await self.on_final(final):
            self.ended = True  # not held, so the status line is gone; what is left goes nowhere
            return
        self.ended = not more
        if self.inserter is not None:
            body = self._insert(body, more, present)
        if self.patcher is not None:
            # Possibly empty when the whole chunk is the start of a pattern; it is sent all the same,
            # so there is one message out for every message in.
            body = self.patcher.feed(body, final=not more)
        if body is not message.get("body", b""):
            message = {"type": "http.response.body", "body": body, "more_body": more}
        await self.downstream(message)

    def _insert(self, body: bytes, more: bool, present: set[bytes] | None) -> bytes:
        assert self.inserter is not None
        if present is not None and not more:
            return self.inserter.feed_whole(body, present)  # falls back to feed unless whole
        return self.inserter.feed(body)

    async def _send_held_json(self, final: dict[str, Any] | None, more: bool, present: set[bytes] | None) -> None:
        """``hold_json``: the answer goes on only once it is stored, else it becomes a 503."""
        if final is not None and not await self.on_final(final):
            self.ended = True
            self.held_start = None
            await send_error(self.downstream, store_unavailable())
            return
        if more and self.json_body is not None:
            return  # still held; the bytes are in json_body
        start, self.held_start = self.held_start, None
        if start is not None:
            await self.downstream(start)
        held = bytes(self.json_body) if self.json_body is not None else self.overflow
        self.overflow = b""
        if self.inserter is not None:
            held = self._insert(held, more, present if final is not None else None)
        if self.patcher is not None:
            held = self.patcher.feed(held, final=not more)
        self.ended = not more
        await self.downstream({"type": "http.response.body", "body": held, "more_body": more})

    async def end_with_error(
        self,
        code: str,
        message: str = "The upstream server failed before the response was complete.",
        *,
        keep: bytes = b"",
        open_event: bool | None = None,
    ) -> bool:
        """End a stream early with OpenAI's terminal ``error`` event, after the ``keep`` bytes of
        this message; False when this answer is not a stream still open (only a dropped connection
        can end that). Chunks are never held back (G7), so the client may hold part of an event: a
        blank line ends it first (an SDK rejects that remnant, and stops waiting all the same)."""
        if self.kind is not BodyKind.SSE or self.ended:
            return False
        event = {
            "type": "error",
            "code": code,
            "message": message,
            "param": None,
            "sequence_number": self.sequence_number + 1,
        }
        if self.inserter is not None and keep:
            keep = self.inserter.feed(keep)
        if self.patcher is not None and keep:
            keep = self.patcher.feed(keep, final=True)
        if open_event is None:
            open_event = self.parser.mid_event
        body = keep + (b"\n\n" if open_event else b"") + b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"
        self.ended = True
        await self.downstream({"type": "http.response.body", "body": body, "more_body": False})
        return True

    def _inspect_event(
        self, data: bytes, started: dict[str, Any] | None, final: dict[str, Any] | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Meter one SSE event; (the response when it is the first seen, the terminal response)."""
        event = json_object(data)
        if event is None:
            return started, final
        sequence_number = event.get("sequence_number")
        if isinstance(sequence_number, int):
            self.sequence_number = sequence_number
        if self.guard is not None:
            text = response_event_text(event)
            if text is not None:
                self.guard.add_generated(*text)
        response = event.get("response")
        if not isinstance(response, dict):
            return started, final
        if event.get("type") in RESPONSE_TERMINAL_EVENTS:
            self._learn_id(response)
            self.exchange.record.usage = normalise_usage(response.get("usage"))
            return started, response
        if self._learn_id(response):
            return response, final
        return started, final

    def _collect_json(self, body: bytes, more: bool) -> dict[str, Any] | None:
        collected = self.json_body
        if collected is None:
            return None
        collected += body
        if len(collected) > MAX_EVENT_BYTES:
            # Too large to inspect, so never stored; a held answer goes on as it is from here.
            if self.held_start is not None:
                self.overflow = bytes(collected)
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

    def _learn_id(self, response: dict[str, Any]) -> bool:
        """True when this response object is the first to name the id."""
        response_id = response.get("id")
        if not self.seen_id and isinstance(response_id, str):
            self.seen_id = True
            self.on_response_id(response_id)
            return True
        return False


def _present_keys(response: dict[str, Any] | None) -> set[bytes] | None:
    """Which of the keys ``insert`` adds the parsed answer has; None when it was not parsed whole."""
    if response is None:
        return None
    return {key for key in INSERTED_KEYS if key.decode() in response}
