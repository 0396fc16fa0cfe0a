"""Conversations in MongoDB: one document per conversation, one per item, beside the responses.

``conversations`` holds the conversation (tenant, dates, metadata, the next free position);
``conversation_items`` one document per item (layout in ``conversations_mongo_documents``), so a
page of items is a range scan of an index, never a read of the whole conversation. An append moves
every item's ``expires_at`` with the conversation's; reads still check the conversation's own expiry
first, because the TTL monitor lags.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

import orjson
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from .conversations import Conversation, CursorNotFound, Item, ItemPage, StoredItem
from .conversations_mongo_documents import (
    CONVERSATIONS,
    ITEM_INDEXES,
    ITEMS,
    as_conversation,
    as_item,
    blob,
    item_documents,
    strings,
)
from .memory import utc_millis
from .mongo import MongoStore
from .mongo_documents import Document
from .mongo_errors import translated
from .mongo_indexes import INDEXES, ensure_indexes


class ConversationMongoStore:
    """The ConversationStore on the MongoStore's client and database."""

    def __init__(self, store: MongoStore, ttl: timedelta, *, clock: Callable[[], datetime] | None = None) -> None:
        self.ttl = ttl
        self._store = store
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._started = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._collections()

    async def close(self) -> None:
        self._started = False  # the client is the MongoStore's, closed with it

    async def _collections(self) -> tuple[AsyncCollection[Document], AsyncCollection[Document]]:
        conversations = await self._store.collection(CONVERSATIONS)
        items = await self._store.collection(ITEMS)
        if not self._started:
            async with self._lock:
                if not self._started:
                    await ensure_indexes(conversations, INDEXES)
                    await ensure_indexes(items, ITEM_INDEXES)
                    self._started = True
        return conversations, items

    def _now(self) -> datetime:
        return utc_millis(self._clock(), "clock()")

    async def _live(self, tenant: str, conversation_id: str) -> Document | None:
        strings(tenant, conversation_id)
        conversations, _ = await self._collections()
        with translated("read a conversation"):
            return await conversations.find_one(
                {"_id": conversation_id, "tenant": tenant, "expires_at": {"$gt": self._now()}}
            )

    async def create(
        self, tenant: str, conversation_id: str, metadata: dict[str, str], items: Sequence[Item]
    ) -> Conversation:
        strings(tenant, conversation_id)
        conversations, item_collection = await self._collections()
        now = self._now()
        document = {
            "_id": conversation_id,
            "tenant": tenant,
            "created_at": now,
            "expires_at": now + self.ttl,
            "metadata": blob(metadata),
            "next_position": len(items),
        }
        documents = item_documents(tenant, conversation_id, 0, items, now + self.ttl)
        # Items first: until the conversation document exists they are invisible, so a failure
        # between the two writes leaves nothing readable (and the items are removed at once).
        with translated("store a conversation"):
            try:
                if documents:
                    await item_collection.insert_many(documents)
                await conversations.insert_one(document)
            except Exception:
                await item_collection.delete_many({"conversation": conversation_id, "tenant": tenant})
                raise
        return as_conversation(document)

    async def get(self, tenant: str, conversation_id: str) -> Conversation | None:
        document = await self._live(tenant, conversation_id)
        return None if document is None else as_conversation(document)

    async def update_metadata(self, tenant: str, conversation_id: str, metadata: dict[str, str]) -> Conversation | None:
        strings(tenant, conversation_id)
        conversations, _ = await self._collections()
        with translated("update a conversation"):
            document = await conversations.find_one_and_update(
                {"_id": conversation_id, "tenant": tenant, "expires_at": {"$gt": self._now()}},
                {"$set": {"metadata": blob(metadata)}},
                return_document=ReturnDocument.AFTER,
            )
        return None if document is None else as_conversation(document)

    async def delete(self, tenant: str, conversation_id: str) -> bool:
        strings(tenant, conversation_id)
        conversations, items = await self._collections()
        with translated("delete a conversation"):
            removed = await conversations.find_one_and_delete(
                {"_id": conversation_id, "tenant": tenant}, projection={"_id": 0, "expires_at": 1}
            )
            if removed is None:
                return False
            await items.delete_many({"conversation": conversation_id, "tenant": tenant})
        return bool(removed["expires_at"] > self._now())

    async def append(self, tenant: str, conversation_id: str, items: Sequence[Item]) -> list[StoredItem] | None:
        if not items:
            return None if await self._live(tenant, conversation_id) is None else []
        strings(tenant, conversation_id)
        conversations, item_collection = await self._collections()
        now = self._now()
        expires_at = now + self.ttl
        mine = {"conversation": conversation_id, "tenant": tenant}
        with translated("add items to a conversation"):
            # Reserve the positions and restart the expiry in one atomic update of the conversation.
            before = await conversations.find_one_and_update(
                {"_id": conversation_id, "tenant": tenant, "expires_at": {"$gt": now}},
                {"$inc": {"next_position": len(items)}, "$set": {"expires_at": expires_at}},
                projection={"next_position": 1},
                return_document=ReturnDocument.BEFORE,
            )
            if before is None:
                return None
            start = int(before["next_position"])
            documents = item_documents(tenant, conversation_id, start, items, expires_at)
            reserved = {**mine, "position": {"$gte": start, "$lt": start + len(items)}}
            try:
                await item_collection.insert_many(documents)
            except Exception:
                await item_collection.delete_many(reserved)
                raise
            await item_collection.update_many(
                {**mine, "position": {"$lt": start}}, {"$set": {"expires_at": expires_at}}
            )
            # A delete of the conversation may have run while the items were written: then they
            # must not outlive it.
            if await conversations.find_one({"_id": conversation_id, "tenant": tenant}, projection={"_id": 1}) is None:
                await item_collection.delete_many(reserved)
                return None
        return [as_item(document) for document in documents]

    async def items(self, tenant: str, conversation_id: str) -> list[Item] | None:
        if await self._live(tenant, conversation_id) is None:
            return None
        _, item_collection = await self._collections()
        with translated("read a conversation's items"):
            cursor = item_collection.find({"conversation": conversation_id, "tenant": tenant}).sort(
                "position", ASCENDING
            )
            documents = await cursor.to_list()
        return [orjson.loads(document["item"]) for document in documents]

    async def page(
        self, tenant: str, conversation_id: str, *, after: str | None, limit: int, order: str
    ) -> ItemPage | None:
        if await self._live(tenant, conversation_id) is None:
            return None
        _, item_collection = await self._collections()
        query: Document = {"conversation": conversation_id, "tenant": tenant}
        with translated("read a conversation's items"):
            if after is not None:
                strings(after)
                cursor_doc = await item_collection.find_one(
                    {**query, "item_id": after}, projection={"position": 1}, sort=[("position", ASCENDING)]
                )
                if cursor_doc is None:
                    raise CursorNotFound(after)
                query["position"] = {"$gt" if order == "asc" else "$lt": cursor_doc["position"]}
            direction = ASCENDING if order == "asc" else DESCENDING
            cursor = item_collection.find(query).sort("position", direction).limit(limit + 1)
            documents = await cursor.to_list()
        return ItemPage([as_item(document) for document in documents[:limit]], has_more=len(documents) > limit)

    async def get_item(self, tenant: str, conversation_id: str, item_id: str) -> StoredItem | None:
        strings(item_id)
        if await self._live(tenant, conversation_id) is None:
            return None
        _, item_collection = await self._collections()
        with translated("read a conversation item"):
            document = await item_collection.find_one(
                {"conversation": conversation_id, "tenant": tenant, "item_id": item_id}, sort=[("position", ASCENDING)]
            )
        return None if document is None else as_item(document)

    async def delete_item(self, tenant: str, conversation_id: str, item_id: str) -> Conversation | None:
        strings(item_id)
        conversation = await self._live(tenant, conversation_id)
        if conversation is None:
            return None
        _, item_collection = await self._collections()
        with translated("delete a conversation item"):
            removed = await item_collection.find_one_and_delete(
                {"conversation": conversation_id, "tenant": tenant, "item_id": item_id},
                projection={"_id": 1},
                sort=[("position", ASCENDING)],
            )
        return None if removed is None else as_conversation(conversation)

    async def delete_tenant(self, tenant: str) -> int:
        strings(tenant)
        conversations, items = await self._collections()
        with translated("delete a tenant's conversations"):
            result = await conversations.delete_many({"tenant": tenant})
            await items.delete_many({"tenant": tenant})
        return result.deleted_count
