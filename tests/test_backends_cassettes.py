"""Recorded real traffic, replayed through the chat backend (tests/fixtures/cassettes, see SOURCES.md).

No chat-completions recordings exist, so the chat side is derived from the vLLM ones: each recorded
Responses answer is rewritten as the chat completion (or chunk stream) vLLM's chat endpoint sends for
the same generation, in vLLM's shapes (``reasoning_content`` deltas, ``tool_calls`` with ``index``
and argument fragments, a usage chunk). Translating that back must give the recorded output; and
every recorded request must translate, or be refused naming what has no chat equivalent.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from retention_middleware.backends.request_translation import chat_request
from retention_middleware.backends.response_translation import response_from_completion
from retention_middleware.backends.stream_translation import StreamTranslator
from retention_middleware.errors import OpenAIError

from support.asgi_tools import random_split
from support.cassettes import all_cassettes, load
from support.openai_schema import validate, validate_event

VLLM_STREAMS = [
    "reasoning-and-tool-call-Qwen-Qwen3-30B-A3B-FP8-streaming.yaml",
    "reasoning-single-openai-gpt-oss-20b-streaming.yaml",
    "responses_tool_calls_3turn_streaming.yaml",
]
VLLM_JSON = [
    "reasoning-and-tool-call-Qwen-Qwen3-30B-A3B-FP8-nonstreaming.yaml",
    "reasoning-single-Qwen-Qwen3-30B-A3B-FP8-nonstreaming.yaml",
    "reasoning-single-openai-gpt-oss-20b-nonstreaming.yaml",
    "responses_tool_calls_3turn.yaml",
]


def summary(items: list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item["type"] == "reasoning":
            out.append(("reasoning", "".join(part["text"] for part in item.get("content") or [])))
        elif item["type"] == "message":
            out.append(("message", "".join(part.get("text", "") for part in item["content"])))
        elif item["type"] == "function_call":
            out.append(("function_call", item["name"], item["arguments"]))
    return out


def chat_usage(usage: dict[str, Any]) -> dict[str, Any]:
    return {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"]}  # fmt: skip


def vllm_completion(response: dict[str, Any]) -> dict[str, Any]:
    """The chat.completion vLLM would have answered for the same generation."""
    message: dict[str, Any] = {"role": "assistant", "content": None, "reasoning_content": None, "tool_calls": []}
    for kind, *rest in summary(response["output"]):
        if kind == "reasoning":
            message["reasoning_content"] = rest[0]
        elif kind == "message":
            message["content"] = rest[0]
        else:
            message["tool_calls"].append({"id": f"chatcmpl-tool-{len(message['tool_calls'])}", "type": "function",
                                          "function": {"name": rest[0], "arguments": rest[1]}})  # fmt: skip
    finish = "tool_calls" if message["tool_calls"] else "stop"
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": response["created_at"],
            "model": response["model"], "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": chat_usage(response["usage"])}  # fmt: skip


def vllm_chunks(sse: bytes) -> tuple[bytes, list[Any]]:
    """The chat chunk stream for a recorded Responses stream, and the recorded items it must become."""
    head = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "served"}

    def chunk(delta: dict[str, Any], **extra: Any) -> bytes:
        body = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}], **extra}
        return b"data: " + orjson.dumps(body) + b"\n\n"

    out = [chunk({"role": "assistant", "content": ""})]
    done_items: list[dict[str, Any]] = []
    calls = 0
    usage = None
    for line in sse.decode().splitlines():
        if not line.startswith("data: "):
            continue
        event = orjson.loads(line[6:])
        kind = event["type"]
        if kind == "response.reasoning_text.delta":
            out.append(chunk({"reasoning_content": event["delta"]}))
        elif kind == "response.output_text.delta":
            out.append(chunk({"content": event["delta"]}))
        elif kind == "response.output_item.added" and event["item"]["type"] == "function_call":
            calls += 1
            out.append(chunk({"tool_calls": [{"index": calls - 1, "id": f"chatcmpl-tool-{calls}", "type": "function",
                                              "function": {"name": event["item"]["name"]}}]}))  # fmt: skip
        elif kind == "response.function_call_arguments.delta":
            out.append(chunk({"tool_calls": [{"index": calls - 1, "function": {"arguments": event["delta"]}}]}))
        elif kind == "response.output_item.done":
            done_items.append(event["item"])
        elif kind == "response.completed":
            usage = chat_usage(event["response"]["usage"])
    finish = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if calls else "stop"}]}
    out.append(b"data: " + orjson.dumps(finish) + b"\n\n")
    out.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\ndata: [DONE]\n\n")
    return b"".join(out), summary(done_items)


@pytest.mark.parametrize("name", VLLM_STREAMS)
def test_derived_vllm_chat_streams_translate_to_the_recorded_output(name: str) -> None:
    rng = random.Random(name)
    for turn in load(name):
        body, expected = vllm_chunks(turn.response_bytes)
        translator = StreamTranslator(turn.request_body)
        pieces = random_split(body, rng, max_piece=300)
        out = b"".join(translator.feed(piece, final=i == len(pieces) - 1) for i, piece in enumerate(pieces))
        events = [orjson.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
        assert [event["sequence_number"] for event in events] == list(range(len(events)))
        completed = events[-1]
        assert completed["type"] == "response.completed"
        assert summary(completed["response"]["output"]) == expected
        assert completed["response"]["usage"]["output_tokens"] == orjson.loads(body.split(b"data: ")[-2])[
            "usage"]["completion_tokens"]  # fmt: skip
        for event in events:
            validate_event(event)


@pytest.mark.parametrize("name", VLLM_JSON)
def test_derived_vllm_chat_completions_translate_to_the_recorded_output(name: str) -> None:
    for turn in load(name):
        response = response_from_completion(turn.request_body, vllm_completion(turn.response_json))
        assert summary(response["output"]) == summary(turn.response_json["output"])
        assert response["usage"]["input_tokens"] == turn.response_json["usage"]["input_tokens"]
        validate(response, "Response")


@pytest.mark.parametrize("name", all_cassettes())
def test_every_recorded_request_translates_or_is_refused_by_name(name: str) -> None:
    for turn in load(name):
        if turn.path != "/v1/responses" or not isinstance(turn.request_body, dict):
            continue
        try:
            chat = chat_request(turn.request_body)
        except OpenAIError as error:
            assert error.status == 400 and error.param
            continue
        assert chat["messages"]
        assert all(tool["type"] == "function" and "name" in tool["function"] for tool in chat.get("tools", []))
        assert "store" not in chat and "previous_response_id" not in chat


def test_recorded_tool_turn_and_reasoning_continuation_become_chat_messages() -> None:
    second = load("responses_tool_calls_3turn.yaml")[1].request_body
    chat = chat_request(second)
    tool = next(message for message in chat["messages"] if message["role"] == "tool")
    output = next(item for item in second["input"] if item["type"] == "function_call_output")
    assert tool == {"role": "tool", "tool_call_id": output["call_id"], "content": output["output"]}
    assert chat["tools"][0]["function"]["name"] == second["tools"][0]["name"]

    continued = load("continuation-json.yaml")[1].request_body  # reasoning item: encrypted + a summary
    messages = chat_request(continued)["messages"]
    reasoning = next(item for item in continued["input"] if item["type"] == "reasoning")
    assistant = next(message for message in messages if message["role"] == "assistant")
    assert assistant["reasoning_content"] == reasoning["summary"][0]["text"]
    assert reasoning["encrypted_content"] not in orjson.dumps(messages).decode()
