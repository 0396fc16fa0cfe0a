"""The key vault in MongoDB: one document per tenant in ``data_keys``, beside the data it opens.

``{_id: tenant, key_id, master_key_id, wrapped, created_at}``: the data key only ever appears wrapped
by a master key, which the database never sees. ``_id`` being the tenant makes "one key per tenant" a
property of the unique ``_id`` index, so two replicas racing to create a tenant's first key cannot both
win. Errors go through the store's ``translated``, so none quotes a document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from ..store.mongo_errors import translated
from .vault import WrappedKey

VAULT_COLLECTION = "data_keys"

Document = dict[str, Any]
CollectionSource = Callable[[], Awaitable[AsyncCollection[Document]]]


def _document(entry: WrappedKey) -> Document:
    return {
        "_id": entry.tenant,
        "key_id": entry.key_id,
        "master_key_id": entry.master_key_id,
        "wrapped": entry.wrapped,
        "created_at": entry.created_at,
    }


def _entry(doc: Document) -> WrappedKey:
    return WrappedKey(doc["_id"], bytes(doc["key_id"]), doc["master_key_id"], bytes(doc["wrapped"]), doc["created_at"])


class MongoVault:
    """VaultBackend on a collection of the store's own database and client."""

    def __init__(self, collection: CollectionSource) -> None:
        self._collection = collection

    async def load(self, tenant: str) -> WrappedKey | None:
        collection = await self._collection()
        with translated("read a data key"):
            doc = await collection.find_one({"_id": tenant})
        return None if doc is None else _entry(doc)

    async def insert(self, entry: WrappedKey) -> WrappedKey:
        collection = await self._collection()
        with translated("store a data key"):
            try:
                await collection.insert_one(_document(entry))
                return entry
            except DuplicateKeyError:
                pass  # another request or replica created this tenant's key first: use theirs
            doc = await collection.find_one({"_id": entry.tenant})
        if doc is None:  # erased between the two calls: ours would be the only key, so store it
            return await self.insert(entry)
        return _entry(doc)

    async def delete(self, tenant: str) -> int:
        collection = await self._collection()
        with translated("delete a data key"):
            result = await collection.delete_one({"_id": tenant})
        return result.deleted_count

    async def entries(self) -> Sequence[WrappedKey]:
        collection = await self._collection()
        with translated("read the data keys"):
            return [_entry(doc) for doc in await collection.find({}).to_list()]

    async def rewrap(self, old: WrappedKey, new: WrappedKey) -> bool:
        collection = await self._collection()
        with translated("re-wrap a data key"):
            # Matched on the old wrapping: a key erased or re-wrapped meanwhile is left as it is.
            result = await collection.replace_one(
                {"_id": old.tenant, "master_key_id": old.master_key_id, "wrapped": old.wrapped}, _document(new)
            )
        return result.modified_count == 1

    async def clear(self) -> None:
        return None
