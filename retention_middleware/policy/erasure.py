"""``DELETE /v1/retention/data``: a tenant erases everything held for it, with one call.

Stored responses, content records and conversations of the calling tenant are deleted before the answer; requests of
that tenant still in flight in this process write nothing when they complete. Another tenant's data is
untouched. If the store fails part-way, the answer says what was and was not deleted, and repeating
the call finishes the job (deleting is idempotent).

Erasure needs an identified tenant: a caller with neither a bearer token nor a tenant header, and every
caller under ``RETENTION_TENANCY=shared``, is ``anonymous``, and one caller must not erase everybody's data.
"""

from __future__ import annotations

import orjson

from ..crypto import KeyHolder
from ..errors import OpenAIError, send_error, send_json
from ..exchange import Exchange
from ..inflight import InFlightRegistry
from ..observability.metrics import count_stored
from ..store.base import ResponseStore, StoreError
from ..store.conversations import ConversationStore
from ..tenancy import ANONYMOUS


class ErasureHandler:
    def __init__(
        self, store: ResponseStore, inflight: InFlightRegistry, *, conversations: ConversationStore | None = None
    ) -> None:
        self.store = store
        self.inflight = inflight
        self.conversations = conversations

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
        keys: dict[str, int] = {}
        content_deleted: int | None = None
        try:
            if isinstance(self.store, KeyHolder):
                # The key goes first: from then on every copy of the tenant's records, in backups too,
                # is unreadable, even if deleting the records themselves fails part-way.
                keys["keys_destroyed"] = await self.store.destroy_tenant_keys(tenant)
            responses_deleted = await self.store.delete_tenant(tenant)
            content_deleted = await self.store.delete_tenant_content(tenant)
            # Conversations (with their items) go too; counted separately from responses.
            conversations_deleted = 0
            if self.conversations is not None:
                conversations_deleted = await self.conversations.delete_tenant(tenant)
            count_stored("erased", responses_deleted)
        except StoreError:
            exchange.record.error = "erasure_incomplete"
            await self._incomplete(exchange, responses_deleted, content_deleted)
            return
        body = orjson.dumps(
            {
                "object": "retention.erasure",
                "responses_deleted": responses_deleted,
                "content_records_deleted": content_deleted,
                "conversations_deleted": conversations_deleted,
                **keys,
            }
        )
        await send_json(exchange.send, 200, body)

    @staticmethod
    async def _incomplete(exchange: Exchange, responses_deleted: int | None, content_deleted: int | None) -> None:
        if responses_deleted is None:
            done = "Nothing was deleted"
        elif content_deleted is not None:
            done = (
                f"{responses_deleted} stored responses and {content_deleted} content records were deleted "
                "but conversations were not"
            )
        else:
            done = f"{responses_deleted} stored responses were deleted but content records were not"
        message = f"Erasure incomplete: {done} (the store is unavailable). Repeat the request to finish."
        body = orjson.dumps(
            {
                "error": {"message": message, "type": "server_error", "param": None, "code": "erasure_incomplete"},
                "object": "retention.erasure",
                "responses_deleted": responses_deleted,
                "content_records_deleted": content_deleted,
                "conversations_deleted": None,
            }
        )
        await send_json(exchange.send, 503, body)
