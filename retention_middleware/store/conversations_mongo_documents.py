"""How conversations and their items are laid out in MongoDB: collections, indexes, documents.

One document per item, keyed by (conversation, position) under the unique ``conversation_position``
index, so a page is a range of that index. Each item carries its conversation's ``expires_at`` for
the TTL index. Content (metadata, items) is orjson bytes, as for responses, so the server never
interprets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from pymongo import ASCENDING, IndexModel

from .base import StoreError
from .conversations import Conversation, Item, StoredItem
from .mongo_documents import Document
from .mongo_indexes import TTL_INDEX

CONVERSATIONS = "conversations"
ITEMS = "conversation_items"
ITEM_INDEXES = (
    IndexModel([("expires_at", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=0),
    IndexModel([("conversation", ASCENDING), ("position", ASCENDING)], name="conversation_position", unique=True),
    IndexModel([("conversation", ASCENDING), ("item_id", ASCENDING)], name="conversation_item_id"),
    IndexModel([("tenant", ASCENDING), ("conversation", ASCENDING)], name="tenant_conversation"),
)


def strings(*values: object) -> None:
    # Ids are validated by the handler; this keeps a stray dict from ever becoming a query operator.
    if not all(isinstance(value, str) for value in values):
        raise TypeError("tenants and ids must be strings")


def blob(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        raise StoreError("a conversation item is not JSON-serialisable") from None


def as_conversation(doc: Document) -> Conversation:
    return Conversation(doc["_id"], doc["tenant"], doc["created_at"], doc["expires_at"], orjson.loads(doc["metadata"]))


def as_item(doc: Document) -> StoredItem:
    return StoredItem(doc["item_id"], doc["position"], orjson.loads(doc["item"]))


def item_documents(
    tenant: str, conversation_id: str, start: int, items: Sequence[Item], expires_at: datetime
) -> list[Document]:
    return [
        {
            "_id": f"{conversation_id}/{start + offset:012d}",
            "conversation": conversation_id,
            "tenant": tenant,
            "position": start + offset,
            "item_id": str(item["id"]),
            "expires_at": expires_at,
            "item": blob(item),
        }
        for offset, item in enumerate(items)
    ]
