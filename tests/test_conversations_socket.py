"""Conversations and caller-held keys over the Responses WebSocket mode, with the official openai
client's ``responses.connect()`` against the middleware under uvicorn.

Each ``response.create`` on the socket is served as a POST through the middleware, so what works over
HTTP must work here: a ``conversation`` is prepended upstream and appended to after the turn, and in
caller-key mode what a socket stores is sealed under the caller's own key and opens only with it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from test_openai_client import MODEL, RecordingUpstream, sent_text

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.crypto import SEALED, EncryptingStore
from retention_middleware.crypto.conversations import EncryptingConversationStore
from retention_middleware.tenancy import TenantResolver

from support.crypto_tools import as_caller
from support.servers import aserve

WS = "websockets-sansio"  # uvicorn's WebSocket protocol on the websockets library
TERMINAL = ("response.completed", "response.incomplete", "response.failed", "error")
SECRET = "conversations-socket-secret-0123456789"


@pytest.fixture(params=["memory", "mongo"])
def settings(request: pytest.FixtureRequest) -> RetentionSettings:
    if request.param == "memory":
        return RetentionSettings(tenant_secret=SECRET)
    mongo: RetentionSettings = request.getfixturevalue("mongo_settings")
    return dataclasses.replace(mongo, tenant_secret=SECRET)


@pytest.fixture
def upstream() -> RecordingUpstream:
    return RecordingUpstream()


def sdk(url: str, api_key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0, timeout=10)


async def socket_turns(client: AsyncOpenAI, *turns: dict[str, Any]) -> list[Any]:
    """Send each turn on one socket (a turn naming ``previous_response_id=...`` continues the one
    before it) and give back each turn's terminal event."""
    finals: list[Any] = []
    async with client.responses.connect() as connection:
        for turn in turns:
            if turn.get("previous_response_id") is ...:
                turn = {**turn, "previous_response_id": finals[-1].response.id}
            await connection.response.create(model=MODEL, **turn)
            async for event in connection:
                if event.type in TERMINAL:
                    finals.append(event)
                    break
    assert all(final.type == "response.completed" for final in finals), finals
    return finals


def text_of(item: Any) -> str:
    return "".join(part.text for part in item.content)


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


async def test_two_socket_turns_in_one_conversation_prepend_and_append_like_http(
    settings: RetentionSettings, upstream: RecordingUpstream
) -> None:
    app = RetentionMiddleware(upstream, settings)
    async with aserve(app, lifespan="on", ws=WS) as url, sdk(url, "sk-a") as client:
        conversation = await client.conversations.create(items=[user("opening line")])
        first, second = await socket_turns(
            client, {"input": "red green", "conversation": conversation.id},
            {"input": [user("blue")], "conversation": {"id": conversation.id}},
        )  # fmt: skip
        items = [item async for item in client.conversations.items.list(conversation.id, order="asc")]
        stored = await client.responses.retrieve(second.response.id)
        with pytest.raises(openai.NotFoundError):  # another tenant's socket turn cannot use it
            async with sdk(url, "sk-b") as other:
                await other.conversations.retrieve(conversation.id)
    sent = upstream.bodies("/v1/responses")
    assert all(body["store"] is False and "conversation" not in body for body in sent)
    assert [sent_text(item) for item in sent[0]["input"]] == ["opening line", "red green"]
    assert [sent_text(item) for item in sent[1]["input"]] == ["opening line", "red green", "red green", "blue"]
    assert [(item.role, text_of(item)) for item in items] == [  # type: ignore[union-attr]
        ("user", "opening line"),
        ("user", "red green"), ("assistant", "red green"),
        ("user", "blue"), ("assistant", "blue"),
    ]  # fmt: skip
    assert items[2].id == first.response.output[0].id and items[4].id == second.response.output[0].id
    # The socket's events and the stored copy name the conversation, as over HTTP.
    assert first.response.conversation.id == second.response.conversation.id == conversation.id
    assert stored.conversation is not None and stored.conversation.id == conversation.id


async def test_a_socket_turn_in_a_missing_conversation_is_an_error_event_and_the_socket_goes_on(
    upstream: RecordingUpstream,
) -> None:
    app = RetentionMiddleware(upstream, RetentionSettings(tenant_secret=SECRET))
    async with aserve(app, lifespan="on", ws=WS) as url, sdk(url, "sk-a") as client:
        async with client.responses.connect() as connection:
            await connection.response.create(model=MODEL, input="x", conversation="conv_missing")
            error = await connection.recv()
            await connection.response.create(model=MODEL, input="still here")
            events = [event async for event in _until_terminal(connection)]
    assert error.type == "error" and error.error.code == "not_found"  # type: ignore[union-attr]
    assert "conv_missing" in error.error.message  # type: ignore[union-attr]
    assert events[-1].type == "response.completed"
    assert len(upstream.bodies("/v1/responses")) == 1  # the refused turn never reached the upstream


async def _until_terminal(connection: Any) -> AsyncIterator[Any]:
    async for event in connection:
        yield event
        if event.type in TERMINAL:
            return


# -- caller-held keys over the socket ---------------------------------------------------------------


def tenant_of(api_key: str) -> str:
    return TenantResolver(SECRET, None).tenant_of([(b"authorization", f"Bearer {api_key}".encode())])


async def test_caller_key_socket_turns_are_stored_sealed_rehydrate_and_open_with_that_key_only(
    settings: RetentionSettings, upstream: RecordingUpstream
) -> None:
    canary = f"CANARY-{uuid.uuid4().hex}"
    app = RetentionMiddleware(upstream, dataclasses.replace(settings, encryption="caller-key"))
    async with aserve(app, lifespan="on", ws=WS) as url, sdk(url, "sk-a") as client:
        conversation = await client.conversations.create()
        first, second, third = await socket_turns(
            client, {"input": f"the code word is {canary}"}, {"input": "what was it", "previous_response_id": ...},
            {"input": f"in a conversation {canary}", "conversation": conversation.id},
        )  # fmt: skip
        # The right key reads over HTTP what the socket stored; another key reads nothing.
        assert (await client.responses.retrieve(second.response.id)).previous_response_id == first.response.id
        items = [item async for item in client.conversations.items.list(conversation.id, order="asc")]
        async with sdk(url, "sk-b") as other:
            with pytest.raises(openai.NotFoundError):
                await other.responses.retrieve(first.response.id)
            with pytest.raises(openai.NotFoundError):
                await other.conversations.items.list(conversation.id)
            refused = await _refused_continuation(other, first.response.id)
        # The operator's view: the records are there, sealed; the same tenant with another key (what the
        # server secret and the database alone give) opens none of them. A MongoDB client belongs to
        # the loop that made it, so MongoDB is read here through a middleware of this loop.
        viewer = app if not settings.uses_mongodb else RetentionMiddleware(upstream, app.settings)
        store, conversations = viewer.store, viewer.conversations
        assert isinstance(store, EncryptingStore) and isinstance(conversations, EncryptingConversationStore)
        tenant = tenant_of("sk-a")
        try:
            held = await store.inner.get(tenant, first.response.id)
            kept = await conversations.inner.items(tenant, conversation.id)
            with as_caller("sk-b"):
                assert await store.get(tenant, first.response.id) is None
                assert await conversations.items(tenant, conversation.id) is None
            with as_caller(None):
                assert await store.get(tenant, first.response.id) is None
            with as_caller("sk-a"):  # the check itself can open: it is the key that matters
                assert await store.get(tenant, first.response.id) is not None
        finally:
            if viewer is not app:
                await viewer.store.close()
        assert held is not None and set(held.response) == {SEALED} and canary not in repr(held)
        assert kept is not None and len(kept) == 2 and canary not in repr(kept)
    # Rehydrated from the sealed store: the second turn's upstream request held the first turn.
    sent = upstream.bodies("/v1/responses")
    assert [sent_text(item) for item in sent[1]["input"]] == [f"the code word is {canary}"] * 2 + ["what was it"]
    assert second.response.previous_response_id == first.response.id
    assert third.response.conversation.id == conversation.id
    assert [text_of(item) for item in items] == [f"in a conversation {canary}"] * 2
    assert refused.error.code == "previous_response_not_found"  # type: ignore[union-attr]


async def _refused_continuation(client: AsyncOpenAI, previous_id: str) -> Any:
    async with client.responses.connect() as connection:
        await connection.response.create(model=MODEL, input="tell me", previous_response_id=previous_id)
        return await connection.recv()
