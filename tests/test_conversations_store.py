"""The conversation stores on their own: paging, gaps, tenants, expiry, the memory budget, and what
MongoDB really holds (named indexes, one document per item, pages read as index ranges, TTL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.demo import EchoModel
from retention_middleware.store import MemoryStore, ResponseStore, StoreConfigurationError, StoreFull
from retention_middleware.store.conversations import ConversationStore, CursorNotFound
from retention_middleware.store.conversations_factory import make_conversation_store
from retention_middleware.store.conversations_memory import ConversationMemoryStore
from retention_middleware.store.conversations_mongo import ConversationMongoStore

from support.asgi_tools import run_lifespan
from support.mongo_fixtures import FakeClock, MongoClient, MongoStoreFactory, wait_until

TTL = timedelta(days=1)


def message(text: str, item_id: str | None = None) -> dict[str, Any]:
    return {"id": item_id or f"msg_{text.replace(' ', '_')}", "type": "message", "role": "user", "content": text}


@pytest.fixture
def conversations(store: ResponseStore, store_clock: FakeClock) -> ConversationStore:
    return make_conversation_store(store, RetentionSettings(ttl=TTL), clock=store_clock)


# -- both stores -----------------------------------------------------------------------------------


async def test_pages_follow_positions_with_gaps_left_by_deleted_items(conversations: ConversationStore) -> None:
    await conversations.create("t", "conv_1", {}, [message(f"m{n}") for n in range(10)])
    await conversations.delete_item("t", "conv_1", "msg_m4")
    page = await conversations.page("t", "conv_1", after="msg_m2", limit=3, order="asc")
    assert page is not None and [item.id for item in page.items] == ["msg_m3", "msg_m5", "msg_m6"] and page.has_more
    page = await conversations.page("t", "conv_1", after="msg_m6", limit=3, order="desc")
    assert page is not None and [item.id for item in page.items] == ["msg_m5", "msg_m3", "msg_m2"] and page.has_more
    page = await conversations.page("t", "conv_1", after="msg_m2", limit=5, order="desc")
    assert page is not None and [item.id for item in page.items] == ["msg_m1", "msg_m0"] and not page.has_more
    with pytest.raises(CursorNotFound):
        await conversations.page("t", "conv_1", after="msg_m4", limit=3, order="asc")  # deleted: no cursor


async def test_two_items_with_one_id_are_found_oldest_first(conversations: ConversationStore) -> None:
    await conversations.create("t", "conv_1", {}, [message("older", "msg_dup"), message("between")])
    await conversations.append("t", "conv_1", [message("newer", "msg_dup")])
    found = await conversations.get_item("t", "conv_1", "msg_dup")
    assert found is not None and found.item["content"] == "older"
    page = await conversations.page("t", "conv_1", after="msg_dup", limit=5, order="asc")
    assert page is not None and [item.item["content"] for item in page.items] == ["between", "newer"]
    assert await conversations.delete_item("t", "conv_1", "msg_dup") is not None
    found = await conversations.get_item("t", "conv_1", "msg_dup")
    assert found is not None and found.item["content"] == "newer"


async def test_append_adds_at_the_end_and_restarts_the_expiry(
    conversations: ConversationStore, store_clock: FakeClock
) -> None:
    created = await conversations.create("t", "conv_1", {"k": "v"}, [message("first")])
    store_clock.advance(timedelta(hours=20))
    added = await conversations.append("t", "conv_1", [message("second"), message("third")])
    assert added is not None and [item.position for item in added] == [1, 2]
    renewed = await conversations.get("t", "conv_1")
    assert renewed is not None and renewed.expires_at == created.expires_at + timedelta(hours=20)
    assert renewed.created_at == created.created_at and renewed.metadata == {"k": "v"}
    store_clock.advance(timedelta(hours=23))  # 43 h after creation, 23 after the last item
    items = await conversations.items("t", "conv_1")
    assert items is not None and [item["content"] for item in items] == ["first", "second", "third"]
    store_clock.advance(timedelta(hours=2))
    assert await conversations.get("t", "conv_1") is None
    assert await conversations.items("t", "conv_1") is None
    assert await conversations.append("t", "conv_1", [message("too late")]) is None


async def test_tenants_never_see_each_others_conversations(conversations: ConversationStore) -> None:
    await conversations.create("alice", "conv_1", {}, [message("hers")])
    assert await conversations.get("bob", "conv_1") is None
    assert await conversations.items("bob", "conv_1") is None
    assert await conversations.get_item("bob", "conv_1", "msg_hers") is None
    assert await conversations.append("bob", "conv_1", [message("his")]) is None
    assert await conversations.delete_item("bob", "conv_1", "msg_hers") is None
    assert await conversations.update_metadata("bob", "conv_1", {"x": "y"}) is None
    assert await conversations.delete("bob", "conv_1") is False
    assert await conversations.delete_tenant("bob") == 0
    items = await conversations.items("alice", "conv_1")
    assert items == [message("hers")]


async def test_delete_and_erasure_remove_conversations_with_their_items(conversations: ConversationStore) -> None:
    for n in range(3):
        await conversations.create("t", f"conv_{n}", {}, [message(f"m{n}")])
    await conversations.create("other", "conv_x", {}, [message("kept")])
    assert await conversations.delete("t", "conv_0") is True
    assert await conversations.get_item("t", "conv_0", "msg_m0") is None
    assert await conversations.delete_tenant("t") == 2
    assert await conversations.get("t", "conv_1") is None
    assert await conversations.items("other", "conv_x") == [message("kept")]


# -- memory -----------------------------------------------------------------------------------------


async def test_conversations_are_charged_to_the_memory_stores_budget(store_clock: FakeClock) -> None:
    budget = MemoryStore(4096, clock=store_clock)
    conversations = ConversationMemoryStore(budget, TTL, clock=store_clock)
    try:
        await conversations.create("t", "conv_1", {}, [message("x" * 1000, "msg_x")])
        used = budget.used_bytes
        assert used > 1000
        with pytest.raises(StoreFull):
            await conversations.append("t", "conv_1", [message("y" * 4000, "msg_y")])
        assert budget.used_bytes == used  # refused whole: nothing half-added
        assert await conversations.items("t", "conv_1") == [message("x" * 1000, "msg_x")]
        store_clock.advance(TTL)  # expired: its bytes are given back when room is needed
        await conversations.create("t", "conv_2", {}, [message("z" * 3000, "msg_z")])
        assert await conversations.delete("t", "conv_2") is True
        assert budget.used_bytes == 0
    finally:
        await conversations.close()
        await budget.close()


# -- MongoDB ----------------------------------------------------------------------------------------


class Replies(CommandListener):
    """How many documents each command's reply carried."""

    def __init__(self) -> None:
        self.finds: list[tuple[str, int]] = []

    def started(self, event: CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor")
        if event.command_name == "find" and cursor is not None:
            self.finds.append((cursor["ns"].split(".")[-1], len(cursor["firstBatch"])))

    def failed(self, event: CommandFailedEvent) -> None:
        pass


async def test_mongo_indexes_are_created_at_start_up_with_names(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str, store_clock: FakeClock
) -> None:
    store = make_mongo_store()
    app = RetentionMiddleware(EchoModel(), RetentionSettings(), store=store, clock=store_clock)
    sent = await run_lifespan(app)
    assert sent[0]["type"] == "lifespan.startup.complete"
    database = mongo_client[mongo_db_name]
    conversation_indexes = {spec["name"]: spec async for spec in await database.conversations.list_indexes()}
    item_indexes = {spec["name"]: spec async for spec in await database.conversation_items.list_indexes()}
    assert set(conversation_indexes) == {"_id_", "expires_at_ttl", "tenant_created_at"}
    assert conversation_indexes["expires_at_ttl"]["expireAfterSeconds"] == 0
    assert set(item_indexes) == {
        "_id_",
        "expires_at_ttl",
        "conversation_position",
        "conversation_item_id",
        "tenant_conversation",
    }
    assert item_indexes["conversation_position"]["unique"] is True
    assert dict(item_indexes["conversation_position"]["key"]) == {"conversation": 1, "position": 1}


async def test_a_conflicting_index_stops_start_up_naming_it(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str, store_clock: FakeClock
) -> None:
    await mongo_client[mongo_db_name].conversation_items.create_index([("position", 1)], name="conversation_position")
    conversations = make_conversation_store(make_mongo_store(), RetentionSettings(), clock=store_clock)
    with pytest.raises(StoreConfigurationError, match="conversation_position"):
        await conversations.start()


async def test_mongo_keeps_one_document_per_item_and_a_page_reads_only_its_range(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str, store_clock: FakeClock
) -> None:
    replies = Replies()
    conversations = make_conversation_store(
        make_mongo_store(event_listeners=(replies,)), RetentionSettings(ttl=TTL), clock=store_clock
    )
    await conversations.create("t", "conv_1", {}, [])
    for batch in range(6):
        await conversations.append("t", "conv_1", [message(f"m{batch * 20 + n}") for n in range(20)])
    database = mongo_client[mongo_db_name]
    assert await database.conversation_items.count_documents({"conversation": "conv_1"}) == 120
    conversation = await database.conversations.find_one({"_id": "conv_1"})
    assert conversation is not None and conversation["next_position"] == 120
    # Every item carries the conversation's expiry, so the TTL index reclaims them together.
    expiries = {doc["expires_at"] async for doc in database.conversation_items.find({"conversation": "conv_1"})}
    assert expiries == {conversation["expires_at"]}

    replies.finds.clear()
    page = await conversations.page("t", "conv_1", after="msg_m50", limit=10, order="asc")
    assert page is not None and [item.id for item in page.items] == [f"msg_m{n}" for n in range(51, 61)]
    # The conversation, the cursor item, then limit + 1 items: never the whole conversation.
    assert replies.finds == [("conversations", 1), ("conversation_items", 1), ("conversation_items", 11)]

    assert await conversations.delete("t", "conv_1") is True
    assert await database.conversation_items.count_documents({}) == 0


async def test_the_ttl_monitor_reclaims_expired_conversations_and_items(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str
) -> None:
    long_ago = FakeClock(datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=3))
    conversations = make_conversation_store(
        make_mongo_store(clock=long_ago), RetentionSettings(ttl=TTL), clock=long_ago
    )
    await conversations.create("t", "conv_old", {}, [message("old one"), message("old two")])
    database = mongo_client[mongo_db_name]

    async def reclaimed() -> bool:
        remaining = await database.conversations.count_documents({})
        return remaining + await database.conversation_items.count_documents({}) == 0

    await wait_until(reclaimed)


class DeletedDuringInsert:
    """The item collection, with the conversation deleted by another replica just before an insert."""

    def __init__(self, inner: Any, delete: Callable[[], Awaitable[bool]]) -> None:
        self.inner, self.delete = inner, delete

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def insert_many(self, documents: Any, *args: Any, **kwargs: Any) -> Any:
        assert await self.delete() is True
        return await self.inner.insert_many(documents, *args, **kwargs)


async def test_a_conversation_deleted_by_another_replica_mid_append_keeps_no_items(
    make_mongo_store: MongoStoreFactory, mongo_client: MongoClient, mongo_db_name: str, store_clock: FakeClock
) -> None:
    settings = RetentionSettings(ttl=TTL)
    other_replica = ConversationMongoStore(make_mongo_store(), TTL, clock=store_clock)

    class Racing(ConversationMongoStore):
        async def _collections(self) -> Any:
            conversations, items = await super()._collections()
            return conversations, DeletedDuringInsert(items, lambda: other_replica.delete("t", "conv_1"))

    racing = Racing(make_mongo_store(), settings.ttl, clock=store_clock)
    await other_replica.create("t", "conv_1", {}, [message("first")])
    assert await racing.append("t", "conv_1", [message("late one"), message("late two")]) is None
    assert await mongo_client[mongo_db_name].conversation_items.count_documents({}) == 0
