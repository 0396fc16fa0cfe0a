"""A ``chat.completion`` as a Response object, and what the streamed translation shares with it.

The Response echoes the request's settings the way the Responses API does; its ``store`` and
``previous_response_id`` are those of the stateless request the upstream got (``false`` and
``null``), which the create handler restores for the client exactly as it does for a native upstream.
Ids are minted here with 192 bits of randomness: the chat completion's own id is not reused, so no
two responses can collide however the upstream numbers its completions.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from ..wire.json_object import json_object


def mint(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def base_response(request: dict[str, Any], response_id: str, created_at: int) -> dict[str, Any]:
    """The response as ``response.created`` shows it: in progress, no output, the settings echoed."""
    text = request.get("text")
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": "in_progress",
        "background": False, "error": None, "incomplete_details": None,
        "instructions": request.get("instructions"), "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": None, "metadata": request.get("metadata") or {}, "model": request.get("model"),
        "output": [], "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"), "reasoning": request.get("reasoning"),
        "service_tier": request.get("service_tier") or "auto", "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": text if isinstance(text, dict) else {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"), "tools": _echoed_tools(request.get("tools")),
        "top_logprobs": request.get("top_logprobs"), "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation") or "disabled", "usage": None, "user": request.get("user"),
    }  # fmt: skip


def _echoed_tools(tools: Any) -> list[Any]:
    # Echoed as OpenAI does, every field present: a strictness the client did not ask for is null.
    if not isinstance(tools, list):
        return []
    return [{"description": None, "strict": None, **tool} if isinstance(tool, dict) else tool for tool in tools]


def response_usage(usage: Any) -> dict[str, Any] | None:
    """Chat usage in the Responses shape; None when the upstream reported none."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": prompt_details.get("cached_tokens") or 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": completion_details.get("reasoning_tokens") or 0},
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }


def finish(response: dict[str, Any], finish_reason: Any) -> None:
    """Set ``status`` (and ``incomplete_details``) from the chat ``finish_reason``."""
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "content_filter"}
    else:  # stop, tool_calls, function_call, or a server's own word for a normal end
        response["status"] = "completed"
    response["completed_at"] = int(time.time())


def reasoning_of(message: dict[str, Any]) -> str | None:
    """The reasoning text: vLLM, SGLang and llama.cpp say ``reasoning_content``, newer vLLM ``reasoning``."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": text}],
            "status": status}  # fmt: skip


def text_part(text: str, logprobs: list[Any] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def message_item(item_id: str, content: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}  # fmt: skip


def argument_text(function: dict[str, Any]) -> str:
    """A call's arguments as a JSON string; some servers (TGI versions among them) send an object."""
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        return arguments
    return orjson.dumps(arguments if arguments is not None else {}).decode()


def logprobs_of(choice: dict[str, Any]) -> list[Any]:
    # Chat's logprobs.content entries ({token, logprob, bytes, top_logprobs}) are already the Responses shape.
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    return content if isinstance(content, list) else []


def response_from_completion(request: dict[str, Any], completion: dict[str, Any]) -> dict[str, Any]:
    """A whole ``chat.completion`` as the Response a native upstream would have answered."""
    created = completion.get("created")
    response = base_response(request, mint("resp"), created if isinstance(created, int) else int(time.time()))
    if isinstance(completion.get("model"), str):
        response["model"] = completion["model"]
    choices = completion.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    choice: dict[str, Any] = first if isinstance(first, dict) else {}
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    output: list[dict[str, Any]] = []
    reasoning = reasoning_of(message)
    if reasoning is not None:
        output.append(reasoning_item(mint("rs"), reasoning))
    content = message.get("content")
    tool_calls: list[Any] = message["tool_calls"] if isinstance(message.get("tool_calls"), list) else []
    parts: list[dict[str, Any]] = []
    if isinstance(content, str) and (content or not tool_calls):
        parts.append(text_part(content, logprobs_of(choice)))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        output.append(message_item(mint("msg"), parts))
    for call in tool_calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        call_id = call.get("id") if isinstance(call.get("id"), str) and call["id"] else mint("call")
        output.append(function_call_item(mint("fc"), call_id, str(function.get("name") or ""), argument_text(function)))
    response["output"] = output
    response["usage"] = response_usage(completion.get("usage"))
    finish(response, choice.get("finish_reason"))
    return response


def translate_json(request: dict[str, Any], body: bytes) -> bytes | None:
    """The translated body; None when the body is not a chat completion (passed on as it is)."""
    completion = json_object(body)
    if completion is None or not isinstance(completion.get("choices"), list):
        return None
    return orjson.dumps(response_from_completion(request, completion))
