"""The Conversations API through the official ``openai`` client, on both stores.

The middleware wraps the echo model (which records every body it receives) and is driven in the
test's event loop through an ASGI transport, so the MongoDB store's client lives in one loop. Every
body the client receives is also checked against OpenAI's OpenAPI schemas.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai import AsyncOpenAI

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Message, Receive, Scope, Send
from retention_middleware.demo import EchoModel
from retention_middleware.store import MemoryStore
from retention_middleware.store.base import ResponseStore
from retention_middleware.wire.request_body import replay

from support.asgi_tools import asgi_client, capture_all_logs, read_request_body
from support.cassettes import ReplayUpstream, load
from support.mongo_fixtures import FakeClock, MongoClient, MongoStoreFactory
from support.mongo_server import MongoTestServer
from support.openapi import assert_matches_schema
from support.servers import aserve

SECRET = "conversations-secret-0123456789"
MODEL = "demo-echo"


class RecordingUpstream:
    """The echo model, remembering each JSON body; ``hold`` pauses a stream before its last event."""

    def __init__(self) -> None:
        self.echo = EchoModel(MODEL)
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.hold: asyncio.Event | None = None
        self.thread_hold: threading.Event | None = None  # the same, for an upstream in uvicorn's thread
        self.log_bodies = False
        self.holding = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.echo(scope, receive, send)
            return
        body = await read_request_body(receive)
        self.paths.append(scope["path"])
        self.bodies.append(orjson.loads(body) if body else {})
        if self.log_bodies:  # as a server logging its requests does (vLLM's --enable-log-requests)
            logging.getLogger("upstream.server").info("received %s", body.decode())
        hold = self.hold

        async def held_send(message: Message) -> None:
            if b"response.completed" in message.get("body", b""):
                if hold is not None:
                    self.holding.set()
                    await hold.wait()
                if self.thread_hold is not None:
                    await asyncio.to_thread(self.thread_hold.wait, 10)
            await send(message)

        await self.echo(scope, replay(body, receive), held_send)


App = Callable[..., RetentionMiddleware]


@pytest.fixture
def upstream() -> RecordingUpstream:
    return RecordingUpstream()


@pytest.fixture
def make_app(upstream: RecordingUpstream, response_store: ResponseStore, clock: FakeClock) -> App:
    def make(**overrides: Any) -> RetentionMiddleware:
        settings = RetentionSettings(tenant_secret=SECRET, **overrides)
        return RetentionMiddleware(upstream, settings, store=response_store, clock=clock)

    return make


Clients = Callable[..., AsyncOpenAI]


class SchemaCheck:
    """Wraps the middleware and checks every Conversations API answer against OpenAI's schemas."""

    def __init__(self, app: RetentionMiddleware) -> None:
        self.app = app
        self.answers: list[tuple[str, str, int, bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, chunks = 0, []

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, recording_send)
        self.answers.append((scope["method"], scope["path"], status, b"".join(chunks)))

    def check(self) -> int:
        checked = 0
        for method, path, status, body in self.answers:
            schema = _schema_of(method, path, status)
            if schema is not None:
                assert_matches_schema(json.loads(body), schema)
                checked += 1
        return checked


def _schema_of(method: str, path: str, status: int) -> str | None:
    parts = path.removeprefix("/v1/").split("/")
    if parts[0] != "conversations":
        return "ErrorResponse" if status >= 400 else None  # responses: checked by the SDK's parsing
    if status >= 400:
        return "ErrorResponse"
    if len(parts) == 4:
        return "ConversationItem" if method == "GET" else "ConversationResource"
    if len(parts) == 3:
        return "ConversationItemList"
    return "DeletedConversationResource" if method == "DELETE" else "ConversationResource"


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[RetentionMiddleware, str], AsyncOpenAI]]:
    made: list[AsyncOpenAI] = []
    checks: list[SchemaCheck] = []

    def make(app: RetentionMiddleware, key: str = "sk-tenant-a") -> AsyncOpenAI:
        checks.append(SchemaCheck(app))
        transport = httpx2.ASGITransport(app=checks[-1])
        http = httpx2.AsyncClient(transport=transport, base_url="http://testserver")
        sdk = AsyncOpenAI(base_url="http://testserver/v1", api_key=key, max_retries=0, http_client=http)
        made.append(sdk)
        return sdk

    yield make
    for sdk in made:
        await sdk.close()
    # Every body the middleware answered on /v1/conversations, errors included, is OpenAI's shape.
    assert sum(check.check() for check in checks) > 0


@pytest.fixture
def app(make_app: App) -> RetentionMiddleware:
    return make_app()


@pytest.fixture
def client(app: RetentionMiddleware, clients: Callable[[RetentionMiddleware, str], AsyncOpenAI]) -> AsyncOpenAI:
    return clients(app, "sk-tenant-a")


@pytest.fixture
def other(app: RetentionMiddleware, clients: Callable[[RetentionMiddleware, str], AsyncOpenAI]) -> AsyncOpenAI:
    return clients(app, "sk-tenant-b")


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def text_of(item: Any) -> str:
    """The text of an item as the SDK parsed it, or of a raw item dict sent upstream."""
    content = item["content"] if isinstance(item, dict) else item.content
    if isinstance(content, str):
        return content
    return "".join(part["text"] if isinstance(part, dict) else part.text for part in content)


async def raw_json(client: AsyncOpenAI, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    response = await client._client.request(
        method, f"http://testserver/v1{path}", headers={"authorization": f"Bearer {client.api_key}"}, **kwargs
    )
    return response.status_code, response.json()


# -- the conversation object -------------------------------------------------------------------------


async def test_create_with_items_and_metadata_then_retrieve_update_delete(client: AsyncOpenAI) -> None:
    created = await client.conversations.create(
        items=[user("first words"), user("second words")], metadata={"topic": "demo"}
    )
    assert created.id.startswith("conv_")
    assert created.object == "conversation"
    assert created.metadata == {"topic": "demo"}

    retrieved = await client.conversations.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()

    updated = await client.conversations.update(created.id, metadata={"topic": "changed", "n": "2"})
    assert updated.metadata == {"topic": "changed", "n": "2"}
    assert (await client.conversations.retrieve(created.id)).metadata == {"topic": "changed", "n": "2"}

    items = [item async for item in client.conversations.items.list(created.id, order="asc")]
    assert [text_of(item) for item in items] == ["first words", "second words"]

    deleted = await client.conversations.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "conversation.deleted", True)
    with pytest.raises(openai.NotFoundError):
        await client.conversations.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await client.conversations.items.list(created.id)
    with pytest.raises(openai.NotFoundError):
        await client.conversations.delete(created.id)


async def test_create_with_nothing_is_an_empty_conversation(client: AsyncOpenAI) -> None:
    created = await client.conversations.create()
    assert created.metadata == {}
    page = await client.conversations.items.list(created.id)
    assert page.data == [] and page.has_more is False


# -- items ---------------------------------------------------------------------------------------


async def test_items_create_retrieve_and_delete_one(client: AsyncOpenAI) -> None:
    conversation = await client.conversations.create()
    added = await client.conversations.items.create(
        conversation.id, items=[user("kept"), {"type": "message", "role": "assistant", "content": "reply"}]
    )
    assert [text_of(item) for item in added.data] == ["kept", "reply"]
    kept, reply = added.data
    assert kept.id.startswith("msg_") and kept.id != reply.id

    fetched = await client.conversations.items.retrieve(kept.id, conversation_id=conversation.id)
    assert fetched.model_dump() == kept.model_dump()

    after_delete = await client.conversations.items.delete(kept.id, conversation_id=conversation.id)
    assert after_delete.id == conversation.id
    with pytest.raises(openai.NotFoundError) as missing:
        await client.conversations.items.retrieve(kept.id, conversation_id=conversation.id)
    assert kept.id in missing.value.message
    remaining = [item.id async for item in client.conversations.items.list(conversation.id)]
    assert remaining == [reply.id]


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_auto_pagination_over_120_items(client: AsyncOpenAI, order: str) -> None:
    conversation = await client.conversations.create()
    for batch in range(6):
        await client.conversations.items.create(
            conversation.id, items=[user(f"item {batch * 20 + n}") for n in range(20)]
        )
    pages = client.conversations.items.list(conversation.id, order=order, limit=7)  # type: ignore[arg-type]
    first_page = await pages
    assert first_page.has_more is True and len(first_page.data) == 7
    texts = [text_of(item) async for item in pages]
    expected = [f"item {n}" for n in range(120)]
    assert texts == (expected if order == "asc" else expected[::-1])


async def test_default_order_is_newest_first_and_limit_is_20(client: AsyncOpenAI) -> None:
    conversation = await client.conversations.create(items=[user(f"n{n}") for n in range(20)])
    await client.conversations.items.create(conversation.id, items=[user("n20")])
    page = await client.conversations.items.list(conversation.id)
    assert [text_of(item) for item in page.data] == [f"n{n}" for n in range(20, 0, -1)]
    assert page.has_more is True


# -- responses in a conversation -----------------------------------------------------------------


async def test_three_turns_send_the_whole_history_and_append_in_order(
    client: AsyncOpenAI, upstream: RecordingUpstream
) -> None:
    conversation = await client.conversations.create(items=[user("opening line")])
    first = await client.responses.create(model=MODEL, input="red green", conversation=conversation.id)
    second = await client.responses.create(model=MODEL, input=[user("blue")], conversation={"id": conversation.id})
    stream = await client.responses.create(model=MODEL, input="yellow", conversation=conversation.id, stream=True)
    third = [event async for event in stream][-1]
    assert third.type == "response.completed"
    assert [first.output_text, second.output_text, third.response.output_text] == ["red green", "blue", "yellow"]

    sent = upstream.bodies
    assert all(body["store"] is False and "conversation" not in body for body in sent)
    assert [text_of(item) for item in sent[0]["input"]] == ["opening line", "red green"]
    assert [text_of(item) for item in sent[1]["input"]] == ["opening line", "red green", "red green", "blue"]
    assert [text_of(item) for item in sent[2]["input"]] == [
        "opening line", "red green", "red green", "blue", "blue", "yellow",
    ]  # fmt: skip

    items = [item async for item in client.conversations.items.list(conversation.id, order="asc")]
    assert [(item.role, text_of(item)) for item in items] == [  # type: ignore[union-attr]
        ("user", "opening line"),
        ("user", "red green"), ("assistant", "red green"),
        ("user", "blue"), ("assistant", "blue"),
        ("user", "yellow"), ("assistant", "yellow"),
    ]  # fmt: skip
    # The assistant items are the responses' own output items, ids included.
    assert items[2].id == first.output[0].id and items[6].id == third.response.output[0].id
    # Each response is also stored on its own, with only its new input.
    stored = await client.responses.input_items.list(second.id)
    assert [text_of(item) for item in stored.data] == ["blue"]


async def test_store_false_still_adds_the_turn_to_the_conversation(client: AsyncOpenAI) -> None:
    conversation = await client.conversations.create()
    response = await client.responses.create(model=MODEL, input="not stored", conversation=conversation.id, store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)
    items = [text_of(item) async for item in client.conversations.items.list(conversation.id, order="asc")]
    assert items == ["not stored", "not stored"]


async def test_conversation_with_previous_response_id_is_a_400(
    client: AsyncOpenAI, upstream: RecordingUpstream
) -> None:
    conversation = await client.conversations.create()
    first = await client.responses.create(model=MODEL, input="one")
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(
            model=MODEL, input="two", conversation=conversation.id, previous_response_id=first.id
        )
    assert refused.value.param == "conversation"
    assert len(upstream.bodies) == 1


async def test_a_response_in_a_missing_conversation_is_a_404_and_never_reaches_the_upstream(
    client: AsyncOpenAI, upstream: RecordingUpstream
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await client.responses.create(model=MODEL, input="hello", conversation="conv_doesnotexist")
    assert "conv_doesnotexist" in missing.value.message
    assert upstream.bodies == []


async def test_a_conversation_deleted_while_a_response_streams_into_it_gets_nothing(
    client: AsyncOpenAI, upstream: RecordingUpstream, app: RetentionMiddleware
) -> None:
    conversation = await client.conversations.create(items=[user("before")])
    upstream.hold = asyncio.Event()

    async def converse() -> list[Any]:
        stream = await client.responses.create(model=MODEL, input="during", conversation=conversation.id, stream=True)
        return [event async for event in stream]

    streaming = asyncio.create_task(converse())
    await asyncio.wait_for(upstream.holding.wait(), 10)
    await client.conversations.delete(conversation.id)
    upstream.hold.set()
    events = await asyncio.wait_for(streaming, 10)
    assert events[-1].type == "response.completed"  # the client still gets its answer
    with pytest.raises(openai.NotFoundError):
        await client.conversations.items.list(conversation.id)
    assert await app.conversations.items(_tenant_a(), conversation.id) is None


async def test_a_response_deleted_while_it_streams_is_not_added_to_its_conversation(
    upstream: RecordingUpstream,
) -> None:
    upstream.thread_hold = threading.Event()
    app = RetentionMiddleware(upstream, RetentionSettings())  # the memory store, in uvicorn's loop
    async with (
        aserve(app, lifespan="on") as url,
        AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-a", max_retries=0) as sdk,
    ):
        conversation = await sdk.conversations.create(items=[user("before")])
        stream = await sdk.responses.create(model=MODEL, input="during", conversation=conversation.id, stream=True)
        async for event in stream:
            if event.type == "response.created":
                deleted = await sdk.responses.delete(event.response.id)
                break
        upstream.thread_hold.set()
        rest = [event.type async for event in stream]
        assert rest[-1] == "response.completed" and deleted is None
        assert [text_of(item) async for item in sdk.conversations.items.list(conversation.id)] == ["before"]


async def test_zero_policy_refuses_conversations(
    make_app: App, clients: Callable[[RetentionMiddleware, str], AsyncOpenAI], upstream: RecordingUpstream
) -> None:
    client = clients(make_app(policy="zero"), "sk-tenant-a")
    with pytest.raises(openai.BadRequestError) as endpoint:
        await client.conversations.create(items=[user("keep me")])
    assert endpoint.value.code == "unsupported_endpoint"
    with pytest.raises(openai.BadRequestError) as parameter:
        await client.responses.create(model=MODEL, input="hi", conversation="conv_abc")
    assert (parameter.value.param, parameter.value.code) == ("conversation", "unsupported_parameter")
    assert upstream.bodies == []


# -- tenants, retention, erasure -----------------------------------------------------------------


def _tenant_a() -> str:
    from retention_middleware.tenancy import TenantResolver

    return TenantResolver(SECRET, None).tenant_of([(b"authorization", b"Bearer sk-tenant-a")])


async def test_another_tenants_conversation_is_the_same_404_as_a_missing_one(
    client: AsyncOpenAI, other: AsyncOpenAI, upstream: RecordingUpstream
) -> None:
    conversation = await client.conversations.create(items=[user("private")])
    item_id = (await client.conversations.items.list(conversation.id)).data[0].id
    attempts = [
        ("GET", f"/conversations/{conversation.id}", None),
        ("POST", f"/conversations/{conversation.id}", {"metadata": {"x": "y"}}),
        ("DELETE", f"/conversations/{conversation.id}", None),
        ("GET", f"/conversations/{conversation.id}/items", None),
        ("POST", f"/conversations/{conversation.id}/items", {"items": [user("intrusion")]}),
        ("GET", f"/conversations/{conversation.id}/items/{item_id}", None),
        ("DELETE", f"/conversations/{conversation.id}/items/{item_id}", None),
    ]
    for method, path, body in attempts:
        theirs = await raw_json(other, method, path, json=body)
        missing = await raw_json(other, method, path.replace(conversation.id, "conv_missing"), json=body)
        assert theirs[0] == 404, (method, path)
        assert json.dumps(theirs[1]).replace(conversation.id, "X") == json.dumps(missing[1]).replace(
            "conv_missing", "X"
        )
    with pytest.raises(openai.NotFoundError):
        await other.responses.create(model=MODEL, input="peek", conversation=conversation.id)
    assert upstream.bodies == []
    items = [text_of(item) async for item in client.conversations.items.list(conversation.id)]
    assert items == ["private"]  # untouched by the other tenant


async def test_a_conversation_expires_a_ttl_after_its_last_item(
    make_app: App, clients: Callable[[RetentionMiddleware, str], AsyncOpenAI], clock: FakeClock
) -> None:
    client = clients(make_app(ttl=timedelta(days=30), conversation_ttl=timedelta(hours=1)), "sk-tenant-a")
    conversation = await client.conversations.create(items=[user("short-lived")])
    clock.advance(timedelta(minutes=50))
    await client.conversations.items.create(conversation.id, items=[user("renewed")])
    clock.advance(timedelta(minutes=50))  # 100 minutes after creation, 50 after the last item
    assert len((await client.conversations.items.list(conversation.id)).data) == 2
    await client.conversations.update(conversation.id, metadata={"a": "b"})  # not an item: no renewal
    clock.advance(timedelta(minutes=11))
    with pytest.raises(openai.NotFoundError):
        await client.conversations.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model=MODEL, input="too late", conversation=conversation.id)


async def test_the_conversation_ttl_defaults_to_the_response_ttl(
    make_app: App, clients: Callable[[RetentionMiddleware, str], AsyncOpenAI], clock: FakeClock
) -> None:
    client = clients(make_app(ttl=timedelta(hours=2)), "sk-tenant-a")
    conversation = await client.conversations.create()
    clock.advance(timedelta(hours=1, minutes=59))
    await client.conversations.retrieve(conversation.id)
    clock.advance(timedelta(minutes=2))
    with pytest.raises(openai.NotFoundError):
        await client.conversations.retrieve(conversation.id)


async def test_erasure_counts_and_removes_conversations(
    client: AsyncOpenAI, other: AsyncOpenAI, app: RetentionMiddleware
) -> None:
    mine = [await client.conversations.create(items=[user(f"mine {n}")]) for n in range(3)]
    theirs = await other.conversations.create(items=[user("theirs")])
    status, erased = await raw_json(client, "DELETE", "/retention/data")
    assert status == 200
    assert erased["conversations_deleted"] == 3
    for conversation in mine:
        with pytest.raises(openai.NotFoundError):
            await client.conversations.retrieve(conversation.id)
        assert await app.conversations.items(_tenant_a(), conversation.id) is None
    assert len((await other.conversations.items.list(theirs.id)).data) == 1
    _, again = await raw_json(client, "DELETE", "/retention/data")
    assert again["conversations_deleted"] == 0


# -- bad input -----------------------------------------------------------------------------------


BAD_REQUESTS = [
    ("POST", "/conversations", {"items": "not a list"}, "items"),
    ("POST", "/conversations", {"items": [user(f"{n}") for n in range(21)]}, "items"),
    ("POST", "/conversations", {"items": ["a string"]}, "items[0]"),
    ("POST", "/conversations", {"items": [{"content": "no type or role"}]}, "items[0].type"),
    ("POST", "/conversations", {"items": [{**user("x"), "id": {"$ne": None}}]}, "items[0].id"),
    ("POST", "/conversations", {"metadata": "text"}, "metadata"),
    ("POST", "/conversations", {"metadata": {str(n): "v" for n in range(17)}}, "metadata"),
    ("POST", "/conversations", {"metadata": {"k": 1}}, "metadata"),
    ("POST", "/conversations/{id}", {}, "metadata"),
    ("POST", "/conversations/{id}/items", {}, "items"),
    ("GET", "/conversations/{id}/items?limit=0", None, "limit"),
    ("GET", "/conversations/{id}/items?limit=101", None, "limit"),
    ("GET", "/conversations/{id}/items?order=sideways", None, "order"),
    ("GET", "/conversations/{id}/items?after=%7B%22%24ne%22%3A1%7D", None, "after"),
    ("GET", "/conversations/{id}/items?after=msg_notthere", None, "after"),
    ("GET", "/conversations/{id}/items?include=everything", None, "include"),
    ("GET", "/conversations/bad$id", None, "conversation_id"),
    ("GET", "/conversations/{id}/items/bad$id", None, "item_id"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "param"), BAD_REQUESTS)
async def test_bad_parameters_are_400_naming_the_param(
    client: AsyncOpenAI, method: str, path: str, body: Any, param: str
) -> None:
    conversation = await client.conversations.create(items=[user("unharmed")])
    status, answer = await raw_json(client, method, path.replace("{id}", conversation.id), json=body)
    assert status == 400, answer
    assert answer["error"]["param"] == param
    assert answer["error"]["type"] == "invalid_request_error"
    assert_matches_schema(answer, "ErrorResponse")
    # Nothing changed.
    items = [text_of(item) async for item in client.conversations.items.list(conversation.id)]
    assert items == ["unharmed"]
    assert (await client.conversations.retrieve(conversation.id)).metadata == {}


async def test_bad_conversation_parameter_on_responses_is_a_400(
    client: AsyncOpenAI, upstream: RecordingUpstream
) -> None:
    for value, param in [
        ({"$ne": None}, "conversation.id"),
        ("bad$id", "conversation"),
        (5, "conversation"),
        ({"id": 5}, "conversation.id"),
        ({"name": "x"}, "conversation.id"),
    ]:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model=MODEL, input="x", conversation=value)  # type: ignore[arg-type]
        assert refused.value.param == param
    assert upstream.bodies == []


async def test_malformed_json_is_a_400_and_unknown_methods_are_405(client: AsyncOpenAI) -> None:
    response = await client._client.post(
        "http://testserver/v1/conversations", content=b"{not json", headers={"authorization": "Bearer sk-tenant-a"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    status, answer = await raw_json(client, "PUT", "/conversations")
    assert status == 405 and answer["error"]["code"] == "method_not_allowed"


# -- store failures and logs -------------------------------------------------------------------


async def test_a_turn_that_cannot_join_its_conversation_is_not_stored_either(
    make_mongo_store: MongoStoreFactory,
    mongo_client: MongoClient,
    clock: FakeClock,
    upstream: RecordingUpstream,
    clients: Callable[[RetentionMiddleware, str], AsyncOpenAI],
) -> None:
    store = make_mongo_store(mongo_timeout=timedelta(milliseconds=500))
    app = RetentionMiddleware(upstream, RetentionSettings(tenant_secret=SECRET), store=store, clock=clock)
    client = clients(app, "sk-tenant-a")
    conversation = await client.conversations.create(items=[user("before")])
    # Adding the turn starts with a findAndModify of the conversation; make exactly that one fail.
    await mongo_client.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": {"times": 1},
            "data": {"failCommands": ["findAndModify"], "errorCode": 2},
        }
    )
    with capture_all_logs() as logs:
        response = await client.responses.create(model=MODEL, input="lost turn", conversation=conversation.id)
    assert response.output_text == "lost turn"  # served all the same (RETENTION_STORE_FAILURE=serve)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)  # all or nothing: the response went too
    assert [text_of(item) async for item in client.conversations.items.list(conversation.id)] == ["before"]
    access = [json.loads(line) for line in logs.access_lines() if '"/v1/responses"' in line]
    assert access[-1]["stored"] is False and access[-1]["error"] == "store_unavailable"


async def test_a_database_that_is_down_answers_503_not_500(
    make_mongo_store: MongoStoreFactory,
    mongo_server: MongoTestServer,
    clock: FakeClock,
    upstream: RecordingUpstream,
    clients: Callable[[RetentionMiddleware, str], AsyncOpenAI],
) -> None:
    store = make_mongo_store(mongo_timeout=timedelta(milliseconds=300))
    app = RetentionMiddleware(upstream, RetentionSettings(tenant_secret=SECRET), store=store, clock=clock)
    client = clients(app, "sk-tenant-a")
    conversation = await client.conversations.create()
    mongo_server.stop()
    for call in (
        client.conversations.retrieve(conversation.id),
        client.conversations.items.create(conversation.id, items=[user("x")]),
        client.responses.create(model=MODEL, input="x", conversation=conversation.id),
    ):
        with pytest.raises(openai.InternalServerError) as failed:
            await call
        assert failed.value.status_code == 503 and failed.value.code == "store_unavailable"
    assert upstream.bodies == []  # the history could not be read, so nothing went upstream


async def test_a_full_memory_store_refuses_new_items_whole(
    clock: FakeClock, upstream: RecordingUpstream, clients: Callable[[RetentionMiddleware, str], AsyncOpenAI]
) -> None:
    store = MemoryStore(8192, clock=clock)
    app = RetentionMiddleware(upstream, RetentionSettings(tenant_secret=SECRET), store=store, clock=clock)
    client = clients(app, "sk-tenant-a")
    conversation = await client.conversations.create(items=[user("small")])
    used = store.used_bytes
    with pytest.raises(openai.InternalServerError) as full:
        await client.conversations.items.create(conversation.id, items=[user("x" * 500) for _ in range(20)])
    assert full.value.status_code == 503 and full.value.code == "store_full"
    assert store.used_bytes == used
    assert [text_of(item) async for item in client.conversations.items.list(conversation.id)] == ["small"]
    await store.close()


async def test_conversation_content_never_reaches_a_log(client: AsyncOpenAI, upstream: RecordingUpstream) -> None:
    canary = "canary-conversation-7f3a9c"
    upstream.log_bodies = True
    with capture_all_logs() as logs:
        conversation = await client.conversations.create(items=[user(canary)], metadata={"note": canary})
        await client.conversations.items.create(conversation.id, items=[user(f"{canary} again")])
        await client.responses.create(model=MODEL, input="next", conversation=conversation.id)
        [item async for item in client.conversations.items.list(conversation.id)]
    assert canary in json.dumps(upstream.bodies[-1])  # the history really went upstream
    assert "upstream.server" in logs.text() and "[redacted]" in logs.text()  # it was logged, guarded
    assert logs.access_lines() and canary not in logs.text()


# -- against OpenAI's own traffic ----------------------------------------------------------------


def shape(value: Any) -> Any:
    """A JSON value with every scalar replaced by its type: what must match OpenAI's answers."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


async def test_openais_recorded_conversation_gets_the_same_answers(
    response_store: ResponseStore, clock: FakeClock
) -> None:
    # Recorded against api.openai.com: create, a streamed turn, items.create, a second turn, items.list.
    turns = load("conversations-continuation-stream-openai.yaml")
    upstream = ReplayUpstream([turn for turn in turns if turn.path == "/v1/responses"])
    app = RetentionMiddleware(upstream, RetentionSettings(), store=response_store, clock=clock)
    recorded_id = turns[0].response_json["id"]
    ours: dict[str, Any] = {}
    async with asgi_client(app) as http:
        for turn in turns:
            conversation_id = ours.get("t1", {}).get("id", recorded_id)
            body = json.loads(json.dumps(turn.request_body).replace(recorded_id, conversation_id))
            response = await http.request(
                turn.method, turn.path.replace(recorded_id, conversation_id), params=turn.query,
                json=body if turn.method != "GET" else None,
            )  # fmt: skip
            assert response.status_code == turn.status, turn.name
            if turn.is_sse:
                assert response.content == turn.response_bytes  # the upstream's stream, untouched
                continue
            ours[turn.name] = response.json()
            assert shape(ours[turn.name]) == shape(turn.response_json), turn.name
    listed, recorded = ours["t5"]["data"], turns[4].response_json["data"]
    assert [text_of(item) for item in listed] == [text_of(item) for item in recorded]
    assert [item["role"] for item in listed] == [item["role"] for item in recorded]
    # The assistant items are the upstream's output items, ids and all.
    assert [item["id"] for item in listed if item["role"] == "assistant"] == [
        item["id"] for item in recorded if item["role"] == "assistant"
    ]
    # The second turn reached the upstream with the whole conversation before it, and no conversation.
    second = orjson.loads(upstream.received[1])
    assert "conversation" not in second and second["store"] is False
    assert [text_of(item) for item in second["input"]] == [text_of(item) for item in recorded[:4]]
