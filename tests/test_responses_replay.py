"""The recorded three-turn conversations (vLLM and OpenAI, JSON and SSE, with tool calls) replayed
through the middleware by an upstream that answers each turn with its recorded response."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware.store.base import ResponseStore

from support.asgi_tools import asgi_client
from support.cassettes import ReplayUpstream, load

Clock = Callable[[], datetime]

THREE_TURN = [
    "responses_tool_calls_3turn.yaml",
    "responses_tool_calls_3turn_streaming.yaml",
    "openai_responses_tool_calls_3turn.yaml",
    "openai_responses_tool_calls_3turn_streaming.yaml",
]


def final_response(turn: Any) -> dict[str, Any]:
    if not turn.is_sse:
        return turn.response_json  # type: ignore[no-any-return]
    for line in turn.response_bytes.decode().splitlines():
        if line.startswith("data: ") and '"response.completed"' in line:
            return json.loads(line[6:])["response"]  # type: ignore[no-any-return]
    raise AssertionError("no response.completed in the recording")


INSERTED = b',"store":true'


def assert_as_recorded_with_store_inserted(received: bytes, turn: Any) -> None:
    """The recorded answer, with ``store`` inserted where the upstream wrote no such key (vLLM writes
    none): before the ``}`` closing each response object, every other byte as recorded."""
    recorded: bytes = turn.response_bytes
    if b'"store"' in recorded:
        assert received == recorded
        return
    assert received.replace(INSERTED, b"") == recorded
    objects = 1 if not turn.is_sse else recorded.count(b'"response":')
    assert received.count(INSERTED) == objects


def as_items(value: Any) -> list[Any]:
    return [{"type": "message", "role": "user", "content": value}] if isinstance(value, str) else list(value)


@pytest.mark.parametrize("name", THREE_TURN)
async def test_three_turn_conversation_is_rehydrated_for_a_stateless_upstream(
    name: str, response_store: ResponseStore, clock: Clock
) -> None:
    turns = load(name)
    upstream = ReplayUpstream(turns, seed=7)
    middleware = RetentionMiddleware(upstream, RetentionSettings(), store=response_store, clock=clock)
    async with asgi_client(middleware) as client:
        for turn in turns:
            response = await client.post(turn.path, json=turn.request_body)
            assert response.status_code == 200
            # The client gets the recorded answer, with store/previous_response_id as it sent them.
            assert_as_recorded_with_store_inserted(response.content, turn)

    sent = [json.loads(body) for body in upstream.received]
    expected_input: list[Any] = []
    for turn, upstream_request in zip(turns, sent, strict=True):
        assert "previous_response_id" not in upstream_request
        assert upstream_request["store"] is False
        new_items = as_items(turn.request_body["input"])
        # Earlier turns' input and output items (function calls included), oldest first, then the new.
        assert upstream_request["input"] == (
            expected_input + new_items if expected_input else turn.request_body["input"]
        )
        expected_input = expected_input + new_items + final_response(turn)["output"]
        assert any(item.get("type") == "function_call" for item in final_response(turn)["output"])

    for index, turn in enumerate(turns):
        response = final_response(turn)
        stored = await response_store.get("anonymous", response["id"])
        assert stored is not None, f"turn {index + 1} not stored"
        assert stored.response == {**response, "store": True}  # as the client saw it
        assert stored.input_items == as_items(turn.request_body["input"])
        assert stored.previous_response_id == turn.request_body.get("previous_response_id")
        assert list(stored.ancestors) == [final_response(t)["id"] for t in turns[:index]]


async def test_function_call_outputs_reach_the_upstream_in_turn_two(
    response_store: ResponseStore, clock: Clock
) -> None:
    turns = load("responses_tool_calls_3turn.yaml")
    upstream = ReplayUpstream(turns)
    middleware = RetentionMiddleware(upstream, RetentionSettings(), store=response_store, clock=clock)
    async with asgi_client(middleware) as client:
        for turn in turns[:2]:
            await client.post(turn.path, json=turn.request_body)
    second = json.loads(upstream.received[1])
    types = [item.get("type") for item in second["input"]]
    assert types == ["message", "reasoning", "function_call", "function_call_output", "message"]
    call = second["input"][2]
    output = second["input"][3]
    assert call["name"] == "get_job_status" and output["call_id"] == call["call_id"]
