"""Parsing bodies and events the middleware only inspects: a JSON object, or nothing.

Nesting is bounded here, at parse time, so nothing deeper ever reaches the code that walks parsed
values: orjson parses up to 1024 levels but serialises only 254 (a deeper request body would fail
the upstream re-encoding or the store write with a 500), and the log guard walks values
recursively, which Python allows only so deep. One deeply nested request must cost only itself.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import OpenAIError, invalid_request

ORJSON_MAX_DEPTH = 254
"""The deepest value ``orjson.dumps`` serialises; one level more raises JSONEncodeError."""

ANSWER_MAX_DEPTH = 200
"""Nesting accepted in what an upstream answers; a deeper answer is forwarded but not inspected."""


def nesting_within(data: bytes | bytearray, value: Any, max_depth: int) -> bool:
    """Whether ``value`` (parsed from ``data``) nests at most ``max_depth`` arrays and objects.

    Cheap in the common case: a body with fewer brackets than the limit cannot nest deeper (brackets
    inside strings only make this test conservative). Otherwise orjson's own C-speed depth check
    decides, on the value wrapped in enough lists that it fails exactly past ``max_depth``; no
    Python code walks the value, so the check costs one serialisation, never a recursion.
    """
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return True
    wrapped = value
    for _ in range(ORJSON_MAX_DEPTH - max_depth):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return False
    return True


def json_object(data: bytes | bytearray, max_depth: int = ANSWER_MAX_DEPTH) -> dict[str, Any] | None:
    """``data`` parsed when it is a JSON object nested at most ``max_depth`` deep; None for anything
    else, malformed JSON included (what the middleware does not understand it forwards, and leaves
    the upstream or client to judge)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not nesting_within(data, value, max_depth):
        return None
    return value


def too_deep(max_depth: int) -> OpenAIError:
    return invalid_request(
        f"The request body nests arrays and objects more than {max_depth} levels deep (RETENTION_MAX_JSON_DEPTH).",
        code="json_too_deep",
    )


def request_object(data: bytes | bytearray, max_depth: int) -> dict[str, Any] | None:
    """Like ``json_object`` for a request body, but a JSON object nested past ``max_depth`` raises
    the 400 of ``too_deep`` instead of passing as "not understood": the middleware could not guard
    it, so it must not forward it."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    if not nesting_within(data, value, max_depth):
        raise too_deep(max_depth)
    return value
