"""Checking what a client sends to the Conversations API: items, metadata, ids and page parameters.

Items are stored the way the API lists them: typed, message content as a list of parts, a status,
and an id (the client's own, or one minted here). Every failure is a 400 naming the ``param``; a
value that failed a check is never echoed, since it may be content.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from ..errors import OpenAIError, invalid_request
from ..responses.ids import checked_id
from ..responses.include import INCLUDABLE  # the same list as for responses: the spec's
from ..responses.items import normalised_item
from ..store.conversations import Item

MAX_ITEMS_PER_CALL = 20  # OpenAI's limit for create and items.create
MAX_METADATA_PAIRS = 16
_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


def not_found(what: str, value: str) -> OpenAIError:
    # The same answer for missing, expired, deleted and another tenant's ids.
    return OpenAIError(404, f"{what} with id '{value}' not found.", code="not_found")


def zero_refusal(param: str | None = None) -> OpenAIError:
    return invalid_request(
        "Conversations are not available: this server keeps no data (zero data retention). "
        "Send the whole conversation in 'input' instead.",
        param=param,
        code="unsupported_parameter" if param else "unsupported_endpoint",
    )


def minted_id(item_type: object) -> str:
    prefix = _PREFIXES.get(item_type, "item") if isinstance(item_type, str) else "item"
    return f"{prefix}_{secrets.token_hex(24)}"


def stored_item(value: Any, param: str) -> Item:
    """One item as the conversation keeps it; raises 400 naming ``param`` for a malformed one."""
    if not isinstance(value, dict):
        raise invalid_request(f"Invalid '{param}': expected an object.", param=param, code="invalid_type")
    item = normalised_item(value)
    item_type = item.get("type")
    if not isinstance(item_type, str):
        raise invalid_request(
            f"Missing required parameter: '{param}.type'.", param=f"{param}.type", code="missing_required_parameter"
        )
    if item_type == "message":
        if item.get("role") not in ("user", "assistant", "system", "developer"):
            raise invalid_request(f"Invalid '{param}.role'.", param=f"{param}.role", code="invalid_value")
        if not isinstance(item.get("content"), list):
            raise invalid_request(
                f"Invalid '{param}.content': expected a string or an array of content parts.",
                param=f"{param}.content",
                code="invalid_type",
            )
        item.setdefault("status", "completed")
        # Output text as the API lists it always has annotations and logprobs, if only empty ones.
        item["content"] = [
            {"annotations": [], "logprobs": [], **part}
            if isinstance(part, dict) and part.get("type") == "output_text"
            else part
            for part in item["content"]
        ]
    if "id" in item and item["id"] is not None:
        checked_id(item["id"], f"{param}.id")
    else:
        item = {"id": minted_id(item_type), **item}
    return item


def stored_items(value: Any, param: str = "items", *, required: bool = False) -> list[Item]:
    if value is None and not required:
        return []
    if not isinstance(value, list):
        if value is None:
            raise invalid_request(
                f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
            )
        raise invalid_request(f"Invalid '{param}': expected an array of items.", param=param, code="invalid_type")
    if len(value) > MAX_ITEMS_PER_CALL:
        raise invalid_request(
            f"Invalid '{param}': at most {MAX_ITEMS_PER_CALL} items can be added at a time.",
            param=param,
            code="array_above_max_length",
        )
    return [stored_item(item, f"{param}[{index}]") for index, item in enumerate(value)]


def checked_metadata(value: Any) -> dict[str, str]:
    """OpenAI's metadata rules: up to 16 pairs, keys up to 64 characters, string values up to 512."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_request("Invalid 'metadata': expected an object.", param="metadata", code="invalid_type")
    if len(value) > MAX_METADATA_PAIRS:
        raise invalid_request(
            f"Invalid 'metadata': at most {MAX_METADATA_PAIRS} key-value pairs.", param="metadata", code="invalid_value"
        )
    for key, text in value.items():
        if len(key) > 64:
            raise invalid_request(
                "Invalid 'metadata': keys are at most 64 characters.", param="metadata", code="invalid_value"
            )
        if not isinstance(text, str) or len(text) > 512:
            raise invalid_request(
                "Invalid 'metadata': values must be strings of at most 512 characters.",
                param="metadata",
                code="invalid_value",
            )
    return dict(value)


def _checked_include(values: Iterable[str]) -> None:
    for value in values:
        if value not in INCLUDABLE:
            raise invalid_request(
                "Invalid 'include': expected one of " + ", ".join(sorted(INCLUDABLE)) + ".",
                param="include",
                code="invalid_value",
            )


def page_parameters(query_string: bytes) -> tuple[str | None, int, str]:
    """``after``, ``limit`` (1-100, default 20) and ``order`` (default ``desc``); ``include`` checked."""
    after: str | None = None
    limit, order = 20, "desc"
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name == "after":
            after = checked_id(value, "after")
        elif name == "limit":
            if not value.isdigit() or not 1 <= int(value) <= 100:
                raise invalid_request(
                    "Invalid 'limit': expected an integer from 1 to 100.", param="limit", code="invalid_value"
                )
            limit = int(value)
        elif name == "order":
            if value not in ("asc", "desc"):
                raise invalid_request("Invalid 'order': expected 'asc' or 'desc'.", param="order", code="invalid_value")
            order = value
        elif name in ("include", "include[]"):
            _checked_include([value])
    return after, limit, order


def check_include(query_string: bytes) -> None:
    """Validate ``include`` where it is the only parameter (items.create, items.retrieve)."""
    _checked_include(
        value
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
        if name in ("include", "include[]")
    )
