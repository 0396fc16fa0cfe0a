"""``/v1/conversations``: create, retrieve, update and delete conversations, and list, add, read and
delete their items. Served from the store, never forwarded: the upstream keeps nothing.

Every lookup is scoped to the caller's tenant (another tenant's id is the same 404 as a missing one),
and under the ``zero`` policy every endpoint is refused, since a conversation is kept data.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson

from ..errors import OpenAIError, invalid_request, send_error, send_json
from ..exchange import Exchange
from ..responses.ids import checked_id
from ..responses.rehydrate import store_unavailable
from ..settings import RetentionSettings
from ..store.base import StoreError, StoreFull
from ..store.conversations import Conversation, ConversationStore, CursorNotFound, StoredItem
from ..wire.request_body import ClientGone, read_body
from .items import check_include, checked_metadata, not_found, page_parameters, stored_items, zero_refusal

_PATH = re.compile(r"^(?:/v1)?/conversations(?:/([^/]+)(?:/(items)(?:/([^/]+))?)?)?/?$")


def conversation_object(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "object": "conversation",
        "created_at": int(conversation.created_at.timestamp()),
        "metadata": conversation.metadata,
    }


def item_list(items: list[StoredItem], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [item.item for item in items],
        # The spec makes both ids required strings, so an empty page has empty ones, not nulls.
        "first_id": items[0].id if items else "",
        "last_id": items[-1].id if items else "",
        "has_more": has_more,
    }


def _json_object(body: bytes, *, empty_ok: bool) -> dict[str, Any]:
    if not body.strip() and empty_ok:
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid_request("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(value, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    return value


class ConversationsHandler:
    """Owns every ``/v1/conversations`` request."""

    def __init__(self, store: ConversationStore, settings: RetentionSettings) -> None:
        self.store = store
        self.settings = settings

    async def __call__(self, exchange: Exchange) -> None:
        try:
            await self._serve(exchange)
        except ClientGone:
            return
        except OpenAIError as error:
            exchange.record.error = error.code
            await send_error(exchange.send, error)
        except StoreFull as error:
            # Retrying soon will not help (live records are never evicted): say what is wrong.
            exchange.record.error = error.code
            full = OpenAIError(
                503, "The store has no room for more conversation data.", type="server_error", code=error.code
            )
            await send_error(exchange.send, full)
        except StoreError as error:
            exchange.record.error = error.code
            if error.code == "caller_key_missing":
                # Caller-key encryption (RETENTION_ENCRYPTION=caller-key) seals with the caller's own key:
                # without a bearer token nothing can be kept, and retrying will not change that.
                await send_error(exchange.send, _NO_CALLER_KEY)
                return
            await send_error(exchange.send, store_unavailable())

    async def _serve(self, exchange: Exchange) -> None:
        scope = exchange.scope
        match = _PATH.match(scope["path"])
        if match is None:
            raise OpenAIError(404, "No such endpoint.", code="not_found")
        if self.settings.policy == "zero":
            raise zero_refusal()
        raw_conversation, items, raw_item = match.groups()
        method, tenant = scope["method"], exchange.record.tenant
        query = scope.get("query_string", b"")
        if raw_conversation is None:
            if method != "POST":
                raise _not_allowed()
            await self._create(exchange, tenant)
            return
        conversation_id = checked_id(raw_conversation, "conversation_id")
        if items is None:
            await self._conversation(exchange, method, tenant, conversation_id)
        elif raw_item is None:
            if method == "GET":
                after, limit, order = page_parameters(query)
                try:
                    page = await self.store.page(tenant, conversation_id, after=after, limit=limit, order=order)
                except CursorNotFound:
                    raise invalid_request(
                        f"No item with id '{after}' in this conversation.", param="after", code="invalid_value"
                    ) from None
                if page is None:
                    raise not_found("Conversation", conversation_id)
                await _answer(exchange, item_list(page.items, page.has_more))
            elif method == "POST":
                check_include(query)
                body = await self._body(exchange, empty_ok=False)
                new_items = stored_items(body.get("items"), required=True)
                added = await self.store.append(tenant, conversation_id, new_items)
                if added is None:
                    raise not_found("Conversation", conversation_id)
                await _answer(exchange, item_list(added, False))
            else:
                raise _not_allowed()
        else:
            item_id = checked_id(raw_item, "item_id")
            if method == "GET":
                check_include(query)
                found = await self.store.get_item(tenant, conversation_id, item_id)
                if found is None:
                    await self._missing(tenant, conversation_id, item_id)
                else:
                    await _answer(exchange, found.item)
            elif method == "DELETE":
                after_delete = await self.store.delete_item(tenant, conversation_id, item_id)
                if after_delete is None:
                    await self._missing(tenant, conversation_id, item_id)
                else:
                    await _answer(exchange, conversation_object(after_delete))
            else:
                raise _not_allowed()

    async def _create(self, exchange: Exchange, tenant: str) -> None:
        body = await self._body(exchange, empty_ok=True)
        metadata = checked_metadata(body.get("metadata"))
        items = stored_items(body.get("items"))
        conversation_id = f"conv_{secrets.token_hex(24)}"
        conversation = await self.store.create(tenant, conversation_id, metadata, items)
        await _answer(exchange, conversation_object(conversation))

    async def _conversation(self, exchange: Exchange, method: str, tenant: str, conversation_id: str) -> None:
        if method == "GET":
            conversation = await self.store.get(tenant, conversation_id)
        elif method == "POST":
            body = await self._body(exchange, empty_ok=False)
            if "metadata" not in body:
                raise invalid_request(
                    "Missing required parameter: 'metadata'.", param="metadata", code="missing_required_parameter"
                )
            metadata = checked_metadata(body["metadata"])
            conversation = await self.store.update_metadata(tenant, conversation_id, metadata)
        elif method == "DELETE":
            if not await self.store.delete(tenant, conversation_id):
                raise not_found("Conversation", conversation_id)
            await _answer(exchange, {"id": conversation_id, "object": "conversation.deleted", "deleted": True})
            return
        else:
            raise _not_allowed()
        if conversation is None:
            raise not_found("Conversation", conversation_id)
        await _answer(exchange, conversation_object(conversation))

    async def _body(self, exchange: Exchange, *, empty_ok: bool) -> dict[str, Any]:
        body = await read_body(exchange.receive, exchange.scope["headers"], self.settings.max_body)
        value = _json_object(body, empty_ok=empty_ok)
        guard = exchange.guard()
        if guard is not None:
            guard.add_source(value)  # items and metadata are content: keep them out of every log
        return value

    async def _missing(self, tenant: str, conversation_id: str, item_id: str) -> None:
        # Say which of the two is missing, as OpenAI does; both answers are 404 either way.
        if await self.store.get(tenant, conversation_id) is None:
            raise not_found("Conversation", conversation_id)
        raise not_found("Item", item_id)


_NO_CALLER_KEY = OpenAIError(
    401,
    "Conversations here are encrypted with the caller's own API key: send it as a bearer token.",
    type="invalid_request_error",
    code="caller_key_missing",
)


def _not_allowed() -> OpenAIError:
    return OpenAIError(405, "Method not allowed on this endpoint.", code="method_not_allowed")


async def _answer(exchange: Exchange, value: dict[str, Any]) -> None:
    await send_json(exchange.send, 200, orjson.dumps(value))
