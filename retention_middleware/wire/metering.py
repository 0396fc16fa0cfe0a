"""Token counts: read from JSON bodies and stream events, normalised across the APIs.

Chat completions and completions report ``prompt_tokens``/``completion_tokens``, the Responses API
``input_tokens``/``output_tokens``, embeddings only ``prompt_tokens``. The access log always gets
``input_tokens, output_tokens, total_tokens, cached_tokens, reasoning_tokens``.
"""

from __future__ import annotations

from typing import Any

USAGE_FIELDS = ("input_tokens", "output_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")

RESPONSE_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _count(value: Any) -> int | None:
    # bool is an int subclass; a server that sends true for a count is not counting.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _detail(usage: dict[str, Any], section: str, name: str) -> int | None:
    details = usage.get(section)
    return _count(details.get(name)) if isinstance(details, dict) else None


def normalise_usage(usage: Any) -> dict[str, int | None] | None:
    """One usage object of any of the APIs, in the access log's shape; None if it is not one."""
    if not isinstance(usage, dict):
        return None
    if "input_tokens" in usage or "output_tokens" in usage:  # the Responses API
        input_tokens = _count(usage.get("input_tokens"))
        output_tokens = _count(usage.get("output_tokens"))
        cached = _detail(usage, "input_tokens_details", "cached_tokens")
        reasoning = _detail(usage, "output_tokens_details", "reasoning_tokens")
    elif "prompt_tokens" in usage:  # chat completions, completions, embeddings
        input_tokens = _count(usage.get("prompt_tokens"))
        output_tokens = _count(usage.get("completion_tokens"))
        if output_tokens is None and "completion_tokens" not in usage:
            output_tokens = 0  # embeddings generate nothing
        cached = _detail(usage, "prompt_tokens_details", "cached_tokens")
        reasoning = _detail(usage, "completion_tokens_details", "reasoning_tokens")
    else:
        return None
    total = _count(usage.get("total_tokens"))
    if total is None and input_tokens is not None and output_tokens is not None:
        total = input_tokens + output_tokens
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total,
        "cached_tokens": cached if cached is not None else 0,
        "reasoning_tokens": reasoning if reasoning is not None else 0,
    }


def usage_of_body(body: Any) -> dict[str, int | None] | None:
    """Usage of a complete JSON answer of any of the APIs (chat, completions, embeddings, responses)."""
    if not isinstance(body, dict):
        return None
    return normalise_usage(body.get("usage"))


def is_usage_only_chunk(chunk: Any) -> bool:
    """The extra chunk ``stream_options.include_usage`` adds: no choices, only usage."""
    return isinstance(chunk, dict) and chunk.get("choices") == [] and isinstance(chunk.get("usage"), dict)


def completion_chunk_texts(chunk: dict[str, Any]) -> list[tuple[Any, str]]:
    """The generated text in one chat or completions stream chunk, keyed by where it belongs."""
    texts: list[tuple[Any, str]] = []
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return texts
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", 0)
        text = choice.get("text")  # completions
        if isinstance(text, str) and text:
            texts.append((index, text))
        delta = choice.get("delta")  # chat completions
        if not isinstance(delta, dict):
            continue
        for field in ("content", "reasoning_content", "reasoning", "refusal"):
            value = delta.get(field)
            if isinstance(value, str) and value:
                texts.append(((index, field), value))
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list):
            for call in tool_calls:
                function = call.get("function") if isinstance(call, dict) else None
                arguments = function.get("arguments") if isinstance(function, dict) else None
                if isinstance(arguments, str) and arguments:
                    texts.append(((index, "tool", call.get("index")), arguments))
    return texts


def response_event_text(event: dict[str, Any]) -> tuple[Any, str] | None:
    """The generated text of one Responses API ``*.delta`` event, keyed by the part it extends."""
    kind = event.get("type")
    delta = event.get("delta")
    if isinstance(kind, str) and kind.endswith(".delta") and isinstance(delta, str) and delta:
        return (kind, event.get("item_id"), event.get("output_index"), event.get("content_index")), delta
    return None
