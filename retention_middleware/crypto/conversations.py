"""EncryptingConversationStore: any ConversationStore with metadata and items sealed at rest.

What the store queries stays in clear: tenant, conversation id, dates, positions and each item's id
(pages start after an item id, and an item is read or deleted by id). What a client wrote is sealed
with the same ``FieldSealer`` as the response store, so one tenant key (or one caller key) covers
both, and erasure destroying that key makes every copy of the tenant's conversations unreadable.

- A conversation's metadata is sealed under the conversation id: the store keeps ``{"$sealed": …}``
  where it kept the metadata (still a ``dict[str, str]``).
- An item is kept as ``{"id": <item id>, "$sealed": …}``, sealed under ``<conversation id>/<item id>``,
  so an item moved to another conversation (or given another id) does not open.

Failure is closed, as for responses: a conversation whose metadata does not open is missing; an item
that does not open is left out of every read (history sent upstream, pages, a single item answers
404), the request's access-log line says ``decrypt_failed`` and the warning names only the ids.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from ..store.conversations import Conversation, ConversationStore, Item, ItemPage, StoredItem
from .cipher import DecryptError
from .context import note_decrypt_failure
from .fields import SEALED, FieldSealer

logger = logging.getLogger("retention_middleware")

METADATA = "conversation.metadata"
ITEM = "conversation.item"


class EncryptingConversationStore:
    """The ConversationStore protocol around ``inner``, sealing content with ``sealer``."""

    def __init__(self, inner: ConversationStore, sealer: FieldSealer) -> None:
        self.inner = inner
        self.sealer = sealer
        self.ttl: timedelta = inner.ttl

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    # -- sealing ----------------------------------------------------------------------------------

    async def _sealed_metadata(self, tenant: str, conversation_id: str, metadata: dict[str, str]) -> dict[str, str]:
        return await self.sealer.seal(tenant, conversation_id, METADATA, metadata)

    async def _opened(self, conversation: Conversation | None) -> Conversation | None:
        if conversation is None:
            return None
        try:
            metadata = await self.sealer.open(conversation.tenant, conversation.id, METADATA, conversation.metadata)
        except DecryptError:
            metadata = None
        if not isinstance(metadata, dict):
            _refused(conversation.id)
            return None
        return dataclasses.replace(conversation, metadata=metadata)

    async def _sealed_items(self, tenant: str, conversation_id: str, items: Sequence[Item]) -> list[Item]:
        sealed: list[Item] = []
        for item in items:
            item_id = str(item["id"])
            envelope = await self.sealer.seal(tenant, f"{conversation_id}/{item_id}", ITEM, item)
            sealed.append({"id": item_id, SEALED: envelope[SEALED]})
        return sealed

    async def _opened_item(self, tenant: str, conversation_id: str, item_id: str, kept: Item) -> Item | None:
        # Anything beside the id and the envelope (an item planted in clear) is refused like bad bytes.
        envelope: Any = {SEALED: kept.get(SEALED)} if set(kept) == {"id", SEALED} else kept
        try:
            item = await self.sealer.open(tenant, f"{conversation_id}/{item_id}", ITEM, envelope)
        except DecryptError:
            item = None
        if not isinstance(item, dict) or item.get("id") != item_id:
            _refused(f"{conversation_id}/{item_id}")
            return None
        return item

    async def _opened_stored(self, tenant: str, conversation_id: str, stored: StoredItem) -> StoredItem | None:
        item = await self._opened_item(tenant, conversation_id, stored.id, stored.item)
        return None if item is None else dataclasses.replace(stored, item=item)

    # -- conversations ----------------------------------------------------------------------------

    async def create(
        self, tenant: str, conversation_id: str, metadata: dict[str, str], items: Sequence[Item]
    ) -> Conversation:
        sealed = await self._sealed_metadata(tenant, conversation_id, metadata)
        created = await self.inner.create(
            tenant, conversation_id, sealed, await self._sealed_items(tenant, conversation_id, items)
        )
        return dataclasses.replace(created, metadata=dict(metadata))

    async def get(self, tenant: str, conversation_id: str) -> Conversation | None:
        return await self._opened(await self.inner.get(tenant, conversation_id))

    async def update_metadata(self, tenant: str, conversation_id: str, metadata: dict[str, str]) -> Conversation | None:
        # Only the owner's key may overwrite: a conversation that does not open stays as it is.
        if await self.get(tenant, conversation_id) is None:
            return None
        sealed = await self._sealed_metadata(tenant, conversation_id, metadata)
        updated = await self.inner.update_metadata(tenant, conversation_id, sealed)
        return None if updated is None else dataclasses.replace(updated, metadata=dict(metadata))

    async def delete(self, tenant: str, conversation_id: str) -> bool:
        return await self.inner.delete(tenant, conversation_id)  # needs no key: the owner can always delete

    async def delete_tenant(self, tenant: str) -> int:
        return await self.inner.delete_tenant(tenant)

    # -- items ------------------------------------------------------------------------------------

    async def append(self, tenant: str, conversation_id: str, items: Sequence[Item]) -> list[StoredItem] | None:
        sealed = await self._sealed_items(tenant, conversation_id, items)
        added = await self.inner.append(tenant, conversation_id, sealed)
        if added is None:
            return None
        # The store answers in the order it was given: pair each position with the clear item.
        return [dataclasses.replace(stored, item=dict(item)) for stored, item in zip(added, items, strict=True)]

    async def items(self, tenant: str, conversation_id: str) -> list[Item] | None:
        kept = await self.inner.items(tenant, conversation_id)
        if kept is None:
            return None
        opened = [await self._opened_item(tenant, conversation_id, str(item.get("id")), item) for item in kept]
        if None in opened and not await self._opens(tenant, conversation_id):
            return None
        return [item for item in opened if item is not None]

    async def page(
        self, tenant: str, conversation_id: str, *, after: str | None, limit: int, order: str
    ) -> ItemPage | None:
        page = await self.inner.page(tenant, conversation_id, after=after, limit=limit, order=order)
        if page is None:
            return None
        opened = [await self._opened_stored(tenant, conversation_id, stored) for stored in page.items]
        if None in opened and not await self._opens(tenant, conversation_id):
            return None
        return ItemPage([stored for stored in opened if stored is not None], has_more=page.has_more)

    async def _opens(self, tenant: str, conversation_id: str) -> bool:
        # Asked only once an item failed: if the conversation itself does not open either (an erased
        # or another caller's key), the whole conversation is missing, not just some items.
        return await self.get(tenant, conversation_id) is not None

    async def get_item(self, tenant: str, conversation_id: str, item_id: str) -> StoredItem | None:
        stored = await self.inner.get_item(tenant, conversation_id, item_id)
        return None if stored is None else await self._opened_stored(tenant, conversation_id, stored)

    async def delete_item(self, tenant: str, conversation_id: str, item_id: str) -> Conversation | None:
        return await self._opened(await self.inner.delete_item(tenant, conversation_id, item_id))


def _refused(record_id: str) -> None:
    note_decrypt_failure()
    logger.warning("conversation record %s could not be decrypted; treated as missing (decrypt_failed)", record_id)
