"""``POST /v1/responses/compact`` and ``/v1/responses/input_tokens``: rehydrated, forwarded stateless.

Both take a conversation as ``input`` and may continue one with ``previous_response_id``, which an
upstream that keeps nothing cannot resolve. The middleware rebuilds the chain from the store as for
a create (oldest first, each turn's input and output items, then the new input), forwards the
request without ``previous_response_id``, guards the content and meters the answer. Nothing is
stored: a compaction is handed to the client, whose next request carries it as input.
"""

from __future__ import annotations

from typing import Any

import orjson

from .._types import ASGIApp, Message, Send
from ..errors import OpenAIError, invalid_request, send_error
from ..exchange import Exchange
from ..logs.log_guard import GuardedContent
from ..settings import RetentionSettings
from ..store.base import ResponseStore, StoredResponse
from ..wire.json_object import json_object, request_object
from ..wire.metering import normalise_usage
from ..wire.request_body import ClientGone, replay, with_body_length
from ..wire.sse import MAX_EVENT_BYTES
from ..wire.tee import BodyKind, body_kind_of
from .ids import checked_id
from .items import input_as_items
from .rehydrate import rehydrate
from .request_reading import read_request


def history_items(turns: list[StoredResponse]) -> list[Any]:
    """The items of a rehydrated chain, oldest first: each turn's input, then its output."""
    items: list[Any] = []
    for turn in turns:
        output = turn.response.get("output")
        items += [*turn.input_items, *(output if isinstance(output, list) else [])]
    return items


def _parse(body: bytes, max_depth: int) -> dict[str, Any]:
    request = request_object(body, max_depth)  # nested past the bound: 400 json_too_deep, as for create
    if request is None:
        raise invalid_request("The request body is not valid JSON or not a JSON object.", code="invalid_json")
    return request


class StatelessResponsesHandler:
    """Owns ``/v1/responses/compact`` and ``/v1/responses/input_tokens``."""

    def __init__(self, app: ASGIApp, settings: RetentionSettings, store: ResponseStore) -> None:
        self.app = app
        self.settings = settings
        self.store = store

    async def __call__(self, exchange: Exchange) -> None:
        record = exchange.record
        try:
            body, request, guard = await read_request(exchange, self.settings, _parse)
            upstream_request = await self._prepare(request, record.tenant)
        except ClientGone:
            return
        except OpenAIError as error:
            record.error = error.code
            await send_error(exchange.send, error)
            return
        record.stored = False
        if upstream_request is not request:
            if guard is not None:
                guard.add_source(upstream_request)  # the rehydrated history is content too
            body = orjson.dumps(upstream_request)
        scope = with_body_length(exchange.scope, len(body))
        tee = _MeteredAnswer(exchange, exchange.send, guard)
        await self.app(scope, replay(body, exchange.receive), tee.send)

    async def _prepare(self, request: dict[str, Any], tenant: str) -> dict[str, Any]:
        previous = request.get("previous_response_id")
        if previous is None:
            return request
        if self.settings.policy == "zero":
            raise invalid_request(
                "previous_response_id is not supported: this server keeps no responses (zero data "
                "retention). Send the whole conversation in 'input' instead.",
                param="previous_response_id",
                code="unsupported_parameter",
            )
        previous_id = checked_id(previous, "previous_response_id")
        new_items = input_as_items(request.get("input", []))
        turns = await rehydrate(self.store, tenant, previous_id)
        upstream = {key: value for key, value in request.items() if key != "previous_response_id"}
        upstream["input"] = history_items(turns) + new_items
        return upstream


class _MeteredAnswer:
    """Forwards every message at once; reads the usage (or the token count) of a JSON answer."""

    def __init__(self, exchange: Exchange, downstream: Send, guard: GuardedContent | None) -> None:
        self.exchange = exchange
        self.downstream = downstream
        self.guard = guard
        self.kind = BodyKind.OTHER
        self.collected: bytearray | None = bytearray()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.kind = body_kind_of(message) if 200 <= message["status"] < 300 else BodyKind.OTHER
        elif message["type"] == "http.response.body" and self.kind is BodyKind.JSON and self.collected is not None:
            self.collected += message.get("body", b"")
            if len(self.collected) > MAX_EVENT_BYTES:
                self.collected = None  # too large to meter; forwarded all the same
            elif not message.get("more_body", False):
                self._meter(json_object(self.collected))
        await self.downstream(message)

    def _meter(self, answer: dict[str, Any] | None) -> None:
        if answer is None:
            return
        # A compaction reports usage; a token count is its own usage ({"input_tokens": n}).
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else answer
        self.exchange.record.usage = normalise_usage(usage)
        if self.guard is not None and "output" in answer:
            self.guard.add_source(answer["output"])
