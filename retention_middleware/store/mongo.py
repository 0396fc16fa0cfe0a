"""MongoStore: stored responses and content records in MongoDB through pymongo's native async client.

One document per response (so a delete is one atomic operation) in the ``responses`` collection,
one per content record in ``content``. Each document carries its own ``expires_at``; a TTL index
with ``expireAfterSeconds=0`` lets MongoDB reclaim it, but every read filters on ``expires_at``
itself, because the TTL monitor only runs about once a minute.

Errors never carry document content: pymongo's ``OperationFailure`` text can quote document values
(validation details, update errors), so only its code and code name reach ``StoreError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from bson.errors import BSONError
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConfigurationError, DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.monitoring import (
    CommandListener,
    ConnectionPoolListener,
    ServerHeartbeatListener,
    ServerListener,
    TopologyListener,
)

from ..settings import RetentionSettings
from .base import ContentRecord, ResponseChain, StoreConfigurationError, StoredResponse, StoreError
from .driver_logs import install_command_document_filter

Document = dict[str, Any]
EventListener = CommandListener | ConnectionPoolListener | ServerHeartbeatListener | ServerListener | TopologyListener

RESPONSES = "responses"
CONTENT = "content"
TTL_INDEX = "expires_at_ttl"
TENANT_INDEX = "tenant_created_at"
# Created once in start(), never per request, each with an explicit name so a conflict is reported
# by name. expireAfterSeconds=0: every document carries its own expiry in expires_at.
INDEXES = (
    IndexModel([("expires_at", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=0),
    IndexModel([("tenant", ASCENDING), ("created_at", ASCENDING)], name=TENANT_INDEX),
)
_INDEX_CONFLICT_CODES = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict
# Large enough that a whole chain comes back in the aggregate's first batch (the server still caps
# a batch at 16 MiB); mongod's default of 101 documents would cost a getMore on long conversations.
_CHAIN_BATCH = 100_000


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Turn every pymongo/BSON failure into StoreError with a message that holds no content."""
    try:
        yield
    except OperationFailure as exc:  # includes WriteError, ExecutionTimeout, WriteConcernError
        code_name = (exc.details or {}).get("codeName") or ""
        message = f"MongoDB could not {operation}: error code {exc.code} {code_name}"
        raise StoreError(message.rstrip()) from None
    except PyMongoError as exc:
        # Network, server selection, timeouts: these messages describe hosts and timeouts, not data.
        raise StoreError(f"MongoDB could not {operation}: {type(exc).__name__}: {exc}") from exc
    except (BSONError, OverflowError) as exc:  # e.g. an int beyond 64 bits in usage; the text may quote it
        message = f"could not {operation}: the record cannot be encoded as BSON ({type(exc).__name__})"
        raise StoreError(message) from None


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got a naive datetime")
    return moment


def _strings(*values: object) -> None:
    # Ids are validated upstream; this keeps a stray dict from ever becoming a query operator.
    if not all(isinstance(value, str) for value in values):
        raise TypeError("tenants and ids must be strings")


def _json_binary(value: Any, what: str) -> bytes:
    # Content is stored as orjson bytes, which BSON carries as Binary (subtype 0), not as a
    # sub-document: JSON keys such as "$ref" or "a.b" inside tool schemas, key order and numbers then
    # round-trip exactly, and the server never reads user content as field paths or operators.
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        raise StoreError(f"{what} is not JSON-serialisable") from None


def _from_json(blob: bytes, record_id: str) -> Any:
    try:
        return orjson.loads(blob)
    except orjson.JSONDecodeError:
        raise StoreError(f"stored record {record_id!r} holds content that is not valid JSON") from None


def response_document(record: StoredResponse) -> Document:
    return {
        "_id": record.id,
        "tenant": record.tenant,
        "created_at": _aware(record.created_at, "created_at"),
        "expires_at": _aware(record.expires_at, "expires_at"),
        "model": record.model,
        "status": record.status,
        "previous_response_id": record.previous_response_id,
        "ancestors": list(record.ancestors),
        "usage": record.usage,
        "input_items": _json_binary(record.input_items, "input_items"),
        "response": _json_binary(record.response, "response"),
    }


def stored_response(doc: Document) -> StoredResponse:
    return StoredResponse(
        id=doc["_id"],
        tenant=doc["tenant"],
        created_at=doc["created_at"],
        expires_at=doc["expires_at"],
        model=doc.get("model"),
        status=doc.get("status"),
        previous_response_id=doc.get("previous_response_id"),
        ancestors=tuple(doc.get("ancestors") or ()),
        input_items=_from_json(doc["input_items"], doc["_id"]),
        response=_from_json(doc["response"], doc["_id"]),
        usage=doc.get("usage"),
    )


def content_document(record: ContentRecord) -> Document:
    return {
        "_id": record.id,
        "tenant": record.tenant,
        "model": record.model,
        "endpoint": record.endpoint,
        "reason": record.reason,
        "created_at": _aware(record.created_at, "created_at"),
        "expires_at": _aware(record.expires_at, "expires_at"),
        "request": _json_binary(record.request, "request"),
        "response": _json_binary(record.response, "response"),
    }


def content_record(doc: Document) -> ContentRecord:
    return ContentRecord(
        id=doc["_id"],
        tenant=doc["tenant"],
        model=doc.get("model"),
        endpoint=doc["endpoint"],
        reason=doc["reason"],
        created_at=doc["created_at"],
        expires_at=doc["expires_at"],
        request=_from_json(doc["request"], doc["_id"]),
        response=_from_json(doc["response"], doc["_id"]),
    )


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
                await _ensure_indexes(collection)
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

    async def check(self) -> None:
        """Raise StoreError unless MongoDB looks writable now.

        Free while the driver's monitor sees a writable server; otherwise one ``ping`` (which waits at
        most ``mongo_timeout`` for a primary) decides.
        """
        handles = await self._ready()
        if handles.client.topology_description.has_writable_server():
            return
        with _translated("reach a writable server"):
            await handles.client.admin.command("ping")

    def _now(self) -> datetime:
        return _aware(self._clock(), "clock()")

    def _live(self, tenant: str, *ids: str) -> Document:
        """The filter for this tenant's unexpired documents, as of the store's clock."""
        _strings(tenant, *ids)
        return {"tenant": tenant, "expires_at": {"$gt": self._now()}}

    # -- stored responses -------------------------------------------------------------------------

    async def put(self, record: StoredResponse) -> None:
        document = response_document(record)
        handles = await self._ready()
        with _translated("store a response"):
            try:
                await handles.responses.insert_one(document)
            except DuplicateKeyError:
                raise StoreError(f"a response with id {record.id!r} is already stored") from None

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        query = {"_id": response_id, **self._live(tenant, response_id)}
        handles = await self._ready()
        with _translated("read a response"):
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
        with _translated("read a conversation"):
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
        with _translated("delete a response"):
            # Remove the tenant's document even if it has expired (deleted means gone now, not at the
            # next TTL pass); only an unexpired one counts as "this tenant had it".
            removed = await handles.responses.find_one_and_delete(
                {"_id": response_id, "tenant": tenant}, projection={"_id": 0, "expires_at": 1}
            )
        return removed is not None and removed["expires_at"] > live["expires_at"]["$gt"]

    async def delete_tenant(self, tenant: str) -> int:
        _strings(tenant)
        handles = await self._ready()
        with _translated("delete a tenant's responses"):
            # Erasure removes expired-but-unreclaimed documents too, so the count includes them.
            result = await handles.responses.delete_many({"tenant": tenant})
        return result.deleted_count

    # -- content records --------------------------------------------------------------------------

    async def put_content(self, record: ContentRecord) -> None:
        document = content_document(record)
        handles = await self._ready()
        with _translated("store a content record"):
            try:
                await handles.content.insert_one(document)
            except DuplicateKeyError:
                raise StoreError(f"a content record with id {record.id!r} is already stored") from None

    async def delete_tenant_content(self, tenant: str) -> int:
        _strings(tenant)
        handles = await self._ready()
        with _translated("delete a tenant's content records"):
            result = await handles.content.delete_many({"tenant": tenant})
        return result.deleted_count

    async def count_content(self, tenant: str) -> int:
        query = self._live(tenant)
        handles = await self._ready()
        with _translated("count content records"):
            return await handles.content.count_documents(query)

    async def find_content(self, tenant: str) -> Sequence[ContentRecord]:
        query = self._live(tenant)
        handles = await self._ready()
        with _translated("read content records"):
            cursor = handles.content.find(query).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
            documents = await cursor.to_list()
        return [content_record(doc) for doc in documents]


# -- indexes ---------------------------------------------------------------------------------------


async def _ensure_indexes(collection: AsyncCollection[Document]) -> None:
    """Create the store's indexes; an existing conflicting index is reported, never dropped."""
    with _translated(f"create the indexes of {collection.full_name}"):
        try:
            await collection.create_indexes(list(INDEXES))
        except OperationFailure as exc:
            if exc.code not in _INDEX_CONFLICT_CODES:
                raise
            raise StoreConfigurationError(await _describe_conflict(collection, exc)) from None


_IGNORED_INDEX_FIELDS = frozenset({"v", "key", "name", "ns", "background"})


def _options(spec: Mapping[str, Any]) -> Document:
    return {k: v for k, v in spec.items() if k not in _IGNORED_INDEX_FIELDS}


async def _describe_conflict(collection: AsyncCollection[Document], exc: OperationFailure) -> str:
    """Which index conflicts, what differs, and how an operator fixes it by hand."""
    ns, name = collection.full_name, collection.name
    leave = "It was left in place: the middleware never drops or changes an index itself."
    try:
        existing = {spec["name"]: spec async for spec in await collection.list_indexes()}
    except PyMongoError:
        existing = {}
    for model in INDEXES:
        wanted = model.document
        key, index = dict(wanted["key"]), wanted["name"]
        same_name = existing.get(index)
        same_key = next((s for s in existing.values() if dict(s["key"]) == key and s["name"] != index), None)
        if same_name is not None and dict(same_name["key"]) != key:
            return (
                f"index {index!r} on {ns} has key {dict(same_name['key'])}, but retention-middleware needs "
                f"{key} under that name. {leave} Drop or rename it by hand "
                f"(db.{name}.dropIndex({index!r})), then start again."
            )
        if same_name is not None and _options(same_name) != _options(wanted):
            fix = f"db.{name}.dropIndex({index!r})"
            if "expireAfterSeconds" in wanted and set(_options(same_name)) <= {"expireAfterSeconds"}:
                fix = (
                    f"db.runCommand({{collMod: {name!r}, index: {{name: {index!r}, expireAfterSeconds: "
                    f"{wanted['expireAfterSeconds']}}}}}) (or {fix})"
                )
            return (
                f"index {index!r} on {ns} exists with options {_options(same_name)}, but "
                f"retention-middleware needs {_options(wanted)} (each record carries its own "
                f"expires_at). {leave} Change it with {fix}, then start again."
            )
        if same_key is not None:
            return (
                f"an index on {key} already exists on {ns} as {same_key['name']!r} with options "
                f"{_options(same_key)}; retention-middleware needs it named {index!r} with options "
                f"{_options(wanted)}. {leave} Drop it by hand (db.{name}.dropIndex({same_key['name']!r})), "
                "then start again."
            )
    code_name = (exc.details or {}).get("codeName", "")
    return (
        f"creating the indexes {[m.document['name'] for m in INDEXES]} on {ns} conflicts with an existing "
        f"index (error code {exc.code} {code_name}). {leave} Compare db.{name}.getIndexes() with them "
        "and fix it by hand, then start again."
    )
