"""``DELETE /v1/retention/data``: a tenant erases everything held for it, with one call.

Stored responses and content records of the calling tenant are deleted before the answer; requests of
that tenant still in flight in this process write nothing when they complete. Another tenant's data is
untouched. If the store fails part-way, the answer says what was and was not deleted, and repeating
the call finishes the job (deleting is idempotent).

Erasure needs an identified tenant: a caller with neither a bearer token nor a tenant header, and every
caller under ``RETENTION_TENANCY=shared``, is ``anonymous``, and one caller must not erase everybody's data.
"""

from __future__ import annotations

import orjson

from ..errors import OpenAIError, send_error, send_json
from ..exchange import Exchange
from ..inflight import InFlightRegistry
from ..store.base import ResponseStore, StoreError
from ..tenancy import ANONYMOUS


class ErasureHandler:
    def __init__(self, store: ResponseStore, inflight: InFlightRegistry) -> None:
        self.store = store
        self.inflight = inflight

    async def __call__(self, exchange: Exchange) -> None:
        tenant = exchange.record.tenant
        if tenant == ANONYMOUS:
            exchange.record.error = "tenant_required"
            await send_error(
                exchange.send,
                OpenAIError(
                    403,
                    "Erasure needs an identified tenant: send your API key as a bearer token. A server "
                    "with RETENTION_TENANCY=shared does not tell callers apart.",
                    type="permission_error",
                    code="tenant_required",
                ),
            )
            return
        for entry in self.inflight.of_tenant(tenant):
            await entry.cancel()
        responses_deleted: int | None = None
        try:
            responses_deleted = await self.store.delete_tenant(tenant)
            content_deleted = await self.store.delete_tenant_content(tenant)
        except StoreError:
            exchange.record.error = "erasure_incomplete"
            await self._incomplete(exchange, responses_deleted)
            return
        body = orjson.dumps(
            {
                "object": "retention.erasure",
                "responses_deleted": responses_deleted,
                "content_records_deleted": content_deleted,
            }
        )
        await send_json(exchange.send, 200, body)

    @staticmethod
    async def _incomplete(exchange: Exchange, responses_deleted: int | None) -> None:
        if responses_deleted is None:
            done = "Nothing was deleted"
        else:
            done = f"{responses_deleted} stored responses were deleted but content records were not"
        message = f"Erasure incomplete: {done} (the store is unavailable). Repeat the request to finish."
        body = orjson.dumps(
            {
                "error": {"message": message, "type": "server_error", "param": None, "code": "erasure_incomplete"},
                "object": "retention.erasure",
                "responses_deleted": responses_deleted,
                "content_records_deleted": None,
            }
        )
        await send_json(exchange.send, 503, body)
