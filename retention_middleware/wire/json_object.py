"""Parsing bodies and events the middleware only inspects: a JSON object, or nothing."""

from __future__ import annotations

from typing import Any

import orjson


def json_object(data: bytes | bytearray) -> dict[str, Any] | None:
    """``data`` parsed when it is a JSON object; None for anything else, malformed JSON included
    (what the middleware does not understand it forwards, and leaves the upstream or client to judge)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
