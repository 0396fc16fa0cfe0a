"""Every body and event the middleware serves, validated against the OpenAI OpenAPI spec.

The spec is vendored at a pinned revision (tests/spec/) and checked with ``jsonschema``
(support/spec.py), never by hand-written shape checks. The middleware runs in front of the demo echo
model, which is what ``retention-proxy --demo`` serves: JSON and SSE creates, stored and replayed
responses, input items of every kind of input, the list extension, deletes, compaction, token
counts, WebSocket mode, errors, and the endpoints the upstream owns (chat completions, completions,
embeddings, models).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import websockets

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.demo import EchoModel

from support.asgi_tools import asgi_client
from support.servers import aserve
from support.spec import SpecValidator

MODEL = "demo-echo"
TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip
INPUTS: list[Any] = [
    "a plain string input",
    [{"role": "user", "content": "shorthand user"}, {"role": "assistant", "content": "shorthand assistant"}],
    [{"type": "message", "role": "system", "content": "be brief"},
     {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev note"}]},
     {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "parts"}]}],
    [{"type": "message", "role": "user", "content": "call it"},
     {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"},
     {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
    [{"type": "message", "role": "assistant", "id": "msg_given", "status": "completed",
      "content": [{"type": "output_text", "text": "earlier answer"}]}, {"role": "user", "content": "go on"}],
]  # fmt: skip


@pytest.fixture(scope="module")
def spec() -> Iterator[SpecValidator]:
    validator = SpecValidator()
    yield validator
    # The number the closing note of issue 12 quotes: shown with `pytest -s` or `-rP`.
    print(f"\nspec validations made by test_conformance: {validator.count}")


@pytest.fixture
def app() -> RetentionMiddleware:
    return RetentionMiddleware(EchoModel(MODEL), RetentionSettings())


@pytest.fixture
async def http(app: RetentionMiddleware) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as client:
        yield client


def sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def check_stream(spec: SpecValidator, events: list[dict[str, Any]]) -> None:
    assert events, "no events"
    for event in events:
        spec.check(event, "ResponseStreamEvent")
        if isinstance(event.get("response"), dict):
            spec.check(event["response"], "Response")


def check_error(spec: SpecValidator, answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status
    spec.check(answer.json(), "ErrorResponse")


@pytest.mark.parametrize("value", INPUTS)
@pytest.mark.parametrize("tools", [[], [TOOL]])
async def test_created_stored_and_listed_bodies_are_valid(
    spec: SpecValidator, http: httpx.AsyncClient, value: Any, tools: list[Any]
) -> None:
    body = {"model": MODEL, "input": value, "tools": tools, "instructions": "Echo.", "metadata": {"k": "v"}}
    created = (await http.post("/v1/responses", json=body)).json()
    spec.check(created, "Response")
    stored = await http.get(f"/v1/responses/{created['id']}")
    spec.check(stored.json(), "Response")
    for order in ("asc", "desc"):
        page = (await http.get(f"/v1/responses/{created['id']}/input_items", params={"order": order})).json()
        spec.check(page, "ResponseItemList")
        for item in page["data"]:
            spec.check(item, "ItemResource")
    chained = await http.post("/v1/responses", json={**body, "input": "next", "previous_response_id": created["id"]})
    spec.check(chained.json(), "Response")


@pytest.mark.parametrize("value", INPUTS[:2])
async def test_streamed_and_replayed_events_are_valid(spec: SpecValidator, http: httpx.AsyncClient, value: Any) -> None:
    streamed = await http.post("/v1/responses", json={"model": MODEL, "input": value, "stream": True})
    events = sse_events(streamed.text)
    check_stream(spec, events)
    response_id = events[-1]["response"]["id"]
    for query in ({"stream": "true"}, {"stream": "true", "starting_after": "2"}):
        replayed = await http.get(f"/v1/responses/{response_id}", params=query)
        check_stream(spec, sse_events(replayed.text))
    with_include = await http.get(f"/v1/responses/{response_id}", params={"include[]": "message.output_text.logprobs"})
    spec.check(with_include.json(), "Response")
    unstored = await http.post("/v1/responses", json={"model": MODEL, "input": value, "stream": True, "store": False})
    check_stream(spec, sse_events(unstored.text))


async def test_list_delete_compact_and_token_count_bodies_are_valid(
    spec: SpecValidator, http: httpx.AsyncClient
) -> None:
    ids = [(await http.post("/v1/responses", json={"model": MODEL, "input": f"n {n}"})).json()["id"] for n in range(3)]
    for query in ({}, {"limit": "2"}, {"order": "asc", "after": ids[0]}, {"before": ids[0]}):
        listed = (await http.get("/v1/responses", params=query)).json()
        # The envelope is OpenAI's list shape (the input-items list's schema); each entry a Response.
        spec.check({**listed, "data": []}, "ResponseItemList")
        for response in listed["data"]:
            spec.check(response, "Response")
    empty = (await http.get(f"/v1/responses/{ids[0]}/input_items", params={"after": "msg_" + "0" * 40})).status_code
    assert empty == 400
    last_page = await http.get(f"/v1/responses/{ids[0]}/input_items", params={"order": "asc"})
    after_last = last_page.json()["last_id"]
    nothing = (await http.get(f"/v1/responses/{ids[0]}/input_items", params={"after": after_last})).json()
    assert nothing["data"] == []
    spec.check(nothing, "ResponseItemList")
    compacted = await http.post("/v1/responses/compact", json={"model": MODEL, "input": INPUTS[1],
                                                               "previous_response_id": ids[2]})  # fmt: skip
    spec.check(compacted.json(), "CompactResource")
    counted = await http.post("/v1/responses/input_tokens", json={"model": MODEL, "input": "a b",
                                                                  "previous_response_id": ids[2]})  # fmt: skip
    spec.check(counted.json(), "TokenCountsResource")
    deleted = await http.delete(f"/v1/responses/{ids[0]}")
    assert deleted.json() == {"id": ids[0], "object": "response", "deleted": True}  # the spec names no schema


async def test_error_bodies_are_valid(spec: SpecValidator, http: httpx.AsyncClient) -> None:
    check_error(spec, await http.get("/v1/responses/resp_missing"), 404)
    check_error(spec, await http.get("/v1/responses/resp_missing/input_items", params={"limit": "0"}), 400)
    check_error(spec, await http.get("/v1/responses", params={"order": "sideways"}), 400)
    check_error(spec, await http.post("/v1/responses", content=b"{not json"), 400)
    check_error(spec, await http.post("/v1/responses", json={"model": MODEL, "input": "x", "store": "yes"}), 400)
    gone = {"model": MODEL, "input": "x", "previous_response_id": "resp_gone"}
    check_error(spec, await http.post("/v1/responses", json=gone), 400)
    check_error(spec, await http.post("/v1/responses/compact", json=gone), 400)
    check_error(spec, await http.post("/v1/responses/input_tokens", json=gone), 400)
    check_error(spec, await http.delete("/v1/responses/resp_missing"), 404)


async def test_upstream_owned_endpoints_through_the_middleware_are_valid(
    spec: SpecValidator, http: httpx.AsyncClient
) -> None:
    messages = [{"role": "user", "content": "hello there"}]
    spec.check((await http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages})).json(),
               "CreateChatCompletionResponse")  # fmt: skip
    for options in (None, {"include_usage": True}):
        body: dict[str, Any] = {"model": MODEL, "messages": messages, "stream": True}
        if options is not None:
            body["stream_options"] = options
        for chunk in sse_events((await http.post("/v1/chat/completions", json=body)).text):
            spec.check(chunk, "CreateChatCompletionStreamResponse")
    spec.check((await http.post("/v1/completions", json={"model": MODEL, "prompt": "say this"})).json(),
               "CreateCompletionResponse")  # fmt: skip
    spec.check((await http.post("/v1/embeddings", json={"model": MODEL, "input": "embed me"})).json(),
               "CreateEmbeddingResponse")  # fmt: skip
    spec.check((await http.get("/v1/models")).json(), "ListModelsResponse")


async def test_websocket_events_are_valid(spec: SpecValidator, app: RetentionMiddleware) -> None:
    async with aserve(app, lifespan="on", ws="websockets-sansio") as base:
        async with websockets.connect(base.replace("http://", "ws://") + "/v1/responses") as socket:
            previous = None
            for event in (
                {"type": "response.create", "model": MODEL, "input": "first", "store": False},
                {"type": "response.create", "model": MODEL, "input": "second", "store": False, "stream_id": "lane"},
                {"type": "response.create", "model": MODEL, "input": "third", "previous_response_id": "resp_gone"},
            ):
                if previous is not None and "previous_response_id" not in event:
                    event = {**event, "previous_response_id": previous}
                spec.check(event, "ResponsesClientEventResponseCreate")
                await socket.send(orjson.dumps(event).decode())
                while True:
                    received = json.loads(await socket.recv())
                    if received["type"] == "error":
                        # OpenAI's WebSocket error event: status plus the error object of an HTTP error.
                        spec.check({"error": received["error"]}, "ErrorResponse")
                        break
                    spec.check(received, "ResponsesWebSocketStreamEvent")
                    if received["type"] == "response.completed":
                        spec.check(received["response"], "Response")
                        previous = received["response"]["id"]
                        break
    assert previous is not None
