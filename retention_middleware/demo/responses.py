"""``/v1/responses`` of the echo model: one message output, as JSON or as the Responses SSE events.

Stateless like vLLM without its store, so a ``previous_response_id`` is refused. A stream sends the
event sequence a client library expects (created, in_progress, output item and content part added,
text deltas, the matching done events, completed), each with its ``sequence_number``; the
``response.completed`` event carries the same object the JSON answer would.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from .._types import Receive, Send
from ..errors import invalid_request, send_json
from .streaming import Stream
from .text import Body, flag_of, generate, invalid, limit_of, missing, model_of, pieces, words_of


def refuse_previous_response(body: Body) -> None:
    """Stateless like vLLM without its store: there is nothing to continue from."""
    previous = body.get("previous_response_id")
    if previous is not None:
        raise invalid_request(
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id", code="previous_response_not_found",
        )  # fmt: skip


async def create_response(body: Body, receive: Receive, send: Send, *, model: str, delay: float) -> None:
    """Answer a Responses API request: the last user input's words, echoed."""
    refuse_previous_response(body)
    if "input" not in body or body["input"] is None:
        raise missing("input")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid("instructions", "a string")
    prompt, last_user = input_words(body["input"])
    prompt += len(words_of(instructions))
    tokens = generate(last_user, limit_of(body, "max_output_tokens"))
    response = _response_object(body, instructions, model, prompt)
    item_id = f"msg_{uuid.uuid4().hex}"
    text = " ".join(tokens)
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    item = {
        "id": item_id,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    completed = {
        **response, "status": "completed", "completed_at": int(time.time()), "output": [item],
        "usage": _usage(prompt, len(tokens)),
    }  # fmt: skip
    if not flag_of(body, "stream"):
        await send_json(send, 200, orjson.dumps(completed))
        return

    sequence = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal sequence
        data = orjson.dumps({"type": kind, **fields, "sequence_number": sequence})
        sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    stream = Stream(receive, send, delay)
    try:
        await stream.start()
        await stream.emit(event("response.created", response=response))
        await stream.emit(event("response.in_progress", response=response))
        added = {**item, "status": "in_progress", "content": []}
        await stream.emit(event("response.output_item.added", item=added, output_index=0))
        await stream.emit(event("response.content_part.added", **where, part={**part, "text": ""}))
        for piece in pieces(tokens):
            if stream.gone:
                return
            await stream.emit(event("response.output_text.delta", **where, delta=piece, logprobs=[]), token=True)
        await stream.emit(event("response.output_text.done", **where, text=text, logprobs=[]))
        await stream.emit(event("response.content_part.done", **where, part=part))
        await stream.emit(event("response.output_item.done", item=item, output_index=0))
        await stream.emit(event("response.completed", response=completed))
        await stream.finish()
    finally:
        stream.close()


def _response_object(body: Body, instructions: str | None, default_model: str, prompt: int) -> dict[str, Any]:
    """The response as ``response.created`` shows it; the request's settings echoed back, every field
    the spec and the Open Responses schema know present with a valid value."""
    requested = body.get("text")
    text: dict[str, Any] = requested if isinstance(requested, dict) else {}
    response: dict[str, Any] = {
        "id": f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": int(time.time()),
        "completed_at": None, "status": "in_progress", "background": False, "error": None,
        "incomplete_details": None, "instructions": instructions,
        "max_output_tokens": body.get("max_output_tokens"), "max_tool_calls": body.get("max_tool_calls"),
        "metadata": body.get("metadata") or {}, "model": model_of(body, default_model), "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True), "previous_response_id": None,
        "presence_penalty": body.get("presence_penalty") or 0.0,
        "frequency_penalty": body.get("frequency_penalty") or 0.0,
        "prompt_cache_key": body.get("prompt_cache_key"), "reasoning": body.get("reasoning"),
        "safety_identifier": body.get("safety_identifier"), "service_tier": body.get("service_tier") or "default",
        "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium", **text},
        "tool_choice": body.get("tool_choice", "auto"), "tools": [_tool(tool) for tool in body.get("tools") or []],
        "top_logprobs": body.get("top_logprobs") or 0, "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation") or "disabled",
        # Known from the start: the input. (The spec does not admit a null usage.)
        "usage": _usage(prompt, 0),
    }  # fmt: skip
    if isinstance(body.get("user"), str):
        response["user"] = body["user"]
    return response


def _usage(prompt: int, output: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + output,
    }  # fmt: skip


def _tool(tool: Any) -> Any:
    """A tool as the response lists it: a function tool with its defaults filled in, as OpenAI does."""
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"description": None, "parameters": None, "strict": True, **tool}
    return tool


def input_words(value: Any) -> tuple[int, list[str]]:
    """Words over every input item (the whole history), and the last user message's words."""
    if isinstance(value, str):
        words = value.split()
        return len(words), words
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise invalid("input", "a string or an array of input items")
    calls = {item.get("call_id") for item in value if item.get("type") == "function_call"}
    for position, item in enumerate(value):
        if item.get("type") == "function_call_output" and item.get("call_id") not in calls:
            raise invalid_request(
                f"No tool call found for function call output with call_id {str(item.get('call_id'))[:64]!r}.",
                param=f"input[{position}]", code="invalid_value",
            )  # fmt: skip
    total = 0
    last_user: list[str] = []
    for item in value:
        words = words_of(item.get("content"))
        for key in ("arguments", "output"):
            words += words_of(item.get(key))
        words += words_of(item.get("summary"))
        total += len(words)
        if item.get("role") == "user":
            last_user = words
    return total, last_user
