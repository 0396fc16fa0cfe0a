"""Conversations in MongoDB: one document per conversation, one per item, beside the responses.

``conversations`` holds the conversation (tenant, dates, metadata, the next free position);
``conversation_items`` one document per item keyed by (conversation, position), so a page of items
is a range scan of the ``conversation_position`` index, never a read of the whole conversation.
Every item carries the conversation's ``expires_at`` for the TTL index, and an append moves it for
all of them; reads still check the conversation's own expiry first, because the TTL monitor lags.

Content (metadata, items) is orjson bytes, as for responses, so the server never interprets it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from .base import StoreError
from .conversations import Conversation, CursorNotFound, Item, ItemPage, StoredItem
from .memory import utc_millis
from .mongo import MongoStore
from .mongo_documents import Document
from .mongo_errors import translated
from .mongo_indexes import INDEXES, TTL_INDEX, ensure_indexes

CONVERSATIONS = "conversations"
ITEMS = "conversation_items"
ITEM_INDEXES = (
    IndexModel([("expires_at", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=0),
    IndexModel([("conversation", ASCENDING), ("position", ASCENDING)], name="conversation_position", unique=True),
    IndexModel([("conversation", ASCENDING), ("item_id", ASCENDING)], name="conversation_item_id"),
    IndexModel([("tenant", ASCENDING), ("conversation", ASCENDING)], name="tenant_conversation"),
)


def _strings(*values: object) -> None:
    # Ids are validated by the handler; this keeps a stray dict from ever becoming a query operator.
    if not all(isinstance(value, str) for value in values):
        raise TypeError("tenants and ids must be strings")


def _blob(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        raise StoreError("a conversation item is not JSON-serialisable") from None


def _conversation(doc: Document) -> Conversation:
    return Conversation(doc["_id"], doc["tenant"], doc["created_at"], doc["expires_at"], orjson.loads(doc["metadata"]))


def _item(doc: Document) -> StoredItem:
    return StoredItem(doc["item_id"], doc["position"], orjson.loads(doc["item"]))


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

    def _item_documents(
        self, tenant: str, conversation_id: str, start: int, items: Sequence[Item], expires_at: datetime
    ) -> list[Document]:
        return [
            {
                "_id": f"{conversation_id}/{start + offset:012d}",
                "conversation": conversation_id,
                "tenant": tenant,
                "position": start + offset,
                "item_id": str(item["id"]),
                "expires_at": expires_at,
                "item": _blob(item),
            }
            for offset, item in enumerate(items)
        ]

    async def _live(self, tenant: str, conversation_id: str) -> Document | None:
        _strings(tenant, conversation_id)
        conversations, _ = await self._collections()
        with translated("read a conversation"):
            return await conversations.find_one(
                {"_id": conversation_id, "tenant": tenant, "expires_at": {"$gt": self._now()}}
            )

    async def create(
        self, tenant: str, conversation_id: str, metadata: dict[str, str], items: Sequence[Item]
    ) -> Conversation:
        _strings(tenant, conversation_id)
        conversations, item_collection = await self._collections()
        now = self._now()
        document = {
            "_id": conversation_id,
            "tenant": tenant,
            "created_at": now,
            "expires_at": now + self.ttl,
            "metadata": _blob(metadata),
            "next_position": len(items),
        }
        documents = self._item_documents(tenant, conversation_id, 0, items, now + self.ttl)
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
        return _conversation(document)

    async def get(self, tenant: str, conversation_id: str) -> Conversation | None:
        document = await self._live(tenant, conversation_id)
        return None if document is None else _conversation(document)

    async def update_metadata(self, tenant: str, conversation_id: str, metadata: dict[str, str]) -> Conversation | None:
        _strings(tenant, conversation_id)
        conversations, _ = await self._collections()
        with translated("update a conversation"):
            document = await conversations.find_one_and_update(
                {"_id": conversation_id, "tenant": tenant, "expires_at": {"$gt": self._now()}},
                {"$set": {"metadata": _blob(metadata)}},
                return_document=ReturnDocument.AFTER,
            )
        return None if document is None else _conversation(document)

    async def delete(self, tenant: str, conversation_id: str) -> bool:
        _strings(tenant, conversation_id)
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
        _strings(tenant, conversation_id)
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
            documents = self._item_documents(tenant, conversation_id, start, items, expires_at)
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
        return [_item(document) for document in documents]

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
                _strings(after)
                cursor_doc = await item_collection.find_one(
                    {**query, "item_id": after}, projection={"position": 1}, sort=[("position", ASCENDING)]
                )
                if cursor_doc is None:
                    raise CursorNotFound(after)
                query["position"] = {"$gt" if order == "asc" else "$lt": cursor_doc["position"]}
            direction = ASCENDING if order == "asc" else DESCENDING
            cursor = item_collection.find(query).sort("position", direction).limit(limit + 1)
            documents = await cursor.to_list()
        return ItemPage([_item(document) for document in documents[:limit]], has_more=len(documents) > limit)

    async def get_item(self, tenant: str, conversation_id: str, item_id: str) -> StoredItem | None:
        _strings(item_id)
        if await self._live(tenant, conversation_id) is None:
            return None
        _, item_collection = await self._collections()
        with translated("read a conversation item"):
            document = await item_collection.find_one(
                {"conversation": conversation_id, "tenant": tenant, "item_id": item_id}, sort=[("position", ASCENDING)]
            )
        return None if document is None else _item(document)

    async def delete_item(self, tenant: str, conversation_id: str, item_id: str) -> Conversation | None:
        _strings(item_id)
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
        return None if removed is None else _conversation(conversation)

    async def delete_tenant(self, tenant: str) -> int:
        _strings(tenant)
        conversations, items = await self._collections()
        with translated("delete a tenant's conversations"):
            result = await conversations.delete_many({"tenant": tenant})
            await items.delete_many({"tenant": tenant})
        return result.deleted_count
