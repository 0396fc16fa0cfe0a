"""``POST /v1/responses``: a stateful Responses API in front of a stateless upstream.

The upstream always gets ``store: false`` and no ``previous_response_id``; when the client continues
a conversation, the earlier turns are rehydrated from the store into ``input``. The answer streams
back as it comes, with ``store`` and ``previous_response_id`` restored, and the final response object
is stored (if the client asked and the policy allows) before its last bytes reach the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from .._types import ASGIApp
from ..backends.choice import ResponsesBackend
from ..conversations.turn import ConversationTurn, conversation_id_of
from ..errors import OpenAIError, UpstreamFailedMidResponse, invalid_request, send_error
from ..exchange import Exchange
from ..inflight import InFlightRegistry
from ..policy.content_log import ContentLog
from ..settings import RetentionSettings
from ..store.base import ResponseStore, StoredResponse, StoreError
from ..store.conversations import ConversationStore
from ..wire.json_object import nesting_within, too_deep
from ..wire.request_body import ClientGone, replay, with_body_length
from .capture import ResponseCapture
from .ids import checked_id
from .items import input_as_items
from .patch import StreamingPatcher, restoration_patterns
from .rehydrate import rehydrate, store_unavailable
from .request_reading import read_request
from .turn import StoredTurn

logger = logging.getLogger("retention_middleware")


def _parse_request(body: bytes, max_depth: int) -> dict[str, Any]:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid_request(
            "The request body is not valid JSON (it must be a UTF-8 encoded JSON object).",
            code="invalid_json",
        ) from None
    if not isinstance(request, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    if not nesting_within(body, request, max_depth):
        raise too_deep(max_depth)
    return request


class CreateResponseHandler:
    """Owns ``POST /v1/responses``."""

    def __init__(
        self,
        app: ASGIApp,
        settings: RetentionSettings,
        store: ResponseStore,
        inflight: InFlightRegistry,
        content_log: ContentLog,
        clock: Callable[[], datetime],
        *,
        conversations: ConversationStore | None = None,
    ) -> None:
        self.app = app
        self.conversations = conversations
        self.settings = settings
        self.store = store
        self.inflight = inflight
        self.content_log = content_log
        self.clock = clock
        self.backend = ResponsesBackend(app, settings.responses_backend)

    async def __call__(self, exchange: Exchange) -> None:
        record = exchange.record
        try:
            body, request, guard = await read_request(exchange, self.settings, _parse_request)
            record.stream = request.get("stream") is True
            conversation = self._conversation(request, record.tenant)
            upstream_request, store, previous_id, history = await self._prepare(request, exchange, len(body))
            if conversation is not None:
                upstream_request = await conversation.upstream_request(upstream_request)
            call = await self.backend.call_for(exchange.scope, upstream_request)  # may translate to chat
        except ClientGone:
            return
        except OpenAIError as error:
            record.error = error.code
            await send_error(exchange.send, error)
            return
        if guard is not None and upstream_request is not request:
            guard.add_source(upstream_request)  # the rehydrated history is content too
        record.stored = False
        # _prepare hands back the request itself when nothing needs changing: the client's bytes go on.
        upstream_body = body if upstream_request is request else orjson.dumps(upstream_request)
        scope, upstream_body = call.request(exchange.scope, upstream_body)
        scope = with_body_length(scope, len(upstream_body))
        tenant = record.tenant
        reason = self.content_log.reason(tenant, record.model, scope["headers"])
        entry = self.inflight.open(tenant) if store or reason or conversation else None
        turn = StoredTurn(
            settings=self.settings,
            store=self.store,
            inflight=self.inflight,
            clock=self.clock,
            exchange=exchange,
            request=request,
            store_requested=store,
            previous_id=previous_id,
            history=history,
            entry=entry,
            conversation=conversation,
        )
        conversation_id = None if conversation is None else conversation.conversation_id
        patterns = restoration_patterns(store, previous_id, conversation_id)
        send = exchange.send if reason is None else self.content_log.disclosing(exchange.send, reason)
        capture = ResponseCapture(
            exchange,
            send,
            guard,
            StreamingPatcher(patterns) if patterns else None,
            turn.on_response_id,
            turn.on_started,
            turn.on_final,
            store=store,
            previous_response_id=previous_id,
            conversation=conversation_id,
            hold_json=store and self.settings.store_failure == "reject",
        )
        try:
            try:
                await self.app(scope, replay(upstream_body, exchange.receive), call.send(capture.send))
            except UpstreamFailedMidResponse as error:
                # No terminal event came, so nothing was stored; an SDK reading the stream gets a
                # terminal error event instead of waiting on a stream that will never finish.
                if not await capture.end_with_error(error.code):
                    raise
                record.error = error.code
                return
            if reason is not None and entry is not None:
                # A documented exception: this request's content is kept (never logged); see content_log.
                await self.content_log.keep(
                    record, entry, reason=reason, endpoint=record.path, request=request, response=turn.final
                )
        finally:
            await turn.discard_in_progress()
            if entry is not None:
                self.inflight.close(entry)

    def _conversation(self, request: dict[str, Any], tenant: str) -> ConversationTurn | None:
        """The conversation this response joins (``conversation``), checked before anything else."""
        conversation_id = conversation_id_of(request, zero=self.settings.policy == "zero" or self.conversations is None)
        if conversation_id is None or self.conversations is None:
            return None
        return ConversationTurn(self.conversations, tenant, conversation_id, request)

    async def _prepare(
        self, request: dict[str, Any], exchange: Exchange, body_size: int
    ) -> tuple[dict[str, Any], bool, str | None, list[StoredResponse]]:
        """Check the request and build what the upstream gets; raises OpenAIError for bad input."""
        store = request.get("store", True)
        if not isinstance(store, bool):
            raise invalid_request("Invalid type for 'store': expected a boolean.", param="store", code="invalid_type")
        if request.get("background") is True:
            raise invalid_request(
                "Background responses are not supported here: they need the upstream to keep state.",
                param="background",
                code="unsupported_parameter",
            )
        previous = request.get("previous_response_id")
        zero = self.settings.policy == "zero"
        if previous is not None and zero:
            raise invalid_request(
                "previous_response_id is not supported: this server keeps no responses (zero data "
                "retention). Send the whole conversation in 'input' instead.",
                param="previous_response_id",
                code="unsupported_parameter",
            )
        if zero:
            store = False
        previous_id = None if previous is None else checked_id(previous, "previous_response_id")
        new_items = input_as_items(request.get("input", []), self.settings.max_input_items)
        tenant = exchange.record.tenant
        if store and self.settings.store_failure == "reject":
            try:
                await self.store.check(body_size)  # the input is about the size of the body
            except StoreError as error:
                exchange.record.error = error.code
                raise store_unavailable() from None
        history: list[StoredResponse] = []
        upstream = dict(request)
        upstream["store"] = False
        if previous_id is not None:
            history = await rehydrate(self.store, tenant, previous_id)
            upstream.pop("previous_response_id")
            upstream["input"] = [item for turn in history for item in _turn_items(turn)] + new_items
        if "store" in request and request["store"] is False and previous_id is None:
            return request, False, None, history
        return upstream, store, previous_id, history


def _turn_items(turn: StoredResponse) -> list[Any]:
    output = turn.response.get("output")
    return [*turn.input_items, *(output if isinstance(output, list) else [])]
