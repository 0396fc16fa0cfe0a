"""Pytest fixtures for the stores and MongoDB (loaded as a plugin by conftest.py).

Every MongoDB test runs against a fresh wire-protocol test server (``mongo_server.py``), or, when
``RETENTION_TEST_MONGODB_URI`` is set, against that real MongoDB instead; tests that need to stop
the server or its fast TTL monitor then skip. Each test gets its own database name, dropped after.
Fixtures are function-scoped, so each ``AsyncMongoClient`` lives and dies in its test's event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from retention_middleware.settings import RetentionSettings
from retention_middleware.store import ContentRecord, MemoryStore, MongoStore, ResponseStore, StoredResponse
from retention_middleware.store.mongo import EventListener

from .mongo_server import MongoTestServer

REAL_MONGODB_ENV = "RETENTION_TEST_MONGODB_URI"
TTL_INTERVAL = 0.2  # the test server's TTL monitor period (mongod's is 60 s)

MongoClient = AsyncMongoClient[dict[str, Any]]


MONGO_TENANT_SECRET = "mongo-fixture-tenant-secret-0123456789"


def real_mongodb_uri() -> str | None:
    return os.environ.get(REAL_MONGODB_ENV) or None


class FakeClock:
    """An injectable clock that only moves when told to; starts at the real time, in UTC.

    The start is whole milliseconds, as BSON keeps them, so records compare equal after a round trip.
    """

    def __init__(self, start: datetime | None = None) -> None:
        now = datetime.now(timezone.utc)
        self.now = start or now.replace(microsecond=now.microsecond - now.microsecond % 1000)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def response_record(
    response_id: str,
    clock: Callable[[], datetime],
    *,
    tenant: str = "tenant-a",
    ttl: timedelta = timedelta(days=30),
    ancestors: tuple[str, ...] = (),
    input_items: list[Any] | None = None,
    response: dict[str, Any] | None = None,
) -> StoredResponse:
    """A stored turn as the Responses handler would build it, created at ``clock()``."""
    created = clock()
    return StoredResponse(
        id=response_id,
        tenant=tenant,
        created_at=created,
        expires_at=created + ttl,
        model="demo-model",
        status="completed",
        previous_response_id=ancestors[-1] if ancestors else None,
        ancestors=ancestors,
        input_items=input_items
        if input_items is not None
        else [{"type": "message", "role": "user", "content": f"question for {response_id}"}],
        response=response
        if response is not None
        else {"id": response_id, "object": "response", "output": [{"type": "message", "content": "answer"}]},
        usage={"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
    )


def content_record(
    record_id: str,
    clock: Callable[[], datetime],
    *,
    tenant: str = "tenant-a",
    ttl: timedelta = timedelta(days=30),
) -> ContentRecord:
    created = clock()
    return ContentRecord(
        id=record_id,
        tenant=tenant,
        model="demo-model",
        endpoint="/v1/chat/completions",
        reason="opt_in",
        created_at=created,
        expires_at=created + ttl,
        request={"messages": [{"role": "user", "content": f"prompt {record_id}"}]},
        response={"choices": [{"message": {"content": f"reply {record_id}"}}]},
    )


async def wait_until(predicate: Callable[[], Awaitable[bool]], *, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds, failing after ``timeout`` seconds (never an open-ended sleep)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


@pytest.fixture
def store_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mongo_server() -> Iterator[MongoTestServer]:
    """A fresh test server for this test; skipped when the tests run against a real MongoDB."""
    if real_mongodb_uri():
        pytest.skip(f"needs the wire-protocol test server (stop/restart, fast TTL); {REAL_MONGODB_ENV} is set")
    server = MongoTestServer(ttl_interval=TTL_INTERVAL).start()
    try:
        yield server
    finally:
        server.close()
    assert server.errors == [], "the test server failed internally:\n" + "\n".join(server.errors)


@pytest.fixture
def mongo_uri(request: pytest.FixtureRequest) -> str:
    real = real_mongodb_uri()
    if real:
        return real
    server: MongoTestServer = request.getfixturevalue("mongo_server")
    return server.uri


@pytest.fixture
async def mongo_db_name(request: pytest.FixtureRequest, mongo_uri: str) -> AsyncIterator[str]:
    """A database name no other test uses; the database is dropped afterwards."""
    name = f"retention_test_{uuid.uuid4().hex[:12]}"
    server: MongoTestServer | None = None if real_mongodb_uri() else request.getfixturevalue("mongo_server")
    yield name
    if server is not None and not server.running:
        return  # a test left its private server stopped; the server and its data go away with it
    client: MongoClient = AsyncMongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture
async def mongo_client(mongo_uri: str) -> AsyncIterator[MongoClient]:
    """A plain client for looking at what the store really wrote (tz-aware, like the store's)."""
    client: MongoClient = AsyncMongoClient(mongo_uri, tz_aware=True, tzinfo=timezone.utc)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def mongo_settings(mongo_uri: str, mongo_db_name: str) -> RetentionSettings:
    # A MongoDB store needs a way to tell callers apart (or an explicit shared tenancy): a fixed secret,
    # as a deployment would have.
    return RetentionSettings(
        store=mongo_uri, mongo_db=mongo_db_name, mongo_timeout=timedelta(seconds=5), tenant_secret=MONGO_TENANT_SECRET
    )


MongoStoreFactory = Callable[..., MongoStore]


@pytest.fixture
async def make_mongo_store(
    mongo_settings: RetentionSettings, store_clock: FakeClock
) -> AsyncIterator[MongoStoreFactory]:
    """Build MongoStores on this test's database: ``make_mongo_store(clock=..., event_listeners=...,
    **settings_overrides)``; the clock defaults to ``store_clock``. All are closed afterwards."""
    stores: list[MongoStore] = []

    def make(
        *,
        clock: Callable[[], datetime] | None = None,
        event_listeners: tuple[EventListener, ...] = (),
        **overrides: Any,
    ) -> MongoStore:
        settings = dataclasses.replace(mongo_settings, **overrides)
        store = MongoStore(settings, clock=clock or store_clock, event_listeners=event_listeners)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def memory_store(store_clock: FakeClock) -> AsyncIterator[MemoryStore]:
    store = MemoryStore(clock=store_clock)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=["memory", "mongo"])
def store(request: pytest.FixtureRequest) -> ResponseStore:
    """Each store kind on ``store_clock``, not yet started: every test also exercises the lazy start.

    A plain fixture choosing between async ones: pytest-asyncio cannot resolve an async fixture from
    inside another one's coroutine.
    """
    if request.param == "memory":
        memory: MemoryStore = request.getfixturevalue("memory_store")
        return memory
    factory: MongoStoreFactory = request.getfixturevalue("make_mongo_store")
    return factory()
