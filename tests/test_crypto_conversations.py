"""Conversations and their items encrypted at rest: through the official openai client, on both stores.

What the client sees is unchanged; what the store holds is sealed (raw MongoDB documents carry no
canary); an item that does not open is treated as missing and logged as ``decrypt_failed``; erasure
destroys the key that a copy set aside before it would need; caller-key mode reads with the caller's
own key only.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import bson
import httpx2
import openai
import pytest
from openai import AsyncOpenAI
from test_openai_client import RecordingUpstream, sent_text

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.crypto import SEALED
from retention_middleware.crypto.conversations import EncryptingConversationStore
from retention_middleware.crypto.keys import new_key_text
from retention_middleware.store.base import ResponseStore
from retention_middleware.store.conversations import ConversationStore
from retention_middleware.tenancy import TenantResolver

from support.asgi_tools import asgi_client, capture_all_logs
from support.crypto_tools import as_caller
from support.mongo_fixtures import FakeClock, MongoClient, MongoStoreFactory
from support.openapi import assert_matches_schema

SECRET = "crypto-conversations-secret-0123456789"
MODEL = "demo-echo"

App = Callable[..., RetentionMiddleware]
Clients = Callable[[RetentionMiddleware, str], AsyncOpenAI]


def canary() -> str:
    return f"CANARY-{uuid.uuid4().hex}"


def tenant_of(api_key: str) -> str:
    return TenantResolver(SECRET, None).tenant_of([(b"authorization", f"Bearer {api_key}".encode())])


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def text_of(item: Any) -> str:
    return "".join(part.text for part in item.content)


def access(logs: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in logs.access_lines()]


@pytest.fixture
def upstream() -> RecordingUpstream:
    return RecordingUpstream()


@pytest.fixture
def make_app(upstream: RecordingUpstream, clock: FakeClock) -> Callable[..., RetentionMiddleware]:
    def make(store: ResponseStore, **overrides: Any) -> RetentionMiddleware:
        chosen: dict[str, Any] = {"tenant_secret": SECRET, "encryption_key": new_key_text(), **overrides}
        return RetentionMiddleware(upstream, RetentionSettings(**chosen), store=store, clock=clock)

    return make


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    made: list[AsyncOpenAI] = []

    def make(app: RetentionMiddleware, key: str) -> AsyncOpenAI:
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://testserver")
        made.append(AsyncOpenAI(base_url="http://testserver/v1", api_key=key, max_retries=0, http_client=http))
        return made[-1]

    yield make
    for sdk in made:
        await sdk.close()


def sealed_layer(app: RetentionMiddleware) -> tuple[EncryptingConversationStore, ConversationStore]:
    """The middleware's encrypting conversation store, and the plain store under it (the database)."""
    layer = app.conversations
    assert isinstance(layer, EncryptingConversationStore)
    return layer, layer.inner


async def a_conversation_with_a_turn(client: AsyncOpenAI, secret: str) -> tuple[str, list[Any]]:
    conversation = await client.conversations.create(items=[user(f"first {secret}")], metadata={"topic": secret})
    await client.responses.create(model=MODEL, input=f"turn {secret}", conversation=conversation.id)
    await client.conversations.items.create(conversation.id, items=[user(f"added {secret}")])
    items = [item async for item in client.conversations.items.list(conversation.id, order="asc")]
    return conversation.id, items


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["master-key", "caller-key"])
async def test_conversations_round_trip_and_the_store_holds_them_sealed(
    response_store: ResponseStore, make_app: App, clients: Clients, upstream: RecordingUpstream, mode: str
) -> None:
    secret = canary()
    extra = {"encryption": "caller-key", "encryption_key": None} if mode == "caller-key" else {}
    app = make_app(response_store, **extra)
    client = clients(app, "sk-a")
    conversation_id, items = await a_conversation_with_a_turn(client, secret)
    said = [f"first {secret}", f"turn {secret}", f"turn {secret}", f"added {secret}"]
    assert [text_of(item) for item in items] == said
    assert (await client.conversations.retrieve(conversation_id)).metadata == {"topic": secret}
    updated = await client.conversations.update(conversation_id, metadata={"topic": "changed", "n": "2"})
    assert updated.metadata == {"topic": "changed", "n": "2"}
    one = await client.conversations.items.retrieve(items[1].id, conversation_id=conversation_id)
    assert one.id == items[1].id and text_of(one) == f"turn {secret}"
    newest_first = [item.id async for item in client.conversations.items.list(conversation_id, limit=2)]
    assert newest_first == [item.id for item in reversed(items)]
    # A second turn: the upstream gets the whole history, opened.
    await client.responses.create(model=MODEL, input="and then", conversation=conversation_id)
    sent = upstream.bodies("/v1/responses")[-1]
    assert [sent_text(item) for item in sent["input"]] == [text_of(item) for item in items] + ["and then"]
    await client.conversations.items.delete(items[0].id, conversation_id=conversation_id)
    assert len((await client.conversations.items.list(conversation_id)).data) == 5

    layer, plain = sealed_layer(app)
    tenant = tenant_of("sk-a")
    held = await plain.get(tenant, conversation_id)
    assert held is not None and set(held.metadata) == {SEALED}
    kept = await plain.items(tenant, conversation_id)
    assert kept is not None and len(kept) == 5 and all(set(item) == {"id", SEALED} for item in kept)
    assert secret not in repr(held) and secret not in repr(kept) and "and then" not in repr(kept)
    if mode == "caller-key":
        # Another key of the same tenant (the server holds no key): nothing opens, item by item.
        with as_caller("sk-mallory"), capture_all_logs():
            assert await layer.get(tenant, conversation_id) is None
            assert await layer.items(tenant, conversation_id) is None  # not one item opens
        with as_caller("sk-a"):
            assert await layer.get(tenant, conversation_id) is not None
        operator = make_app(response_store)  # same database and secret, plus a master key
        with pytest.raises(openai.NotFoundError):
            await clients(operator, "sk-a").conversations.retrieve(conversation_id)


@pytest.mark.parametrize("mode", ["master-key", "caller-key", "off"])
async def test_raw_mongodb_documents_of_conversations_hold_no_canary(
    make_mongo_store: MongoStoreFactory,
    mongo_client: MongoClient,
    mongo_db_name: str,
    make_app: App,
    clients: Clients,
    mode: str,
) -> None:
    secret = canary()
    extra: dict[str, Any] = {"encryption": mode, "encryption_key": None} if mode != "master-key" else {}
    app = make_app(make_mongo_store(tenant_secret=SECRET), **extra)
    conversation_id, items = await a_conversation_with_a_turn(clients(app, "sk-a"), secret)
    database = mongo_client[mongo_db_name]
    raw = {name: b"" for name in ("conversations", "conversation_items")}
    for name in raw:
        async for document in database[name].find({}):
            raw[name] += bson.encode(document)
    if mode == "off":  # the control: without encryption the very same search finds the content
        assert secret.encode() in raw["conversations"] and secret.encode() in raw["conversation_items"]
        return
    # What the store queries stays in clear: ids, tenant, positions.
    assert conversation_id.encode() in raw["conversations"] and tenant_of("sk-a").encode() in raw["conversations"]
    assert all(item.id.encode() in raw["conversation_items"] for item in items)
    for collection, held in raw.items():
        for needle in (secret, "first", "added", "topic", "input_text", "output_text"):
            assert needle.encode() not in held, (collection, needle)


# -- failure is closed ----------------------------------------------------------------------------


def flipped(item: dict[str, Any]) -> dict[str, Any]:
    envelope = bytearray(base64.b64decode(item[SEALED]))
    envelope[30] ^= 0x04
    return {**item, SEALED: base64.b64encode(bytes(envelope)).decode()}


async def test_a_tampered_or_moved_item_is_refused_as_missing_and_logged_as_decrypt_failed(
    response_store: ResponseStore, make_app: App, clients: Clients, upstream: RecordingUpstream
) -> None:
    secret = canary()
    app = make_app(response_store)
    client = clients(app, "sk-a")
    conversation_id, items = await a_conversation_with_a_turn(client, secret)
    other = await client.conversations.create(items=[user("the other conversation")])
    _, plain = sealed_layer(app)
    tenant = tenant_of("sk-a")
    kept = await plain.items(tenant, conversation_id)
    assert kept is not None
    # The database's copy of the second item gets one bit flipped; the other conversation gets a
    # copy of the first item's ciphertext (the same id, moved).
    target = kept[1]
    assert await plain.delete_item(tenant, conversation_id, target["id"]) is not None
    assert await plain.append(tenant, conversation_id, [flipped(target)])
    assert await plain.append(tenant, other.id, [kept[0]])

    with capture_all_logs() as logs:
        with pytest.raises(openai.NotFoundError):
            await client.conversations.items.retrieve(target["id"], conversation_id=conversation_id)
        with pytest.raises(openai.NotFoundError):
            await client.conversations.items.retrieve(kept[0]["id"], conversation_id=other.id)
        listed = [item.id async for item in client.conversations.items.list(conversation_id, order="asc")]
        await client.responses.create(model=MODEL, input="go on", conversation=conversation_id)
    assert listed == [items[0].id, items[2].id, items[3].id]  # left out, the rest in order
    sent = upstream.bodies("/v1/responses")[-1]
    assert [sent_text(item) for item in sent["input"]] == [text_of(items[i]) for i in (0, 2, 3)] + ["go on"]
    assert [entry["error"] for entry in access(logs)] == ["decrypt_failed"] * 4
    text = logs.text()
    assert target["id"] in text  # the warning names the record, so an operator can find it
    assert secret not in text and target[SEALED][:16] not in text and target[SEALED][-16:] not in text


async def test_erasure_destroys_the_key_and_a_backup_copy_of_a_conversation_no_longer_decrypts(
    response_store: ResponseStore, make_app: App, clients: Clients
) -> None:
    app = make_app(response_store)
    client = clients(app, "sk-a")
    conversation_id, _ = await a_conversation_with_a_turn(client, canary())
    theirs = await clients(app, "sk-b").conversations.create(items=[user("theirs")])
    layer, plain = sealed_layer(app)
    tenant = tenant_of("sk-a")
    conversation = await plain.get(tenant, conversation_id)  # copied aside before the erasure
    backup = await plain.items(tenant, conversation_id)
    assert conversation is not None and backup is not None
    erased = (await client._client.delete("http://testserver/v1/retention/data", headers=_bearer("sk-a"))).json()
    assert erased["keys_destroyed"] == 1 and erased["conversations_deleted"] == 1
    await plain.create(tenant, conversation_id, conversation.metadata, backup)  # the backup restored
    with capture_all_logs() as logs:
        with pytest.raises(openai.NotFoundError):
            await client.conversations.retrieve(conversation_id)
        with pytest.raises(openai.NotFoundError):
            await client.conversations.items.list(conversation_id)
    assert [entry["error"] for entry in access(logs)] == ["decrypt_failed", "decrypt_failed"]
    with capture_all_logs():
        assert await layer.items(tenant, conversation_id) is None  # not one item opens, even asked directly
    assert len((await clients(app, "sk-b").conversations.items.list(theirs.id)).data) == 1
    # The tenant carries on with a fresh data key.
    fresh = await client.conversations.create(items=[user("a new start")], metadata={"k": "v"})
    assert (await client.conversations.retrieve(fresh.id)).metadata == {"k": "v"}


def _bearer(api_key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"}


async def test_a_clear_item_planted_in_the_database_is_never_handed_out(
    response_store: ResponseStore, make_app: App, clients: Clients
) -> None:
    app = make_app(response_store)
    client = clients(app, "sk-a")
    conversation = await client.conversations.create(items=[user("sealed one")])
    _, plain = sealed_layer(app)
    planted = {"id": "msg_planted", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
    await plain.append(tenant_of("sk-a"), conversation.id, [planted, {"id": "msg_half", SEALED: "AAAA"}])
    with capture_all_logs() as logs:
        listed = [text_of(item) async for item in client.conversations.items.list(conversation.id, order="asc")]
        with pytest.raises(openai.NotFoundError):
            await client.conversations.items.retrieve("msg_planted", conversation_id=conversation.id)
    assert listed == ["sealed one"]
    assert [entry["error"] for entry in access(logs)] == ["decrypt_failed", "decrypt_failed"]


async def test_caller_key_mode_without_a_bearer_token_keeps_no_conversation_and_says_why(
    response_store: ResponseStore, make_app: App
) -> None:
    app = make_app(response_store, encryption="caller-key", encryption_key=None)
    async with asgi_client(app) as client:
        with capture_all_logs() as logs:
            created = await client.post("/v1/conversations", json={"items": [user("no key to seal this")]})
            body = {"model": MODEL, "input": "x", "conversation": "conv_abc"}
            asked = await client.post("/v1/responses", json=body)
    assert created.status_code == 401
    assert_matches_schema(created.json(), "ErrorResponse")
    assert created.json()["error"]["code"] == "caller_key_missing" and "bearer" in created.json()["error"]["message"]
    assert asked.status_code == 404  # no conversation can exist for a caller without a key
    assert [entry["error"] for entry in access(logs)] == ["caller_key_missing", "not_found"]
