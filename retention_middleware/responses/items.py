"""Input items: normalising a request's ``input`` and listing it the way ``input_items`` does."""

from __future__ import annotations

import hashlib
from typing import Any

from ..errors import invalid_request


def input_as_items(value: Any, max_items: int | None = None) -> list[Any]:
    """The request's ``input`` as a list of items; a string is one user message. Raises 400, also
    for more than ``max_items`` items (counted first, so a hostile list costs no walk)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list):
        if max_items is not None and len(value) > max_items:
            raise invalid_request(
                f"Invalid 'input': at most {max_items} input items are accepted per response "
                f"(RETENTION_MAX_INPUT_ITEMS), got {len(value)}.",
                param="input",
                code="too_many_input_items",
            )
        for position, item in enumerate(value):
            if not isinstance(item, dict):
                raise invalid_request(
                    f"Invalid 'input[{position}]': expected an object.",
                    param=f"input[{position}]",
                    code="invalid_type",
                )
        return value
    raise invalid_request(
        "Invalid 'input': expected a string or an array of items.", param="input", code="invalid_type"
    )


# Item types the spec lists with a required ``status``; an input item sent without one was, by the
# time it is listed, complete.
_STATUS_TYPES = frozenset({"function_call", "function_call_output", "computer_call_output", "custom_tool_call_output"})


def _output_part(part: Any) -> Any:
    """An assistant message's part as the spec lists it: ``output_text`` carries its annotations."""
    if isinstance(part, dict) and part.get("type") == "output_text":
        return {"annotations": [], "logprobs": [], **part}
    return part


def normalised_item(item: dict[str, Any]) -> dict[str, Any]:
    """An input item as ``input_items`` shows it: typed, with content as a list of parts.

    An assistant message sent as shorthand (``{"role": "assistant", "content": "Hello"}``) is listed
    as the output message it stands for: ``status`` and ``output_text`` parts with ``annotations``.
    """
    if "type" not in item and "role" in item:
        item = {"type": "message", **item}
    kind = item.get("type")
    if kind == "message" and isinstance(item.get("content"), str):
        part_type = "output_text" if item.get("role") == "assistant" else "input_text"
        item = {**item, "content": [{"type": part_type, "text": item["content"]}]}
    if kind == "message" and item.get("role") == "assistant":
        content = item.get("content")
        parts = [_output_part(part) for part in content] if isinstance(content, list) else content
        item = {**item, "status": item.get("status") or "completed", "content": parts}
    elif kind in _STATUS_TYPES and "status" not in item:
        item = {**item, "status": "completed"}
    return item


def listed_item(response_id: str, position: int, item: Any) -> dict[str, Any]:
    """The item with an id: its own, or one derived from the response id and its position, so the
    same item always lists under the same id (``after`` cursors depend on that)."""
    listed = normalised_item(item) if isinstance(item, dict) else {"type": "unknown"}
    if isinstance(listed.get("id"), str) and listed["id"]:
        return listed
    prefix = "msg" if listed.get("type") == "message" else "item"
    digest = hashlib.sha256(f"{response_id}:{position}".encode()).hexdigest()[:40]
    return {"id": f"{prefix}_{digest}", **listed}


def _listed_id(response_id: str, position: int, item: Any) -> str:
    """The id ``listed_item`` gives this item, without building the listed item."""
    own = item.get("id") if isinstance(item, dict) else None
    if isinstance(own, str) and own:
        return own
    return str(listed_item(response_id, position, item)["id"])


def list_page(response_id: str, items: list[Any], *, after: str | None, limit: int, order: str) -> dict[str, Any]:
    """One page of ``GET /v1/responses/{id}/input_items``.

    Only the page's own items are built: listing a response of thousands of items with ``limit=1``
    costs one item, and an ``after`` cursor costs one id per item it skips (RETENTION_MAX_INPUT_ITEMS
    bounds how many there can be).
    """
    count = len(items)
    positions = range(count) if order == "asc" else range(count - 1, -1, -1)
    start = 0
    if after is not None:
        found = next(
            (
                index
                for index, position in enumerate(positions)
                if _listed_id(response_id, position, items[position]) == after
            ),
            None,
        )
        if found is None:
            raise invalid_request(
                f"No input item with id '{after}' in this response.", param="after", code="invalid_value"
            )
        start = found + 1
    page = [listed_item(response_id, position, items[position]) for position in positions[start : start + limit]]
    return {
        "object": "list",
        "data": page,
        # The spec types both as strings, required: an empty page has empty ones, not null.
        "first_id": page[0]["id"] if page else "",
        "last_id": page[-1]["id"] if page else "",
        "has_more": start + limit < count,
    }
