"""``GET /v1/responses``: the caller's stored responses, newest first, in OpenAI's list envelope.

An extension OpenAI's API does not have (the seed system, Fireworks, does): ``limit`` (1-100,
default 20), ``order`` (``desc`` by default), ``after`` and ``before`` (response ids). Tenant-scoped
like every stored-response endpoint, and an expired response is never listed; a cursor that is not
one of the caller's live responses is a 400 naming it.
"""

from __future__ import annotations

import orjson

from ..errors import OpenAIError, invalid_request, send_error, send_json
from ..exchange import Exchange
from ..store.base import ResponseStore, StoreError
from .query import list_query
from .rehydrate import store_unavailable


class ListResponsesHandler:
    """Owns ``GET /v1/responses``; never forwarded."""

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    async def __call__(self, exchange: Exchange) -> None:
        try:
            query = list_query(exchange.scope.get("query_string", b""))
            page = await self.store.list_responses(
                exchange.record.tenant, limit=query.limit, order=query.order, after=query.after, before=query.before
            )
            if page is None:
                cursor = "after" if query.after is not None else "before"
                raise invalid_request(f"No stored response matches '{cursor}'.", param=cursor, code="invalid_value")
        except OpenAIError as error:
            exchange.record.error = error.code
            await send_error(exchange.send, error)
            return
        except StoreError as error:
            exchange.record.error = error.code
            await send_error(exchange.send, store_unavailable())
            return
        data = [stored.response for stored in page.responses]
        body = {
            "object": "list",
            "data": data,
            "first_id": data[0].get("id", "") if data else "",
            "last_id": data[-1].get("id", "") if data else "",
            "has_more": page.has_more,
        }
        await send_json(exchange.send, 200, orjson.dumps(body))
