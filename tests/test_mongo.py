"""What only MongoStore does: indexes, BSON layout, TTL, one-round-trip chains, failures and timeouts."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from pymongo import ASCENDING, IndexModel
from pymongo.errors import OperationFailure
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from retention_middleware.store import StoreConfigurationError, StoreError, StoreRefused
from retention_middleware.store.mongo_errors import translated as _translated

from support.mongo_fixtures import FakeClock, MongoClient, MongoStoreFactory, response_record, wait_until
from support.mongo_server import MongoTestServer

# The driver's own traffic, not the store's: handshakes, heartbeats and session clean-up.
_BACKGROUND = {"hello", "ismaster", "isMaster", "ping", "endSessions", "buildInfo"}


class Commands(CommandListener):
    """Records the commands a client sends (pymongo's command monitoring)."""

    def __init__(self) -> None:
        self.events: list[CommandStartedEvent] = []

    def names(self) -> list[str]:
        return [event.command_name for event in self.events if event.command_name not in _BACKGROUND]

    def started(self, event: CommandStartedEvent) -> None:
        self.events.append(event)

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


async def _indexes(client: MongoClient, db: str, collection: str) -> dict[str, dict[str, Any]]:
    return {spec["name"]: dict(spec) async for spec in await client[db][collection].list_indexes()}


@pytest.mark.parametrize("collection", ["responses", "content"])
async def test_start_creates_the_two_named_indexes(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str, collection: str
) -> None:
    await make_mongo_store().start()
    indexes = await _indexes(mongo_client, mongo_db_name, collection)
    assert set(indexes) == {"_id_", "expires_at_ttl", "tenant_created_at"}
    assert dict(indexes["expires_at_ttl"]["key"]) == {"expires_at": 1}
    assert indexes["expires_at_ttl"]["expireAfterSeconds"] == 0
    assert list(indexes["tenant_created_at"]["key"].items()) == [("tenant", 1), ("created_at", 1)]
    assert "expireAfterSeconds" not in indexes["tenant_created_at"]


async def test_indexes_are_created_once_even_for_concurrent_first_operations(
    make_mongo_store: MongoStoreFactory,
) -> None:
    commands = Commands()
    store = make_mongo_store(event_listeners=(commands,))
    await asyncio.gather(*(store.get("tenant-a", f"resp_{i}") for i in range(10)))
    await store.start()
    assert commands.names().count("createIndexes") == 2  # one per collection, once


async def test_a_conflicting_ttl_index_stops_start_and_is_left_in_place(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str
) -> None:
    responses = mongo_client[mongo_db_name]["responses"]
    await responses.create_indexes(
        [IndexModel([("expires_at", ASCENDING)], name="expires_at_ttl", expireAfterSeconds=3600)]
    )
    store = make_mongo_store()
    with pytest.raises(StoreConfigurationError) as raised:
        await store.start()
    message = str(raised.value)
    assert "'expires_at_ttl'" in message and f"{mongo_db_name}.responses" in message
    assert "'expireAfterSeconds': 3600" in message and "'expireAfterSeconds': 0" in message
    assert "collMod" in message and "left in place" in message
    assert (await _indexes(mongo_client, mongo_db_name, "responses"))["expires_at_ttl"]["expireAfterSeconds"] == 3600
    # The fix the message gives works, and start then succeeds.
    await mongo_client[mongo_db_name].command(
        {"collMod": "responses", "index": {"name": "expires_at_ttl", "expireAfterSeconds": 0}}
    )
    await store.start()
    await store.put(response_record("resp_1", FakeClock()))


async def test_an_index_with_the_name_but_another_key_is_reported(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str
) -> None:
    content = mongo_client[mongo_db_name]["content"]
    await content.create_indexes([IndexModel([("created_at", ASCENDING)], name="tenant_created_at")])
    with pytest.raises(StoreConfigurationError, match=r"'tenant_created_at' on .*content has key \{'created_at': 1\}"):
        await make_mongo_store().start()
    assert "tenant_created_at" in await _indexes(mongo_client, mongo_db_name, "content")


async def test_the_same_key_under_another_name_is_reported(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str
) -> None:
    responses = mongo_client[mongo_db_name]["responses"]
    await responses.create_index([("expires_at", ASCENDING)], name="expires_at_1", expireAfterSeconds=0)
    with pytest.raises(StoreConfigurationError, match=r"as 'expires_at_1'.*dropIndex\('expires_at_1'\)"):
        await make_mongo_store().start()
    assert "expires_at_1" in await _indexes(mongo_client, mongo_db_name, "responses")


async def test_documents_have_the_documented_layout_and_content_round_trips_exactly(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str, store_clock: FakeClock
) -> None:
    awkward = {
        "$ref": "#/$defs/x",
        "a.b": {"$gt": 1},
        "text": "漢字 🚀",
        "big": [2**64 - 1, -(2**63)],
        "f": 0.1,
    }
    record = response_record("resp_1", store_clock, input_items=[awkward], response={"output": awkward})
    await make_mongo_store().put(record)
    raw = await mongo_client[mongo_db_name]["responses"].find_one({"_id": "resp_1"})
    assert raw is not None
    assert set(raw) == {
        "_id", "tenant", "created_at", "expires_at", "model", "status", "previous_response_id", "ancestors",
        "usage", "input_items", "response",
    }  # fmt: skip
    assert raw["expires_at"] == record.expires_at and isinstance(raw["created_at"], datetime)  # BSON dates
    assert raw["usage"] == record.usage and raw["ancestors"] == []
    # Content is orjson in BSON Binary: the exact bytes, with "$ref" and "a.b" never seen as fields.
    assert isinstance(raw["input_items"], bytes) and raw["input_items"] == orjson.dumps([awkward])
    assert orjson.loads(raw["response"]) == {"output": awkward}


async def test_expired_records_are_invisible_before_the_ttl_monitor_removes_them(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str, store_clock: FakeClock
) -> None:
    store = make_mongo_store()
    await store.put(response_record("resp_1", store_clock, ttl=timedelta(minutes=1)))
    store_clock.advance(timedelta(minutes=2))  # expired for the store; not yet in real time
    assert await store.get("tenant-a", "resp_1") is None
    assert await mongo_client[mongo_db_name]["responses"].find_one({"_id": "resp_1"}) is not None


async def test_the_ttl_monitor_physically_removes_expired_records(
    mongo_server: MongoTestServer,
    make_mongo_store: MongoStoreFactory,
    mongo_client: MongoClient,
    mongo_db_name: str,
) -> None:
    real_clock = FakeClock()
    store = make_mongo_store(clock=lambda: datetime.now(timezone.utc))
    await store.put(response_record("resp_short", real_clock, ttl=timedelta(milliseconds=400)))
    await store.put(response_record("resp_long", real_clock))
    raw = mongo_client[mongo_db_name]["responses"]
    assert await raw.count_documents({}) == 2

    async def removed() -> bool:
        return await raw.find_one({"_id": "resp_short"}) is None

    await wait_until(removed, timeout=10)
    assert await store.get("tenant-a", "resp_short") is None
    assert await raw.find_one({"_id": "resp_long"}) is not None
    assert mongo_server.ttl_deleted >= 1


async def test_get_chain_is_one_round_trip(make_mongo_store: MongoStoreFactory, store_clock: FakeClock) -> None:
    commands = Commands()
    store = make_mongo_store(event_listeners=(commands,))
    ids = [f"resp_{i}" for i in range(6)]
    for index, response_id in enumerate(ids):
        await store.put(response_record(response_id, store_clock, ancestors=tuple(ids[:index])))
    commands.events.clear()
    chain = await store.get_chain("tenant-a", ids[-1])
    assert chain.response is not None and list(chain.ancestors) == ids[:-1]
    assert commands.names() == ["aggregate"]


async def test_writes_use_the_configured_write_concern(
    make_mongo_store: MongoStoreFactory, store_clock: FakeClock
) -> None:
    commands = Commands()
    store = make_mongo_store(event_listeners=(commands,), mongo_write_concern="1")
    await store.put(response_record("resp_1", store_clock))
    await store.delete("tenant-a", "resp_1")
    await store.delete_tenant("tenant-a")
    writes = [e for e in commands.events if e.command_name in ("insert", "findAndModify", "delete")]
    assert [e.command_name for e in writes] == ["insert", "findAndModify", "delete"]
    assert all(e.command.get("writeConcern") == {"w": 1} for e in writes)
    majority = Commands()
    await make_mongo_store(event_listeners=(majority,)).put(response_record("resp_2", store_clock))
    insert = next(e for e in majority.events if e.command_name == "insert")
    assert insert.command["writeConcern"] == {"w": "majority"}


async def test_every_operation_carries_the_timeout_to_the_server(
    make_mongo_store: MongoStoreFactory, store_clock: FakeClock
) -> None:
    # timeoutMS bounds the whole operation on the client and is sent as maxTimeMS, so the server
    # gives up too instead of working on for a request that has already failed.
    commands = Commands()
    store = make_mongo_store(event_listeners=(commands,), mongo_timeout=timedelta(seconds=2))
    await store.put(response_record("resp_1", store_clock))
    await store.get("tenant-a", "resp_1")
    await store.get_chain("tenant-a", "resp_1")
    sent = [e for e in commands.events if e.command_name in ("insert", "find", "aggregate")]
    assert len(sent) == 3
    assert all(0 < e.command["maxTimeMS"] <= 2000 for e in sent)


async def test_a_stopped_server_gives_store_error_quickly_and_a_restart_recovers(
    mongo_server: MongoTestServer, make_mongo_store: MongoStoreFactory, store_clock: FakeClock
) -> None:
    store = make_mongo_store(mongo_timeout=timedelta(milliseconds=300))
    secret = response_record("resp_1", store_clock, input_items=[{"content": "SECRET-PROMPT"}])
    await store.put(secret)
    mongo_server.stop()
    for operation in (
        lambda: store.get("tenant-a", "resp_1"),
        lambda: store.put(response_record("resp_2", store_clock, input_items=["SECRET-PROMPT"])),
        lambda: store.get_chain("tenant-a", "resp_1"),
        lambda: store.delete("tenant-a", "resp_1"),
        store.check,
    ):
        began = time.monotonic()
        with pytest.raises(StoreError) as raised:
            await operation()
        assert time.monotonic() - began < 3, "a dead database must not hang a request"
        assert "SECRET" not in str(raised.value)
    mongo_server.restart()
    assert await store.get("tenant-a", "resp_1") == secret
    await store.check()


async def test_a_store_that_cannot_reach_mongodb_at_start_retries_on_first_use(
    mongo_server: MongoTestServer, make_mongo_store: MongoStoreFactory, store_clock: FakeClock
) -> None:
    mongo_server.stop()
    store = make_mongo_store(mongo_timeout=timedelta(milliseconds=300))
    with pytest.raises(StoreError, match="ServerSelectionTimeoutError"):
        await store.start()
    mongo_server.restart()
    await store.put(response_record("resp_1", store_clock))  # starts lazily now
    assert await store.get("tenant-a", "resp_1") is not None


@pytest.mark.parametrize(
    ("command", "data", "expected"),
    [
        ("insert", {"closeConnection": True}, "AutoReconnect"),
        ("find", {"blockConnection": True, "blockTimeMS": 1000}, "NetworkTimeout"),
        ("find", {"errorCode": 2}, "error code 2"),
    ],
    ids=["connection-closed", "server-too-slow", "operation-failure"],
)
async def test_driver_errors_become_store_errors(
    make_mongo_store: MongoStoreFactory,
    mongo_client: MongoClient,
    store_clock: FakeClock,
    command: str,
    data: dict[str, Any],
    expected: str,
) -> None:
    # mongod's failCommand fail point: the test server has it, a real mongod with enableTestCommands.
    store = make_mongo_store(mongo_timeout=timedelta(milliseconds=300))
    await store.put(response_record("resp_1", store_clock))
    fail_point = {"configureFailPoint": "failCommand", "data": {"failCommands": [command], **data}}
    try:
        await mongo_client.admin.command({**fail_point, "mode": "alwaysOn"})
    except OperationFailure:
        pytest.skip("this MongoDB has no fail points (start mongod with --setParameter enableTestCommands=1)")
    operation = store.get("tenant-a", "resp_1") if command == "find" else store.put(response_record("r2", store_clock))
    began = time.monotonic()
    with pytest.raises(StoreError, match=expected):
        await operation
    assert time.monotonic() - began < 3
    await mongo_client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})

    async def recovered() -> bool:
        # After a dropped connection the driver re-checks the server at most every 500 ms, longer
        # than this store's 300 ms timeout, so the first read may still fail: poll, bounded.
        try:
            return await store.get("tenant-a", "resp_1") is not None
        except StoreError:
            return False

    await wait_until(recovered, timeout=5)


def test_operation_failures_are_reported_by_code_only() -> None:
    # mongod's messages can quote document values (validation details, update errors).
    details = {
        "errmsg": "Document failed validation: SECRET",
        "code": 121,
        "codeName": "DocumentValidationFailure",
    }
    with pytest.raises(StoreError) as raised, _translated("store a response"):
        raise OperationFailure("Document failed validation: SECRET", 121, details)
    assert str(raised.value) == "MongoDB could not store a response: error code 121 DocumentValidationFailure"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


async def test_close_releases_the_client_and_the_store_starts_again_on_use(
    make_mongo_store: MongoStoreFactory, store_clock: FakeClock
) -> None:
    store = make_mongo_store()
    await store.put(response_record("resp_1", store_clock))
    await store.close()
    await store.close()
    assert await store.get("tenant-a", "resp_1") is not None  # MongoDB keeps what MemoryStore would not


async def test_the_test_server_refuses_what_it_does_not_implement(
    mongo_server: MongoTestServer, mongo_client: MongoClient
) -> None:
    with pytest.raises(OperationFailure, match="not supported by the test server") as raised:
        await mongo_client.admin.command("replSetGetStatus")
    assert raised.value.code == 59


async def test_refused_credentials_are_told_apart_from_an_unreachable_server(
    make_mongo_store: MongoStoreFactory,
    mongo_client: MongoClient,
    store_clock: FakeClock,
    mongo_server: MongoTestServer,
) -> None:
    store = make_mongo_store()
    await store.start()
    await mongo_client.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": {"times": 1},
            "data": {"failCommands": ["insert"], "errorCode": 18},
        }
    )
    with pytest.raises(StoreRefused) as refused:
        await store.put(response_record("resp_refused", store_clock))
    assert refused.value.code == "store_refused"
