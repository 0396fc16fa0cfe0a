"""The request bodies every section sends, built once so each variant gets identical bytes."""

from __future__ import annotations

import orjson

MODEL = "demo-echo"
PASSTHROUGH_PREFIX = "/raw"
"""Paths under this prefix are not OpenAI endpoints to the middleware, so it passes them through."""

# Ordinary prose, not repeated characters: the echo model splits it into words (tokens).
_WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wise owls count the stars above "
    "an old stone bridge and a river hums softly through the valley at night"
).split()


def prose(characters: int) -> str:
    """About ``characters`` characters of deterministic text."""
    words: list[str] = []
    size = 0
    index = 0
    while size < characters:
        word = _WORDS[index % len(_WORDS)]
        words.append(word)
        size += len(word) + 1
        index += 1
    return " ".join(words)


def chat_body(*, stream: bool = False, max_tokens: int | None = None, size: int = 1024) -> bytes:
    """A chat completion request of about ``size`` bytes, the shape the OpenAI SDK sends."""
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": ""},
        ],
        "temperature": 0.7,
    }
    if stream:
        body["stream"] = True
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    overhead = len(orjson.dumps(body))
    body["messages"][1]["content"] = prose(max(16, size - overhead))  # type: ignore[index]
    return orjson.dumps(body)


def responses_body(*, stream: bool = False, max_tokens: int | None = None, size: int = 1024) -> bytes:
    """A ``POST /v1/responses`` request of about ``size`` bytes with ``store: true``."""
    body: dict[str, object] = {"model": MODEL, "input": "", "store": True}
    if stream:
        body["stream"] = True
    if max_tokens is not None:
        body["max_output_tokens"] = max_tokens
    body["input"] = prose(max(16, size - len(orjson.dumps(body))))
    return orjson.dumps(body)
