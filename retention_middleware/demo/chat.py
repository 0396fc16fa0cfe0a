"""``/v1/chat/completions`` and ``/v1/completions`` of the echo model, as JSON or as an SSE stream.

Both share one generator (``_complete``): they differ only in how the prompt is read, the object
names and whether a choice carries a ``message``/``delta`` or a ``text``. The shapes follow vLLM's,
including its ``stop_reason`` and ``prompt_tokens_details`` fields, and the usage chunk that
``stream_options.include_usage`` asks for.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from .._types import Receive, Send
from ..errors import send_json
from .streaming import Stream
from .text import Body, flag_of, generate, invalid, limit_of, missing, model_of, pieces, prompts_of, words_of

_DONE = b"data: [DONE]\n\n"


def _data(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _chat_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
        # vLLM writes null here; the spec admits only an object, and the demo is schema-complete.
        "prompt_tokens_details": {"cached_tokens": 0},
    }


async def create_chat_completion(body: Body, receive: Receive, send: Send, *, model: str, delay: float) -> None:
    """Answer a chat completion: the last user message's words, echoed."""
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise invalid("messages", "an array of message objects")
    prompt = 0
    last_user: list[str] = []
    for message in messages:
        words = words_of(message.get("content"))
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                words += words_of(call["function"].get("arguments"))
        prompt += len(words)
        if message.get("role") == "user":
            last_user = words
    limit = limit_of(body, "max_completion_tokens", "max_tokens")
    await _complete(body, receive, send, model, delay, chat=True, prompt=prompt, words=last_user, limit=limit)


async def create_completion(body: Body, receive: Receive, send: Send, *, model: str, delay: float) -> None:
    """Answer a (legacy) completion: the last prompt's words, echoed."""
    prompts = prompts_of(body, "prompt")
    prompt = sum(len(words) for words in prompts)
    limit = limit_of(body, "max_tokens")
    await _complete(body, receive, send, model, delay, chat=False, prompt=prompt, words=prompts[-1], limit=limit)


async def _complete(
    body: Body, receive: Receive, send: Send, default_model: str, delay: float, *,
    chat: bool, prompt: int, words: list[str], limit: int | None,
) -> None:  # fmt: skip
    tokens = generate(words, limit)
    finish = "length" if limit is not None else "stop"
    head = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": model_of(body, default_model),
    }
    usage = _chat_usage(prompt, len(tokens))
    if not flag_of(body, "stream"):
        text = " ".join(tokens)
        choice: dict[str, Any]
        if chat:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": text,
                "refusal": None,
                "reasoning_content": None,
                "tool_calls": [],
            }
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        choice["stop_reason"] = None
        result = {**head, "object": "chat.completion" if chat else "text_completion", "choices": [choice]}
        await send_json(send, 200, orjson.dumps({**result, "usage": usage}))
        return
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise invalid("stream_options", "an object")
    include_usage = flag_of(options or {}, "include_usage")

    def chunk(choice: dict[str, Any]) -> bytes:
        return _data({**head, "choices": [{"index": 0, **choice, "logprobs": None}]})

    stream = Stream(receive, send, delay)
    try:
        await stream.start()
        if chat:
            await stream.emit(chunk({"delta": {"role": "assistant", "content": ""}, "finish_reason": None}))
        for piece in pieces(tokens):
            if stream.gone:
                return
            delta: dict[str, Any] = {"delta": {"content": piece}} if chat else {"text": piece}
            await stream.emit(chunk({**delta, "finish_reason": None}), token=True)
        end: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        await stream.emit(chunk({**end, "finish_reason": finish, "stop_reason": None}))
        if include_usage:
            await stream.emit(_data({**head, "choices": [], "usage": usage}))
        await stream.emit(_DONE)
        await stream.finish()
    finally:
        stream.close()
