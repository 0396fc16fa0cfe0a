"""``GET`` / ``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``.

Served from the store by the middleware and never forwarded: the upstream keeps nothing. Every
lookup is scoped to the caller's tenant, and another tenant's id gets the same 404 as one that never
existed.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson

from ..errors import OpenAIError, invalid_request, not_found, send_error, send_json
from ..exchange import Exchange
from ..inflight import InFlightRegistry
from ..routes import Route
from ..store.base import ResponseStore, StoreError
from ..wire.numbers import bounded_whole
from .ids import checked_id
from .include import with_include
from .items import list_page
from .query import retrieve_query
from .rehydrate import store_unavailable
from .replay import replay_events, send_sse, sse_bytes


def _page_parameters(query_string: bytes) -> tuple[str | None, int, str]:
    after: str | None = None
    limit = 20
    order = "desc"
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name == "after":
            after = checked_id(value, "after")
        elif name == "limit":
            number = bounded_whole(value, 3)
            if number is None or not 1 <= number <= 100:
                raise invalid_request(
                    "Invalid 'limit': expected an integer from 1 to 100.", param="limit", code="invalid_value"
                )
            limit = number
        elif name == "order":
            if value not in ("asc", "desc"):
                raise invalid_request("Invalid 'order': expected 'asc' or 'desc'.", param="order", code="invalid_value")
            order = value
    return after, limit, order


class StoredResponseHandler:
    """Owns the three read/delete endpoints of stored responses."""

    def __init__(self, store: ResponseStore, inflight: InFlightRegistry) -> None:
        self.store = store
        self.inflight = inflight

    async def __call__(self, exchange: Exchange) -> None:
        try:
            await self._serve(exchange)
        except OpenAIError as error:
            exchange.record.error = error.code
            await send_error(exchange.send, error)
        except StoreError as error:
            exchange.record.error = error.code
            await send_error(exchange.send, store_unavailable())

    async def _serve(self, exchange: Exchange) -> None:
        response_id = checked_id(exchange.raw_id, "response_id")
        tenant = exchange.record.tenant
        if exchange.route is Route.RESPONSES_DELETE:
            await self._delete(exchange, tenant, response_id)
            return
        # Parameters are checked before the lookup, so a bad one is a 400 whether or not the id exists.
        query_string = exchange.scope.get("query_string", b"")
        listing = exchange.route is Route.RESPONSES_INPUT_ITEMS
        page_parameters = _page_parameters(query_string) if listing else (None, 20, "desc")
        retrieve = None if listing else retrieve_query(query_string)
        stored = await self.store.get(tenant, response_id)
        if stored is None:
            raise not_found(response_id)
        exchange.record.model = stored.model
        if retrieve is not None:
            response = with_include(stored.response, retrieve.include)
            if retrieve.stream:
                exchange.record.stream = True
                await send_sse(exchange.send, sse_bytes(replay_events(response), retrieve.starting_after))
            else:
                await send_json(exchange.send, 200, orjson.dumps(response))
            return
        after, limit, order = page_parameters
        page = list_page(response_id, stored.input_items, after=after, limit=limit, order=order)
        await send_json(exchange.send, 200, orjson.dumps(page))

    async def _delete(self, exchange: Exchange, tenant: str, response_id: str) -> None:
        streaming = self.inflight.find(tenant, response_id)
        # A response still streaming here counts as existing until it has been deleted once.
        cancelled_now = streaming is not None and not streaming.cancelled
        if streaming is not None:
            await streaming.cancel()
        deleted = await self.store.delete(tenant, response_id)
        if not deleted and not cancelled_now:
            raise not_found(response_id)
        body = orjson.dumps({"id": response_id, "object": "response", "deleted": True})
        await send_json(exchange.send, 200, body)
