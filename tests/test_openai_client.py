"""The Responses API store through the official ``openai`` client, over a real socket.

``RetentionMiddleware`` wraps the echo model (behind a wrapper that records every body the upstream
received) and runs under uvicorn on a loopback port; ``AsyncOpenAI`` talks to it as to api.openai.com.
What the SDK parses and raises is what a user of the middleware gets, so these tests assert on the
SDK's objects and errors, and on what reached the upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson
import pytest
from openai import AsyncOpenAI

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Receive, Scope, Send
from retention_middleware.demo import EchoModel
from retention_middleware.wire.request_body import replay

from support.asgi_tools import read_request_body
from support.servers import aserve

MODEL = "demo-echo"
DEADLINE = 10.0


class RecordingUpstream:
    """The echo model, remembering the path and JSON body of every request that reached it."""

    def __init__(self) -> None:
        self.echo = EchoModel(MODEL)
        self.requests: list[tuple[str, str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.echo(scope, receive, send)
            return
        body = await read_request_body(receive)
        self.requests.append((scope["method"], scope["path"], orjson.loads(body) if body else None))
        await self.echo(scope, replay(body, receive), send)  # later receives: only the disconnect

    def bodies(self, path: str) -> list[Any]:
        return [body for _, seen_path, body in self.requests if seen_path == path]


@pytest.fixture
async def upstream() -> RecordingUpstream:
    return RecordingUpstream()


@pytest.fixture
async def client(upstream: RecordingUpstream) -> AsyncIterator[AsyncOpenAI]:
    app = RetentionMiddleware(upstream, RetentionSettings())
    async with aserve(app, lifespan="on") as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0, timeout=DEADLINE) as sdk:
            yield sdk


def texts(items: list[Any]) -> list[str]:
    return [item.content[0].text for item in items]


def sent_text(item: dict[str, Any]) -> str:
    """The text of an input item as sent upstream: a string, or content parts."""
    content = item["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


# -- create, retrieve, delete ------------------------------------------------------------------------


async def test_create_then_retrieve_returns_what_the_client_saw(
    client: AsyncOpenAI, upstream: RecordingUpstream
) -> None:
    created = await client.responses.create(model=MODEL, input="hello stored world", instructions="Echo it.")
    assert created.output_text == "hello stored world"
    assert created.store is True
    assert created.usage is not None and created.usage.output_tokens == 3

    retrieved = await client.responses.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    # The upstream was told to keep nothing, and never asked for the stored copy.
    assert [(method, path) for method, path, _ in upstream.requests] == [("POST", "/v1/responses")]
    assert upstream.bodies("/v1/responses")[0]["store"] is False


async def test_a_streamed_response_is_retrievable_as_soon_as_it_completes(client: AsyncOpenAI) -> None:
    stream = await client.responses.create(model=MODEL, input="streamed and kept", stream=True)
    kinds: list[str] = []
    retrieved_at_completion = None
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.completed":
            # Persisted before the terminal event went out: a GET from another connection finds it now.
            retrieved_at_completion = await client.responses.retrieve(event.response.id)
            completed = event.response
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 3
    assert retrieved_at_completion is not None
    assert retrieved_at_completion.model_dump() == completed.model_dump()
    assert retrieved_at_completion.output_text == "streamed and kept"


async def test_delete_then_not_found_everywhere(client: AsyncOpenAI) -> None:
    created = await client.responses.create(model=MODEL, input="short lived")
    assert await client.responses.delete(created.id) is None

    with pytest.raises(openai.NotFoundError) as retrieve_error:
        await client.responses.retrieve(created.id)
    assert retrieve_error.value.status_code == 404
    assert f"Response with id '{created.id}' not found." in str(retrieve_error.value)
    with pytest.raises(openai.NotFoundError):
        await client.responses.input_items.list(created.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.delete(created.id)


async def test_store_false_leaves_nothing_behind(client: AsyncOpenAI, upstream: RecordingUpstream) -> None:
    created = await client.responses.create(model=MODEL, input="not for keeping", store=False)
    assert created.store is False and created.output_text == "not for keeping"
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(created.id)
    with pytest.raises(openai.BadRequestError) as continued:
        await client.responses.create(model=MODEL, input="and then?", previous_response_id=created.id)
    assert continued.value.code == "previous_response_not_found"
    assert continued.value.param == "previous_response_id"
    # The refused continuation never reached the upstream.
    assert len(upstream.bodies("/v1/responses")) == 1


# -- input items -------------------------------------------------------------------------------------


async def test_input_items_page_both_ways(client: AsyncOpenAI) -> None:
    words = ["zero", "one", "two", "three", "four"]
    created = await client.responses.create(
        model=MODEL, input=[{"role": "user", "content": f"item {word}"} for word in words]
    )
    expected = [f"item {word}" for word in words]
    assert created.output_text == "item four"

    for order, ordered in (("asc", expected), ("desc", expected[::-1])):
        first = await client.responses.input_items.list(created.id, order=order, limit=2)
        assert texts(first.data) == ordered[:2] and first.has_more is True
        second = await client.responses.input_items.list(created.id, order=order, limit=2, after=first.data[-1].id)
        assert texts(second.data) == ordered[2:4] and second.has_more is True
        third = await second.get_next_page()
        assert texts(third.data) == ordered[4:] and third.has_more is False
        assert not third.has_next_page()

    everything = await client.responses.input_items.list(created.id)
    assert texts(everything.data) == expected[::-1]  # default order: newest first
    ids = [item.id for item in everything.data]
    assert len(set(ids)) == 5 and all(item_id.startswith("msg_") for item_id in ids)
    assert all(item.type == "message" and item.role == "user" for item in everything.data)

    # The SDK's auto-pagination follows the ``after`` cursor to the end.
    auto_asc = [item async for item in client.responses.input_items.list(created.id, order="asc", limit=2)]
    auto_desc = [item async for item in client.responses.input_items.list(created.id, limit=2)]
    assert texts(auto_asc) == expected and texts(auto_desc) == expected[::-1]
    assert [item.id for item in auto_asc] == ids[::-1]


async def test_input_items_reject_a_bad_limit_naming_it(client: AsyncOpenAI) -> None:
    created = await client.responses.create(model=MODEL, input="limits")
    with pytest.raises(openai.BadRequestError) as error:
        await client.responses.input_items.list(created.id, limit=101)
    assert error.value.param == "limit"


# -- conversations -----------------------------------------------------------------------------------


async def test_three_turns_send_the_whole_conversation_upstream(
    client: AsyncOpenAI, upstream: RecordingUpstream
) -> None:
    first = await client.responses.create(model=MODEL, input="alpha bravo", instructions="Only for turn one.")
    second = await client.responses.create(model=MODEL, input="charlie delta", previous_response_id=first.id)
    third = await client.responses.create(
        model=MODEL, input=[{"role": "user", "content": "echo foxtrot"}], previous_response_id=second.id
    )
    outputs = [first.output_text, second.output_text, third.output_text]
    assert outputs == ["alpha bravo", "charlie delta", "echo foxtrot"]
    assert (second.previous_response_id, third.previous_response_id) == (first.id, second.id)

    sent = upstream.bodies("/v1/responses")
    assert len(sent) == 3
    assert all(body["store"] is False and body.get("previous_response_id") is None for body in sent)
    assert "instructions" not in sent[1] or sent[1]["instructions"] is None  # not carried over (OpenAI's rule)
    history = sent[2]["input"]
    assert [item.get("role") for item in history] == ["user", "assistant", "user", "assistant", "user"]
    assert [sent_text(item) for item in history] == [
        "alpha bravo", "alpha bravo", "charlie delta", "charlie delta", "echo foxtrot",
    ]  # fmt: skip
    assert (history[1]["id"], history[3]["id"]) == (first.output[0].id, second.output[0].id)
    # The upstream counted every word it was sent: the rehydrated history is what it generated from.
    assert third.usage is not None and third.usage.input_tokens == 10

    # A stored turn shows the input of its own turn only.
    third_items = await client.responses.input_items.list(third.id)
    assert texts(third_items.data) == ["echo foxtrot"]


async def test_a_conversation_through_a_deleted_turn_is_refused(
    client: AsyncOpenAI, upstream: RecordingUpstream
) -> None:
    first = await client.responses.create(model=MODEL, input="secret first turn")
    second = await client.responses.create(model=MODEL, input="second", previous_response_id=first.id)
    await client.responses.delete(first.id)
    with pytest.raises(openai.BadRequestError) as error:
        await client.responses.create(model=MODEL, input="third", previous_response_id=second.id)
    assert first.id in str(error.value)
    assert error.value.param == "previous_response_id"
    assert len(upstream.bodies("/v1/responses")) == 2  # deleted content was never sent again


# -- chat completions --------------------------------------------------------------------------------


async def test_chat_completion_plain(client: AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ping pong"}]
    )
    assert completion.choices[0].message.content == "ping pong"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 2)


async def test_streamed_chat_shows_usage_only_when_asked(client: AsyncOpenAI, upstream: RecordingUpstream) -> None:
    messages: Any = [{"role": "user", "content": "one two three"}]
    plain = [chunk async for chunk in await client.chat.completions.create(model=MODEL, messages=messages, stream=True)]
    asked = [
        chunk
        async for chunk in await client.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    ]
    assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices) == "one two three"
    assert all(chunk.usage is None and chunk.choices for chunk in plain)

    usage_chunks = [chunk for chunk in asked if chunk.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is asked[-1]
    assert usage_chunks[0].choices == []
    assert (usage_chunks[0].usage.prompt_tokens, usage_chunks[0].usage.completion_tokens) == (3, 3)
    assert [chunk.choices for chunk in plain] == [chunk.choices for chunk in asked[:-1]]
    # Both times the upstream was asked for usage, so both streams were metered.
    sent = upstream.bodies("/v1/chat/completions")
    assert [body["stream_options"]["include_usage"] for body in sent] == [True, True]
