"""Responses request -> Chat Completions request: one row per translation rule, and the refusals."""

from __future__ import annotations

from typing import Any

import pytest

from retention_middleware.backends.request_translation import chat_request
from retention_middleware.errors import OpenAIError

TOOL = {"type": "function", "name": "get_weather", "description": "Weather.", "parameters": {"type": "object"}}
NESTED = {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                           "parameters": {"type": "object"}}}  # fmt: skip
CALL = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": '{"c":"Paris"}'}
CALL2 = {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "get_time", "arguments": "{}"}
CHAT_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"c":"Paris"}'}}
CHAT_CALL2 = {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
OUTPUT_TEXT = {"type": "output_text", "text": "Let me look.", "annotations": [], "logprobs": []}
ASSISTANT = {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed", "content": [OUTPUT_TEXT]}
REASONING = {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "hmm"}]}

# (name, Responses request fields, expected chat request fields; a None value means "key absent")
RULES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("string input is one user message", {"input": "hi"}, {"messages": [{"role": "user", "content": "hi"}]}),
    ("instructions become the first system message", {"instructions": "Be brief.", "input": "hi"},
     {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}),
    ("developer becomes system", {"input": [{"role": "developer", "content": "rules"}]},
     {"messages": [{"role": "system", "content": "rules"}]}),
    ("text parts join into one string",
     {"input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"},
                                                                {"type": "input_text", "text": "b"}]}]},
     {"messages": [{"role": "user", "content": "ab"}]}),
    ("an image keeps the parts as a list",
     {"input": [{"role": "user", "content": [{"type": "input_text", "text": "what is this?"},
                                             {"type": "input_image", "image_url": "data:image/png;base64,AA==",
                                              "detail": "low"}]}]},
     {"messages": [{"role": "user", "content": [
         {"type": "text", "text": "what is this?"},
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"}}]}]}),
    ("an assistant output message is an assistant string", {"input": [ASSISTANT]},
     {"messages": [{"role": "assistant", "content": "Let me look."}]}),
    ("function_call becomes assistant tool_calls", {"input": [CALL]},
     {"messages": [{"role": "assistant", "content": None, "tool_calls": [CHAT_CALL]}]}),
    ("text then calls stay one assistant turn, parallel calls together", {"input": [ASSISTANT, CALL, CALL2]},
     {"messages": [{"role": "assistant", "content": "Let me look.", "tool_calls": [CHAT_CALL, CHAT_CALL2]}]}),
    ("function_call_output becomes a tool message",
     {"input": [CALL, {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]},
     {"messages": [{"role": "assistant", "content": None, "tool_calls": [CHAT_CALL]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]}),
    ("reasoning goes on the next assistant message as reasoning_content", {"input": [REASONING, CALL]},
     {"messages": [{"role": "assistant", "content": None, "tool_calls": [CHAT_CALL], "reasoning_content": "hmm"}]}),
    ("a reasoning summary is used when there is no reasoning text",
     {"input": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "brief"}]}, ASSISTANT]},
     {"messages": [{"role": "assistant", "content": "Let me look.", "reasoning_content": "brief"}]}),
    ("encrypted-only reasoning is dropped",
     {"input": [{"type": "reasoning", "summary": [], "encrypted_content": "gAAAA"}, ASSISTANT]},
     {"messages": [{"role": "assistant", "content": "Let me look."}]}),
    ("function tools go from flat to nested", {"input": "x", "tools": [TOOL]}, {"tools": [NESTED]}),
    ("tool_choice words pass", {"input": "x", "tool_choice": "required"}, {"tool_choice": "required"}),
    ("a named tool_choice is nested", {"input": "x", "tool_choice": {"type": "function", "name": "get_weather"}},
     {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    ("json_schema becomes response_format",
     {"input": "x", "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"},
                                        "strict": True}}},
     {"response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"},
                                                                  "strict": True}}}),
    ("json_object becomes response_format", {"input": "x", "text": {"format": {"type": "json_object"}}},
     {"response_format": {"type": "json_object"}}),
    ("plain text format is no response_format", {"input": "x", "text": {"format": {"type": "text"}}},
     {"response_format": None, "text": None}),
    ("max_output_tokens becomes max_tokens", {"input": "x", "max_output_tokens": 7},
     {"max_tokens": 7, "max_output_tokens": None}),
    ("sampling and bookkeeping fields pass by name",
     {"input": "x", "temperature": 0.2, "top_p": 0.9, "parallel_tool_calls": False, "user": "u1",
      "metadata": {"k": "v"}},
     {"temperature": 0.2, "top_p": 0.9, "parallel_tool_calls": False, "user": "u1", "metadata": {"k": "v"}}),
    ("top_logprobs asks for logprobs", {"input": "x", "top_logprobs": 3}, {"top_logprobs": 3, "logprobs": True}),
    ("top_logprobs 0 asks for nothing", {"input": "x", "top_logprobs": 0}, {"top_logprobs": None, "logprobs": None}),
    ("reasoning effort becomes reasoning_effort", {"input": "x", "reasoning": {"effort": "low"}},
     {"reasoning_effort": "low", "reasoning": None}),
    ("stream asks for usage", {"input": "x", "stream": True},
     {"stream": True, "stream_options": {"include_usage": True}}),
    ("store never reaches a chat upstream", {"input": "x", "store": False}, {"store": None}),
    ("server extensions pass unchanged", {"input": "x", "top_k": 20}, {"top_k": 20}),
]  # fmt: skip


@pytest.mark.parametrize(("request_fields", "expected"), [(r, e) for _, r, e in RULES], ids=[n for n, _, _ in RULES])
def test_translation_rule(request_fields: dict[str, Any], expected: dict[str, Any]) -> None:
    chat = chat_request({"model": "m", **request_fields})
    assert chat["model"] == "m"
    for key, value in expected.items():
        if value is None:
            assert key not in chat
        else:
            assert chat[key] == value


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("web_search tool", {"tools": [TOOL, {"type": "web_search"}]}, "tools[1].type"),
    ("file_search tool", {"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
    ("hosted tool_choice", {"tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
    ("image by file id", {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
     "input[0].content[0].file_id"),
    ("item reference", {"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ("web search call item", {"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]},
     "input[0].type"),
    ("stored prompt", {"prompt": {"id": "pmpt_1"}}, "prompt"),
    ("max_tool_calls", {"max_tool_calls": 3}, "max_tool_calls"),
    ("truncation auto", {"truncation": "auto"}, "truncation"),
    ("grammar text format", {"text": {"format": {"type": "grammar"}}}, "text.format.type"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "param"), [(f, p) for _, f, p in REFUSED], ids=[n for n, _, _ in REFUSED])
def test_what_has_no_chat_equivalent_is_a_400_naming_it(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(OpenAIError) as raised:
        chat_request({"model": "m", "input": "x", **fields})
    assert raised.value.status == 400
    assert raised.value.param == param
    assert raised.value.code == "unsupported_parameter"
    assert "Chat Completions" in raised.value.message


HOSTILE_VALUES: list[Any] = [
    5, "x", True, [], {}, [5], [{}], [{"type": None}], {"type": 5}, [{"role": "user"}],
    [{"type": "message", "role": "user", "content": [5]}], [{"type": "function_call"}],
]  # fmt: skip


@pytest.mark.parametrize("key", ["input", "instructions", "tools", "tool_choice", "text", "reasoning", "include"])
def test_hostile_values_are_a_400_or_translate_never_a_crash(key: str) -> None:
    for value in HOSTILE_VALUES:
        try:
            chat = chat_request({"model": "m", "input": "x", key: value})
        except OpenAIError as error:
            assert error.status == 400 and error.param is not None and error.param.split("[")[0].split(".")[0] in (
                key, "input")  # fmt: skip
        else:
            assert isinstance(chat["messages"], list)


@pytest.mark.parametrize(
    ("item", "param"),
    [({"type": "function_call", "name": "f", "arguments": "{}"}, "input[0].call_id"),
     ({"type": "function_call_output", "output": "x"}, "input[0].call_id"),
     ({"type": "message", "role": "tool", "content": "x"}, "input[0].role"),
     ({"type": "message", "role": "user", "content": 5}, "input[0].content")],
)  # fmt: skip
def test_a_malformed_item_is_a_400_naming_its_field(item: dict[str, Any], param: str) -> None:
    with pytest.raises(OpenAIError) as raised:
        chat_request({"model": "m", "input": [item]})
    assert raised.value.status == 400 and raised.value.param == param
