"""MongoStore: stored responses and content records in MongoDB through pymongo's native async client.

One document per response (so a delete is one atomic operation) in the ``responses`` collection,
one per content record in ``content``. Each document carries its own ``expires_at``; a TTL index
with ``expireAfterSeconds=0`` lets MongoDB reclaim it, but every read filters on ``expires_at``
itself, because the TTL monitor only runs about once a minute.

Errors never carry document content: pymongo's ``OperationFailure`` text can quote document values
(validation details, update errors), so only its code and code name reach ``StoreError``
(``mongo_errors``). Records become documents in ``mongo_documents``; the indexes are declared and
their conflicts explained in ``mongo_indexes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from pymongo import ASCENDING, AsyncMongoClient, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConfigurationError, DuplicateKeyError
from pymongo.monitoring import (
    CommandListener,
    ConnectionPoolListener,
    ServerHeartbeatListener,
    ServerListener,
    TopologyListener,
)

from ..settings import RetentionSettings
from .base import (
    ContentRecord,
    ResponseChain,
    ResponsePage,
    StoreConfigurationError,
    StoredResponse,
    StoreError,
)
from .driver_logs import install_command_document_filter
from .mongo_documents import Document, aware, content_document, content_record, response_document, stored_response
from .mongo_errors import translated
from .mongo_indexes import ensure_indexes
from .mongo_listing import list_page

EventListener = CommandListener | ConnectionPoolListener | ServerHeartbeatListener | ServerListener | TopologyListener

RESPONSES = "responses"
CONTENT = "content"
# Large enough that a whole chain comes back in the aggregate's first batch (the server still caps
# a batch at 16 MiB); mongod's default of 101 documents would cost a getMore on long conversations.
_CHAIN_BATCH = 100_000


def _strings(*values: object) -> None:
    # Ids are validated upstream; this keeps a stray dict from ever becoming a query operator.
    if not all(isinstance(value, str) for value in values):
        raise TypeError("tenants and ids must be strings")


@dataclass(frozen=True)
class _Handles:
    client: AsyncMongoClient[Document]
    responses: AsyncCollection[Document]
    content: AsyncCollection[Document]


class MongoStore:
    """The ResponseStore on MongoDB: one ``AsyncMongoClient`` per store, built in ``start()``.

    Every MongoDB timeout is ``settings.mongo_timeout`` (server selection, connect, socket and the
    per-operation ``timeoutMS``), so a dead database fails a request with ``StoreError`` instead of
    hanging it. Inserts and deletes use ``settings.mongo_write_concern``. ``event_listeners`` are
    handed to the client (pymongo monitoring), e.g. for metrics.
    """

    def __init__(
        self,
        settings: RetentionSettings,
        *,
        clock: Callable[[], datetime] | None = None,
        event_listeners: Sequence[EventListener] = (),
    ) -> None:
        self._settings = settings
        install_command_document_filter()
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._event_listeners = list(event_listeners)
        self._handles: _Handles | None = None
        self._started = False  # the indexes exist (checked once per store, not per request)
        self._start_lock = asyncio.Lock()

    def _new_client(self) -> AsyncMongoClient[Document]:
        millis = max(1, round(self._settings.mongo_timeout.total_seconds() * 1000))
        try:
            return AsyncMongoClient(
                self._settings.store,
                tz_aware=True,
                tzinfo=timezone.utc,
                appname="retention-middleware",
                serverSelectionTimeoutMS=millis,
                connectTimeoutMS=millis,
                socketTimeoutMS=millis,
                timeoutMS=millis,
                event_listeners=self._event_listeners,
            )
        except ConfigurationError as exc:  # a malformed URI or URI option; says what, not the password
            raise StoreConfigurationError(f"store (RETENTION_STORE): {exc}") from None

    def _connect(self) -> _Handles:
        client = self._new_client()  # no I/O yet: the driver connects in the background
        concern = self._settings.mongo_write_concern
        write_concern = WriteConcern(w=int(concern) if concern.isdigit() else concern)
        database = client.get_database(self._settings.mongo_db)
        return _Handles(
            client,
            database.get_collection(RESPONSES, write_concern=write_concern),
            database.get_collection(CONTENT, write_concern=write_concern),
        )

    async def start(self) -> None:
        """Connect and create the indexes. Idempotent; every operation calls it first.

        If MongoDB is unreachable this raises StoreError and the next call tries again, on the same
        client: a database that is down at boot must not cost a new client per request.
        """
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            handles = self._handles = self._handles or self._connect()
            for collection in (handles.responses, handles.content):
                await ensure_indexes(collection)
            self._started = self._handles is handles  # False if close() ran meanwhile

    async def close(self) -> None:
        handles, self._handles, self._started = self._handles, None, False
        if handles is not None:
            await handles.client.close()

    async def _ready(self) -> _Handles:
        if not self._started:
            await self.start()
        if self._handles is None:  # only if close() ran while start() was awaiting
            raise StoreError("the MongoDB store was closed")
        return self._handles

    async def collection(self, name: str) -> AsyncCollection[Document]:
        """Another collection of this store's database, on the same client with the same write
        concern (the conversation store keeps its own collections beside the responses)."""
        handles = await self._ready()
        database = handles.client.get_database(self._settings.mongo_db)
        return database.get_collection(name, write_concern=handles.responses.write_concern)

    async def check(self, needed: int = 0) -> None:
        """Raise StoreError unless MongoDB answers now: one ``ping``, bounded by ``mongo_timeout``.

        The driver's monitor is not enough: a server that accepts connections but has stopped
        answering still looks writable to it until its next heartbeat fails (seconds later).
        """
        handles = await self._ready()
        with translated("reach a writable server"):
            await handles.client.admin.command("ping")

    def _now(self) -> datetime:
        return aware(self._clock(), "clock()")

    def _live(self, tenant: str, *ids: str) -> Document:
        """The filter for this tenant's unexpired documents, as of the store's clock."""
        _strings(tenant, *ids)
        return {"tenant": tenant, "expires_at": {"$gt": self._now()}}

    # -- stored responses -------------------------------------------------------------------------

    async def put(self, record: StoredResponse) -> None:
        document = response_document(record)
        handles = await self._ready()
        with translated("store a response", write=True):
            try:
                await handles.responses.insert_one(document)
            except DuplicateKeyError:
                raise StoreError(f"a response with id {record.id!r} is already stored") from None

    async def replace(self, record: StoredResponse) -> bool:
        document = response_document(record)
        live = self._live(record.tenant, record.id)
        handles = await self._ready()
        with translated("store a response"):
            # Never an upsert: a record deleted meanwhile, on whichever replica, stays deleted.
            result = await handles.responses.replace_one({"_id": record.id, **live}, document)
        return result.matched_count == 1

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        query = {"_id": response_id, **self._live(tenant, response_id)}
        handles = await self._ready()
        with translated("read a response"):
            document = await handles.responses.find_one(query)
        return None if document is None else stored_response(document)

    async def get_chain(self, tenant: str, response_id: str) -> ResponseChain:
        live = self._live(tenant, response_id)
        # One aggregate, one round trip: find the response, gather its id and its ancestors' ids into
        # one array ($group/$push, because mongomock does not evaluate array literals), fetch them all
        # with $lookup, and unwind at once so mongod coalesces $lookup+$unwind: each looked-up
        # document travels alone and a long conversation never builds one 16 MiB result document.
        pipeline: list[Document] = [
            {"$match": {"_id": response_id, **live}},
            {"$group": {"_id": None, "own": {"$push": "$_id"}, "ancestors": {"$first": "$ancestors"}}},
            {"$project": {"_id": 0, "lineage": {"$concatArrays": ["$ancestors", "$own"]}}},
            {"$lookup": {"from": RESPONSES, "localField": "lineage", "foreignField": "_id", "as": "doc"}},
            {"$unwind": "$doc"},
            {"$replaceRoot": {"newRoot": "$doc"}},
            {"$match": live},  # another tenant's or an expired ancestor counts as missing
        ]
        handles = await self._ready()
        with translated("read a conversation"):
            cursor = await handles.responses.aggregate(pipeline, batchSize=_CHAIN_BATCH)
            documents = await cursor.to_list()
        found = {doc["_id"]: doc for doc in documents}
        root_doc = found.pop(response_id, None)
        if root_doc is None:
            return ResponseChain(response=None, ancestors={})
        root = stored_response(root_doc)
        ancestors = {i: stored_response(found[i]) for i in root.ancestors if i in found}
        return ResponseChain(response=root, ancestors=ancestors)

    async def delete(self, tenant: str, response_id: str) -> bool:
        live = self._live(tenant, response_id)
        handles = await self._ready()
        with translated("delete a response"):
            # Remove the tenant's document even if it has expired (deleted means gone now, not at the
            # next TTL pass); only an unexpired one counts as "this tenant had it".
            removed = await handles.responses.find_one_and_delete(
                {"_id": response_id, "tenant": tenant}, projection={"_id": 0, "expires_at": 1}
            )
        return removed is not None and removed["expires_at"] > live["expires_at"]["$gt"]

    async def delete_tenant(self, tenant: str) -> int:
        _strings(tenant)
        handles = await self._ready()
        with translated("delete a tenant's responses"):
            # Erasure removes expired-but-unreclaimed documents too, so the count includes them.
            result = await handles.responses.delete_many({"tenant": tenant})
        return result.deleted_count

    async def list_responses(
        self, tenant: str, *, limit: int, order: str, after: str | None = None, before: str | None = None
    ) -> ResponsePage | None:
        live = self._live(tenant, *(cursor for cursor in (after, before) if cursor is not None))
        handles = await self._ready()
        return await list_page(handles.responses, live, limit=limit, order=order, after=after, before=before)

    # -- content records --------------------------------------------------------------------------

    async def put_content(self, record: ContentRecord) -> None:
        document = content_document(record)
        handles = await self._ready()
        with translated("store a content record", write=True):
            try:
                await handles.content.insert_one(document)
            except DuplicateKeyError:
                raise StoreError(f"a content record with id {record.id!r} is already stored") from None

    async def delete_tenant_content(self, tenant: str) -> int:
        _strings(tenant)
        handles = await self._ready()
        with translated("delete a tenant's content records"):
            result = await handles.content.delete_many({"tenant": tenant})
        return result.deleted_count

    async def count_content(self, tenant: str) -> int:
        query = self._live(tenant)
        handles = await self._ready()
        with translated("count content records"):
            return await handles.content.count_documents(query)

    async def find_content(self, tenant: str) -> Sequence[ContentRecord]:
        query = self._live(tenant)
        handles = await self._ready()
        with translated("read content records"):
            cursor = handles.content.find(query).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
            documents = await cursor.to_list()
        return [content_record(doc) for doc in documents]
