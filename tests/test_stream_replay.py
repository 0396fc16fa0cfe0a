"""``GET /v1/responses/{id}?stream=true``: a stored response replayed as the stream a create sends,
through the official ``openai`` client over a socket, and ``include[]`` on GET."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.demo import EchoModel
from retention_middleware.responses.replay import replay_events

from support.asgi_tools import asgi_client
from support.servers import aserve

MODEL = "demo-echo"


@pytest.fixture
async def client() -> AsyncIterator[AsyncOpenAI]:
    app = RetentionMiddleware(EchoModel(MODEL), RetentionSettings())
    async with aserve(app, lifespan="on") as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0, timeout=10) as sdk:
            yield sdk


def shape(events: list[Any]) -> list[tuple[str, Any, Any]]:
    """Event types with the item and output index they concern, consecutive deltas of one part as
    one: the replay sends each part's text as a single delta (deltas are never stored)."""
    out: list[tuple[str, Any, Any]] = []
    for event in events:
        key = (event.type, getattr(event, "item_id", None), getattr(event, "output_index", None))
        if event.type.endswith(".delta") and out and out[-1] == key:
            continue
        out.append(key)
    return out


async def test_retrieve_with_stream_yields_the_events_of_the_original_stream(client: AsyncOpenAI) -> None:
    original = [event async for event in await client.responses.create(model=MODEL, input="a b c d", stream=True)]
    response_id = original[-1].response.id
    replayed = [event async for event in await client.responses.retrieve(response_id, stream=True)]
    assert shape(replayed) == shape(original)
    assert [e.sequence_number for e in replayed] == list(range(len(replayed)))
    assert replayed[-1].type == "response.completed"
    assert replayed[-1].response.model_dump() == original[-1].response.model_dump()
    delta_text = "".join(e.delta for e in replayed if e.type == "response.output_text.delta")
    assert delta_text == "a b c d" == replayed[-1].response.output_text
    assert replayed[0].response.status == "in_progress" and replayed[0].response.output == []


async def test_starting_after_resumes_after_that_sequence_number(client: AsyncOpenAI) -> None:
    created = await client.responses.create(model=MODEL, input="resume me here")
    whole = [event async for event in await client.responses.retrieve(created.id, stream=True)]
    rest = [event async for event in await client.responses.retrieve(created.id, stream=True, starting_after=3)]
    assert [e.sequence_number for e in rest] == [e.sequence_number for e in whole][4:]
    assert rest[-1].type == "response.completed"


async def test_replay_of_another_tenants_response_is_404(client: AsyncOpenAI) -> None:
    app = RetentionMiddleware(EchoModel(MODEL), RetentionSettings(tenant_secret="s" * 32))
    async with asgi_client(app, headers={"authorization": "Bearer sk-alice"}) as alice:
        created = (await alice.post("/v1/responses", json={"model": MODEL, "input": "mine"})).json()
    async with asgi_client(app, headers={"authorization": "Bearer sk-bob"}) as bob:
        answer = await bob.get(f"/v1/responses/{created['id']}", params={"stream": "true"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("query", "param"),
    [({"stream": "maybe"}, "stream"), ({"starting_after": "-1"}, "starting_after"), ({"include[]": "x"}, "include")],
)
async def test_bad_retrieve_parameters_are_400_naming_them(
    client: AsyncOpenAI, query: dict[str, str], param: str
) -> None:
    created = await client.responses.create(model=MODEL, input="hello")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.retrieve(created.id, extra_query=query)
    assert caught.value.body["param"] == param  # type: ignore[index]


def test_replay_covers_function_calls_reasoning_and_refusals() -> None:
    response = {
        "id": "resp_1", "object": "response", "status": "incomplete", "output": [
            {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
            {"id": "fc_1", "type": "function_call", "call_id": "c", "name": "f", "arguments": "{}",
             "status": "completed"},
            {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
             "content": [{"type": "refusal", "refusal": "no"}]},
        ],
    }  # fmt: skip
    types = [event["type"] for event in replay_events(response)]
    assert types == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.refusal.delta",
        "response.refusal.done", "response.content_part.done", "response.output_item.done",
        "response.incomplete",
    ]  # fmt: skip


async def test_include_on_get_shows_opt_in_fields_only_when_asked() -> None:
    logprobs = [{"token": "hi", "logprob": -0.1, "bytes": [104, 105], "top_logprobs": []}]

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        body = (
            b'{"id":"resp_inc","object":"response","created_at":1,"status":"completed","model":"m",'
            b'"output":[{"id":"rs_1","type":"reasoning","summary":[],"encrypted_content":"opaque"},'
            b'{"id":"msg_1","type":"message","role":"assistant","status":"completed","content":'
            b'[{"type":"output_text","text":"hi","annotations":[],"logprobs":'
            + __import__("orjson").dumps(logprobs)
            + b"}]}]}"
        )
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    app = RetentionMiddleware(upstream, RetentionSettings())
    async with asgi_client(app) as http:
        await http.post("/v1/responses", json={"model": "m", "input": "x"})
        plain = (await http.get("/v1/responses/resp_inc")).json()
        asked = (
            await http.get(
                "/v1/responses/resp_inc?include[]=message.output_text.logprobs&include=reasoning.encrypted_content"
            )
        ).json()
    assert plain["output"][0]["encrypted_content"] is None
    assert plain["output"][1]["content"][0]["logprobs"] == []
    assert asked["output"][0]["encrypted_content"] == "opaque"
    assert asked["output"][1]["content"][0]["logprobs"] == logprobs
