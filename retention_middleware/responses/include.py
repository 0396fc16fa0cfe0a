"""``include[]`` on ``GET /v1/responses/{id}``: the opt-in output fields, shown only when asked for.

A stored response holds what the upstream produced. Some of its fields are ones the Responses API
returns only on request (``include``); a GET that does not ask for one gets the object without it,
as from OpenAI. Values outside the spec's list are a 400 naming ``include``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import invalid_request

INCLUDABLE = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    }
)


def checked_include(values: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(values)
    for value in sorted(chosen):
        if value not in INCLUDABLE:
            raise invalid_request(
                f"Invalid 'include': {value[:80]!r} is not one of {', '.join(sorted(INCLUDABLE))}.",
                param="include",
                code="invalid_value",
            )
    return chosen


def _item(item: Any, include: frozenset[str]) -> Any:
    if not isinstance(item, dict):
        return item
    kind = item.get("type")
    if kind == "message" and "message.output_text.logprobs" not in include:
        content = item.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("logprobs") for p in content):
            parts = [
                {**p, "logprobs": []} if isinstance(p, dict) and p.get("type") == "output_text" else p for p in content
            ]
            return {**item, "content": parts}
    if kind == "reasoning" and "reasoning.encrypted_content" not in include and item.get("encrypted_content"):
        return {**item, "encrypted_content": None}
    if kind == "file_search_call" and "file_search_call.results" not in include and item.get("results"):
        return {**item, "results": None}
    if kind == "code_interpreter_call" and "code_interpreter_call.outputs" not in include and item.get("outputs"):
        return {**item, "outputs": None}
    if kind == "web_search_call" and "web_search_call.action.sources" not in include:
        action = item.get("action")
        if isinstance(action, dict) and "sources" in action:
            return {**item, "action": {k: v for k, v in action.items() if k != "sources"}}
    return item


def with_include(response: dict[str, Any], include: frozenset[str]) -> dict[str, Any]:
    """``response`` with the opt-in fields ``include`` does not name taken out (a new object)."""
    output = response.get("output")
    if not isinstance(output, list):
        return response
    return {**response, "output": [_item(item, include) for item in output]}
