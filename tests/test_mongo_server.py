"""The wire-protocol test server itself, driven through the real AsyncMongoClient.

If the server quietly got something wrong, every store test built on it would be worthless, so the
commands the store uses are checked here against what mongod answers.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import Binary, Int64, ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from support.mongo_fixtures import MongoClient, wait_until
from support.mongo_server import CommandBackend, MongoTestServer

pytestmark = pytest.mark.usefixtures("mongo_server")  # test-server only: never a real MongoDB

Doc = dict[str, Any]


@pytest.fixture
async def people(mongo_client: MongoClient, mongo_db_name: str) -> Any:
    collection = mongo_client[mongo_db_name]["people"]
    await collection.insert_many(
        [
            {"_id": 1, "name": "ada", "age": 36, "team": "x"},
            {"_id": 2, "name": "bob", "age": 25, "team": "y"},
            {"_id": 3, "name": "cy", "age": 41, "team": "x"},
            {"_id": 4, "name": "di", "age": 30, "team": "x"},
        ]
    )
    return collection


async def test_find_with_filter_sort_skip_limit_and_projection(people: Any) -> None:
    cursor = people.find({"team": "x"}, {"name": 1, "_id": 0}).sort("age", DESCENDING).skip(1).limit(2)
    assert await cursor.to_list() == [{"name": "ada"}, {"name": "di"}]
    assert await people.find_one({"_id": 2}) == {"_id": 2, "name": "bob", "age": 25, "team": "y"}
    assert await people.find_one({"_id": 99}) is None


async def test_small_batches_are_fetched_with_get_more_and_abandoned_cursors_killed(people: Any) -> None:
    names = [doc["name"] async for doc in people.find().sort("_id", ASCENDING).batch_size(1)]
    assert names == ["ada", "bob", "cy", "di"]
    cursor = people.find().batch_size(2)
    await cursor.next()
    await cursor.close()  # sends killCursors for the rest


async def test_a_missing_collection_finds_nothing(mongo_client: MongoClient, mongo_db_name: str) -> None:
    missing = mongo_client[mongo_db_name]["nothing_here"]
    assert await missing.find({}).to_list() == []
    assert await missing.count_documents({}) == 0


async def test_updates_replacements_and_upserts(people: Any) -> None:
    result = await people.update_many({"team": "x"}, {"$inc": {"age": 1}})
    assert (result.matched_count, result.modified_count) == (3, 3)
    await people.replace_one({"_id": 2}, {"name": "bea"})
    assert await people.find_one({"_id": 2}) == {"_id": 2, "name": "bea"}
    upserted = await people.update_one({"_id": 9}, {"$set": {"name": "new"}}, upsert=True)
    assert upserted.upserted_id == 9
    after = await people.find_one_and_update({"_id": 1}, {"$set": {"age": 0}}, return_document=ReturnDocument.AFTER)
    assert after["age"] == 0


async def test_deletes_with_and_without_limit(people: Any) -> None:
    assert (await people.delete_one({"team": "x"})).deleted_count == 1
    assert (await people.delete_many({"team": "x"})).deleted_count == 2
    assert await people.find_one_and_delete({"_id": 2}, projection={"name": 1}) == {"_id": 2, "name": "bob"}
    assert await people.find_one_and_delete({"_id": 2}) is None
    assert await people.count_documents({}) == 0


async def test_counts(people: Any) -> None:
    assert await people.count_documents({"team": "x"}) == 3
    assert await people.count_documents({}, skip=1, limit=2) == 2
    assert await people.estimated_document_count() == 4


async def test_aggregate_match_lookup_sort_limit_project_count(
    people: Any, mongo_client: MongoClient, mongo_db_name: str
) -> None:
    teams = mongo_client[mongo_db_name]["teams"]
    await teams.insert_many([{"_id": "x", "title": "Team X"}, {"_id": "y", "title": "Team Y"}])
    pipeline: list[Doc] = [
        {"$match": {"age": {"$gte": 30}}},
        {"$lookup": {"from": "teams", "localField": "team", "foreignField": "_id", "as": "t"}},
        {"$sort": {"age": 1}},
        {"$limit": 2},
        {"$project": {"_id": 0, "name": 1, "t.title": 1}},
    ]
    rows = await (await people.aggregate(pipeline)).to_list()
    assert rows == [{"name": "di", "t": [{"title": "Team X"}]}, {"name": "ada", "t": [{"title": "Team X"}]}]
    counted = await (await people.aggregate([{"$match": {"team": "x"}}, {"$count": "n"}])).to_list()
    assert counted == [{"n": 3}]


async def test_a_duplicate_id_is_a_duplicate_key_error(people: Any) -> None:
    with pytest.raises(DuplicateKeyError) as raised:
        await people.insert_one({"_id": 1})
    assert raised.value.code == 11000
    with pytest.raises(BulkWriteError) as bulk:
        await people.insert_many([{"_id": 10}, {"_id": 2}, {"_id": 11}])  # ordered: stops at the error
    assert bulk.value.details["nInserted"] == 1
    assert bulk.value.details["writeErrors"][0]["index"] == 1
    assert await people.find_one({"_id": 11}) is None


async def test_bson_types_round_trip(mongo_client: MongoClient, mongo_db_name: str) -> None:
    collection = mongo_client[mongo_db_name]["types"]
    when = datetime(2031, 2, 3, 4, 5, 6, 789_000, tzinfo=timezone.utc)
    doc = {
        "_id": ObjectId(),
        "when": when,
        "raw": b"\x00\xffbytes",
        "uuidish": Binary(b"0123456789abcdef", 4),
        "big": Int64(2**62),
        "nested": {"list": [1, "two", None, 3.5, True]},
    }
    await collection.insert_one(doc)
    back = await collection.find_one({"when": when})
    assert back == doc
    assert back is not None and back["when"].tzinfo is not None


async def test_create_and_list_indexes(people: Any) -> None:
    created = await people.create_indexes(
        [
            IndexModel([("age", ASCENDING)], name="age_ttl", expireAfterSeconds=60),
            IndexModel([("team", ASCENDING), ("age", DESCENDING)], name="team_age", unique=False),
        ]
    )
    assert created == ["age_ttl", "team_age"]
    indexes = {spec["name"]: spec async for spec in await people.list_indexes()}
    assert list(indexes) == ["_id_", "age_ttl", "team_age"]
    assert indexes["age_ttl"]["expireAfterSeconds"] == 60
    assert list(indexes["team_age"]["key"].items()) == [("team", 1), ("age", -1)]
    assert await people.create_indexes([IndexModel([("age", ASCENDING)], name="age_ttl", expireAfterSeconds=60)])


@pytest.mark.parametrize(
    ("model", "code"),
    [
        (IndexModel([("age", ASCENDING)], name="age_ttl", expireAfterSeconds=5), 85),  # other options
        (IndexModel([("name", ASCENDING)], name="age_ttl", expireAfterSeconds=60), 86),  # other key
        (IndexModel([("age", ASCENDING)], name="age_other"), 85),  # same key, other name
    ],
    ids=["options", "key", "name"],
)
async def test_conflicting_indexes_fail_like_mongod(people: Any, model: IndexModel, code: int) -> None:
    await people.create_index([("age", ASCENDING)], name="age_ttl", expireAfterSeconds=60)
    with pytest.raises(OperationFailure) as raised:
        await people.create_indexes([model])
    assert raised.value.code == code
    assert [spec["name"] async for spec in await people.list_indexes()] == ["_id_", "age_ttl"]


async def test_drop_indexes_and_coll_mod(people: Any, mongo_client: MongoClient, mongo_db_name: str) -> None:
    await people.create_index([("age", ASCENDING)], name="age_ttl", expireAfterSeconds=60)
    reply = await mongo_client[mongo_db_name].command(
        {"collMod": "people", "index": {"name": "age_ttl", "expireAfterSeconds": 0}}
    )
    assert (reply["expireAfterSeconds_old"], reply["expireAfterSeconds_new"]) == (60, 0)
    await people.drop_index("age_ttl")
    assert [spec["name"] async for spec in await people.list_indexes()] == ["_id_"]
    with pytest.raises(OperationFailure) as raised:
        await people.drop_index("age_ttl")
    assert raised.value.code == 27


async def test_drop_collection_and_database(people: Any, mongo_client: MongoClient, mongo_db_name: str) -> None:
    database = mongo_client[mongo_db_name]
    assert await database.list_collection_names() == ["people"]
    await database.drop_collection("people")
    assert await database.list_collection_names() == []
    await people.insert_one({"_id": 1})
    await mongo_client.drop_database(mongo_db_name)
    assert await people.count_documents({}) == 0


async def test_unsupported_commands_and_options_are_errors(people: Any, mongo_client: MongoClient) -> None:
    with pytest.raises(OperationFailure, match="not supported by the test server") as raised:
        await mongo_client.admin.command("serverStatus")
    assert raised.value.code == 59
    with pytest.raises(OperationFailure, match="'collation' of find is not supported"):
        await people.find_one({}, collation={"locale": "fr"})
    with pytest.raises(OperationFailure, match="not supported by the test server"):
        await (await people.aggregate([{"$merge": {"into": "other"}}])).to_list()
    with pytest.raises(OperationFailure, match="not supported by the test server"):
        await people.update_one({"_id": 1}, [{"$set": {"age": 1}}])


async def test_many_concurrent_operations_over_several_connections(mongo_server: MongoTestServer, people: Any) -> None:
    results = await asyncio.gather(*(people.find_one({"_id": 1 + i % 4}) for i in range(60)))
    assert [doc["_id"] for doc in results] == [1 + i % 4 for i in range(60)]


def test_the_ttl_pass_removes_what_mongod_would() -> None:
    backend = CommandBackend()
    now = datetime(2030, 1, 1)

    def run(command: Doc) -> Doc:
        reply = backend.run("db", command)
        assert reply["ok"] == 1, reply
        return reply

    run({"createIndexes": "c", "indexes": [{"key": {"at": 1}, "name": "at_ttl", "expireAfterSeconds": 60}]})
    run({"createIndexes": "plain", "indexes": [{"key": {"at": 1}, "name": "at_1"}]})
    docs = [
        {"_id": "old", "at": now - timedelta(seconds=61)},
        {"_id": "grace", "at": now - timedelta(seconds=59)},  # within expireAfterSeconds
        {"_id": "array", "at": [now + timedelta(days=1), now - timedelta(days=1)]},  # earliest counts
        {"_id": "not-a-date", "at": "2000-01-01"},
        {"_id": "no-field"},
    ]
    run({"insert": "c", "documents": docs})
    run({"insert": "plain", "documents": [{"_id": "old", "at": now - timedelta(days=9)}]})
    assert backend.expire(now) == 2
    left = run({"find": "c", "filter": {}})["cursor"]["firstBatch"]
    assert [doc["_id"] for doc in left] == ["grace", "not-a-date", "no-field"]
    assert run({"count": "plain"})["n"] == 1  # no TTL index, nothing expires


async def test_the_ttl_monitor_thread_runs(mongo_server: MongoTestServer, mongo_client: MongoClient) -> None:
    collection = mongo_client["ttl"]["events"]
    await collection.create_index([("at", ASCENDING)], name="at_ttl", expireAfterSeconds=0)
    await collection.insert_one({"_id": 1, "at": datetime.now(timezone.utc) - timedelta(seconds=1)})

    async def gone() -> bool:
        return await collection.count_documents({}) == 0

    await wait_until(gone, timeout=5)
    assert mongo_server.ttl_passes >= 1


async def test_stop_and_restart_on_the_same_port(mongo_server: MongoTestServer, people: Any) -> None:
    port = mongo_server.port
    mongo_server.stop()
    assert not mongo_server.running
    mongo_server.restart()
    assert mongo_server.port == port
    assert await people.count_documents({}) == 4  # the data survived, the old client reconnected


async def test_the_fail_point_fails_commands_then_turns_off(people: Any, mongo_client: MongoClient) -> None:
    await mongo_client.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": {"times": 1},
            "data": {"failCommands": ["count"], "errorCode": 2},
        }
    )
    with pytest.raises(OperationFailure) as raised:
        await people.estimated_document_count()
    assert raised.value.code == 2
    assert await people.estimated_document_count() == 4
