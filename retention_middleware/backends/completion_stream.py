"""A whole ``chat.completion`` as the Responses event sequence.

For a server that answers a streamed request with JSON (some ignore ``stream`` in some modes): the
client asked for events, so it gets them, made by the same translator a chat stream goes through.
"""

from __future__ import annotations

from typing import Any

import orjson

from .response_translation import argument_text
from .stream_translation import StreamTranslator


def stream_from_completion(request: dict[str, Any], completion: dict[str, Any]) -> bytes:
    """The events, ``response.created`` to ``response.completed``, as one body."""
    choices = completion.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    choice: dict[str, Any] = first if isinstance(first, dict) else {}
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    # One chunk carrying the whole message: the translator opens the items in the order they came.
    delta: dict[str, Any] = {key: message.get(key) for key in ("reasoning_content", "reasoning", "content", "refusal")}
    calls: list[Any] = message["tool_calls"] if isinstance(message.get("tool_calls"), list) else []
    delta["tool_calls"] = [
        {**call, "index": index, "function": {**call["function"], "arguments": argument_text(call["function"])}}
        for index, call in enumerate(calls)
        if isinstance(call, dict) and isinstance(call.get("function"), dict)
    ]
    chunk = {**completion, "choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason")}]}
    return StreamTranslator(request).feed(b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n", final=True)
