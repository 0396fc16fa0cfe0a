"""The stored Responses API in front of a chat-only server, through the official ``openai`` client.

The upstream (tests/support/chat_upstream.py) serves ``/v1/chat/completions`` and 404s everything
else, as TGI and llama.cpp do. What the SDK parses is what a user gets; what the upstream received
shows the translation and that it stays stateless.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson
import pytest
from openai import AsyncOpenAI

from retention_middleware import RetentionMiddleware, RetentionSettings

from support.asgi_tools import SentMessages, asgi_client, capture_all_logs
from support.chat_upstream import ChatOnlyUpstream
from support.openai_schema import validate, validate_event
from support.servers import aserve

DEADLINE = 10.0
TOOLS: list[Any] = [
    {"type": "function", "name": "get_job_status", "description": "Job state.",
     "parameters": {"type": "object", "properties": {"job": {"type": "string"}}}},
    {"type": "function", "name": "get_error_logs", "parameters": {"type": "object", "properties": {}}},
]  # fmt: skip


@pytest.fixture
def upstream() -> ChatOnlyUpstream:
    return ChatOnlyUpstream(reasoning=True)


@pytest.fixture(params=["chat", "auto"])
async def client(request: pytest.FixtureRequest, upstream: ChatOnlyUpstream) -> AsyncIterator[AsyncOpenAI]:
    app = RetentionMiddleware(upstream, RetentionSettings(responses_backend=request.param))
    async with aserve(app, lifespan="on") as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0, timeout=DEADLINE) as sdk:
            yield sdk


async def test_create_then_retrieve_and_input_items(client: AsyncOpenAI, upstream: ChatOnlyUpstream) -> None:
    created = await client.responses.create(model="m", input="hello chat server", instructions="Be brief.")
    assert created.output_text == "echo: hello chat server"
    assert [item.type for item in created.output] == ["reasoning", "message"]
    assert created.output[0].content[0].text == "thinking about 2 messages"  # type: ignore[union-attr,index]
    assert created.status == "completed" and created.store is True
    assert created.usage is not None and created.usage.output_tokens > 0
    validate(created.model_dump(mode="json", exclude_unset=True), "Response")
    again = await client.responses.retrieve(created.id)
    assert again.model_dump() == created.model_dump()
    items = await client.responses.input_items.list(created.id)
    assert [item.content[0].text for item in items.data] == ["hello chat server"]  # type: ignore[union-attr]
    chat = upstream.chat_bodies()[-1]
    assert chat["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "hello chat server"}]  # fmt: skip
    assert "store" not in chat and "input" not in chat


async def test_auto_asks_the_upstream_once(client: AsyncOpenAI, upstream: ChatOnlyUpstream) -> None:
    await client.responses.create(model="m", input="one")
    await client.responses.create(model="m", input="two")
    probes = [path for _, path, _ in upstream.requests if path == "/v1/responses"]
    assert len(probes) <= 1  # auto asked once (404) and remembered; chat never asks
    assert len(upstream.chat_bodies()) == 2


async def test_stream_then_retrieve(client: AsyncOpenAI, upstream: ChatOnlyUpstream) -> None:
    stream = await client.responses.create(model="m", input="stream me please", stream=True)
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    for event in events:
        validate_event(event.model_dump(mode="json", exclude_unset=True))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == "echo: stream me please"
    completed = events[-1].response  # type: ignore[union-attr]
    assert completed.store is True  # restored for the client, as with a native upstream
    stored = await client.responses.retrieve(completed.id)
    assert stored.output_text == text and stored.usage == completed.usage
    assert upstream.chat_bodies()[-1]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_three_turn_tool_call_round_trip_via_previous_response_id(
    client: AsyncOpenAI, upstream: ChatOnlyUpstream, stream: bool
) -> None:
    async def create(**kwargs: Any) -> Any:
        if not stream:
            return await client.responses.create(model="m", tools=TOOLS, **kwargs)
        events = [event async for event in await client.responses.create(model="m", tools=TOOLS, stream=True,
                                                                         **kwargs)]  # fmt: skip
        return events[-1].response

    def outputs(calls: list[Any]) -> list[Any]:
        return [{"type": "function_call_output", "call_id": call.call_id, "output": f"result of {call.name}"}
                for call in calls]  # fmt: skip

    first = await create(input="why did job-382 fail?")
    calls = [item for item in first.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["get_job_status", "get_error_logs"]  # parallel calls
    assert orjson.loads(calls[0].arguments) == {"query": "why did job-382 fail?", "n": 0}
    second = await create(
        previous_response_id=first.id,
        input=[*outputs(calls), {"role": "user", "content": "and the logs?"}],
        parallel_tool_calls=False,
    )
    second_calls = [item for item in second.output if item.type == "function_call"]
    assert [call.name for call in second_calls] == ["get_job_status"]
    third = await create(previous_response_id=second.id, input=outputs(second_calls))
    assert third.output_text == "echo: result of get_job_status"
    assert third.previous_response_id == second.id

    # The third chat request carries the whole conversation, rebuilt from the store and translated.
    messages = upstream.chat_bodies()[-1]["messages"]
    assert [message["role"] for message in messages] == [
        "user", "assistant", "tool", "tool", "user", "assistant", "tool"]  # fmt: skip
    assert [call["id"] for call in messages[1]["tool_calls"]] == [call.call_id for call in calls]
    assert messages[1]["reasoning_content"] == "thinking about 1 messages"
    assert [messages[2]["tool_call_id"], messages[3]["tool_call_id"]] == [call.call_id for call in calls]
    assert messages[6] == {"role": "tool", "tool_call_id": second_calls[0].call_id,
                           "content": "result of get_job_status"}  # fmt: skip
    assert (await client.responses.retrieve(second.id)).output[-1].type == "function_call"
    items = await client.responses.input_items.list(third.id, order="asc")
    assert [item.type for item in items.data] == ["function_call_output"]


async def test_a_built_in_tool_is_a_400_naming_it(client: AsyncOpenAI, upstream: ChatOnlyUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.responses.create(model="m", input="search", tools=[*TOOLS, {"type": "web_search"}])
    assert raised.value.body["param"] == "tools[2].type"  # type: ignore[index]
    assert raised.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    assert upstream.chat_bodies() == []  # refused before the upstream was called


async def test_length_is_incomplete(client: AsyncOpenAI) -> None:
    cut = await client.responses.create(model="m", input="one two three four", max_output_tokens=2)
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"
    assert cut.output_text == "echo: one"


async def test_logs_stay_content_free_and_metered(client: AsyncOpenAI) -> None:
    canary = "canary-7f3a9c2e1b"
    with capture_all_logs() as logs:
        created = await client.responses.create(model="m", input=f"secret {canary} words", stream=True)
        events = [event async for event in created]
        for _ in range(500):  # the access line is written once the request is done, just after its last byte
            if logs.access_lines():
                break
            await asyncio.sleep(0.01)
    text = logs.text()
    assert "Received request: messages" in text  # the upstream did log its prompt...
    assert canary not in text  # ...and the log guard redacted it
    records = [orjson.loads(line) for line in logs.access_lines()]
    record = records[-1]
    assert record["path"] == "/v1/responses" and record["stored"] is True
    completed = events[-1].response  # type: ignore[union-attr]
    assert record["usage"]["output_tokens"] == completed.usage.output_tokens


async def test_through_the_proxy_forwarder_over_http(upstream: ChatOnlyUpstream) -> None:
    """retention-proxy's own composition: the middleware around the forwarder, auto backend."""
    from retention_middleware.proxy.forwarder import UpstreamProxy

    async with aserve(upstream) as upstream_url:
        settings = RetentionSettings(upstream=upstream_url, responses_backend="auto")
        app = RetentionMiddleware(UpstreamProxy(settings), settings)
        async with aserve(app, lifespan="on") as url:
            async with AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0, timeout=DEADLINE) as sdk:
                created = await sdk.responses.create(model="m", input="over the wire")
                stream = await sdk.responses.create(
                    model="m", input="streamed over the wire", previous_response_id=created.id, stream=True
                )
                events = [event async for event in stream]
                stored = await sdk.responses.retrieve(events[-1].response.id)  # type: ignore[union-attr]
    assert created.output_text == "echo: over the wire"
    assert stored.output_text == "echo: streamed over the wire"
    assert [path for _, path, _ in upstream.requests] == ["/v1/responses", "/v1/chat/completions",
                                                         "/v1/chat/completions"]  # fmt: skip
    assert [m["role"] for m in upstream.chat_bodies()[-1]["messages"]] == ["user", "assistant", "user"]


async def test_each_upstream_chunk_is_one_client_message_and_text_is_not_held() -> None:
    upstream = SentMessages(ChatOnlyUpstream())
    client_side = SentMessages(RetentionMiddleware(upstream, RetentionSettings(responses_backend="chat")))
    async with asgi_client(client_side) as http:
        answer = await http.post("/v1/responses", json={"model": "m", "input": "a b c", "stream": True})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    sent = [message.get("body", b"") for message in upstream.body_messages]
    received = [message.get("body", b"") for message in client_side.body_messages]
    assert len(received) == len(sent)
    first_text = next(i for i, body in enumerate(sent) if b'"content":"echo:"' in body)
    assert b'"delta":"echo:"' in received[first_text]
    assert b"response.completed" in received[-1]


async def test_a_server_answering_json_to_a_streamed_request_still_streams_to_the_client() -> None:
    upstream = ChatOnlyUpstream(reasoning=True, ignore_stream=True)
    app = RetentionMiddleware(upstream, RetentionSettings(responses_backend="chat"))
    async with aserve(app, lifespan="on") as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0, timeout=DEADLINE) as sdk:
            events = [event async for event in await sdk.responses.create(model="m", input="hi", stream=True)]
            stored = await sdk.responses.retrieve(events[-1].response.id)  # type: ignore[union-attr]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: hi"
    assert [item.type for item in stored.output] == ["reasoning", "message"]


async def test_store_false_keeps_nothing(client: AsyncOpenAI, upstream: ChatOnlyUpstream) -> None:
    unstored = await client.responses.create(model="m", input="not kept", store=False)
    assert unstored.store is False and unstored.output_text == "echo: not kept"
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unstored.id)
    assert all("store" not in body for body in upstream.chat_bodies())
