"""A Responses request (already stateless: rehydrated, ``store: false``) as a Chat Completions request.

Every parameter the Responses API defines is either translated, handled by the middleware itself
(``store``, ``previous_response_id``, ``conversation``, ``include``, ``stream_options``,
``background``), or refused with a 400 naming it; none is dropped silently. Keys the Responses API
does not define are passed on unchanged: they are the server's own extensions (vLLM's ``top_k``,
``repetition_penalty``, ``chat_template_kwargs``), which its chat endpoint reads the same way.
"""

from __future__ import annotations

from typing import Any

from ..errors import invalid_request
from ..responses.items import input_as_items
from .input_translation import chat_messages, untranslatable

# Same name, same meaning in both APIs.
_SAME = ("model", "temperature", "top_p", "parallel_tool_calls", "user", "metadata", "service_tier",
         "prompt_cache_key", "safety_identifier", "top_logprobs")  # fmt: skip
# Handled by the middleware before the backend sees the request, or meaningless to the upstream.
_HANDLED = ("input", "instructions", "store", "previous_response_id", "conversation", "include",
            "stream_options", "background", "stream", "max_output_tokens", "tools", "tool_choice",
            "text", "reasoning", "truncation", "prompt", "max_tool_calls", "prompt_cache_retention")  # fmt: skip


def _function_tool(tool: Any, param: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise invalid_request(f"Invalid '{param}': expected a tool object.", param=param, code="invalid_type")
    if tool.get("type") != "function":
        raise untranslatable(f"{param}.type", f"The built-in tool {tool.get('type')!r}")
    function = {key: tool[key] for key in ("name", "description", "parameters", "strict") if tool.get(key) is not None}
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice  # none, auto, required: the same words in both APIs
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "function":
            return {"type": "function", "function": {"name": choice.get("name")}}
        if kind == "allowed_tools":
            tools = [
                _function_tool(tool, f"tool_choice.tools[{i}]") for i, tool in enumerate(choice.get("tools") or [])
            ]
            allowed = [{"type": "function", "function": {"name": tool["function"].get("name")}} for tool in tools]
            return {"type": "allowed_tools", "allowed_tools": {"mode": choice.get("mode", "auto"), "tools": allowed}}
        raise untranslatable("tool_choice.type", f"A tool_choice of type {kind!r}")
    raise invalid_request("Invalid 'tool_choice'.", param="tool_choice", code="invalid_type")


def _response_format(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, dict):
        return None
    fmt = text.get("format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = {key: fmt[key] for key in ("name", "schema", "description", "strict") if fmt.get(key) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise untranslatable("text.format.type", f"A text format of type {fmt['type']!r}")


def chat_request(request: dict[str, Any]) -> dict[str, Any]:
    """The chat completion request to send upstream; raises OpenAIError 400 for what has no equivalent."""
    for name in ("prompt", "max_tool_calls"):
        if request.get(name) is not None:
            raise untranslatable(name, f"'{name}'")
    if request.get("truncation") not in (None, "disabled"):
        raise untranslatable("truncation", "truncation 'auto'")
    chat: dict[str, Any] = {key: value for key, value in request.items() if key not in _HANDLED}
    chat["messages"] = chat_messages(request.get("instructions"), input_as_items(request.get("input", [])))
    for key in _SAME:
        if request.get(key) is None:
            chat.pop(key, None)
    if request.get("max_output_tokens") is not None:
        # max_tokens, not max_completion_tokens: TGI, llama.cpp and Ollama all read it.
        chat["max_tokens"] = request["max_output_tokens"]
    top = request.get("top_logprobs")
    if isinstance(top, int) and top > 0:
        chat["logprobs"] = True
    else:
        chat.pop("top_logprobs", None)  # 0 asks for nothing; chat servers refuse it without logprobs
    tools = request.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise invalid_request("Invalid 'tools': expected an array.", param="tools", code="invalid_type")
        chat["tools"] = [_function_tool(tool, f"tools[{index}]") for index, tool in enumerate(tools)]
    if request.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(request["tool_choice"])
    response_format = _response_format(request.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    text = request.get("text")
    if isinstance(text, dict) and text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]
    reasoning = request.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    include = request.get("include")
    if isinstance(include, list) and "message.output_text.logprobs" in include:
        chat["logprobs"] = True
    if request.get("stream") is True:
        # Usage is always asked for: the usage-only chunk is what the Response's usage is made of.
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat
