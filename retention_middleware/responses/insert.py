"""Inserting ``store`` and ``previous_response_id`` into a response object that lacks them.

``patch`` rewrites the values an upstream wrote; some upstreams (``transformers serve``) write
neither key, and a client must still see what it asked for. The keys are then inserted right after
the ``{`` that opens the response object, so every byte the upstream wrote stays as it was. This
needs the whole object (an absent key is only known absent at its end), so the caller hands over
complete SSE events or a complete JSON body.
"""

from __future__ import annotations

from typing import Any

import orjson

_RESPONSE_KEY = b'"response":'
_WHITESPACE = b" \t\r\n"


def missing_keys(response: dict[str, Any], store: bool, previous_response_id: str | None) -> bytes:
    """The members to insert (``"store":true,`` …), or ``b""`` when the object has both keys."""
    members = b""
    if "store" not in response:
        members += b'"store":' + (b"true" if store else b"false") + b","
    if "previous_response_id" not in response:
        members += b'"previous_response_id":' + orjson.dumps(previous_response_id) + b","
    return members


def _after_space(document: bytes | bytearray, position: int) -> int:
    while position < len(document) and document[position] in _WHITESPACE:
        position += 1
    return position


def insert_members(document: bytes | bytearray, brace: int, members: bytes) -> bytes:
    """``document`` with ``members`` inserted after the ``{`` at ``brace``."""
    after = brace + 1
    if document[_after_space(document, after) : _after_space(document, after) + 1] == b"}":
        members = members[:-1]  # an empty object: no member follows, so no trailing comma
    return bytes(document[:after]) + members + bytes(document[after:])


def object_start(document: bytes | bytearray) -> int | None:
    """Where a JSON body's top-level object opens."""
    position = _after_space(document, 0)
    return position if document[position : position + 1] == b"{" else None


def event_response_start(raw_event: bytes | bytearray) -> int | None:
    """Where the response object of one raw SSE event opens (the value of its ``"response"`` key).

    The key can only be a key: inside a JSON string its quotes would be escaped. The first one is
    the event's own, since any nested ``"response"`` key lies inside that object, after it.
    """
    key = raw_event.find(_RESPONSE_KEY)
    if key == -1:
        return None
    position = _after_space(raw_event, key + len(_RESPONSE_KEY))
    return position if raw_event[position : position + 1] == b"{" else None


def restore_keys(response: dict[str, Any], store: bool, previous_response_id: str | None) -> None:
    """The same insertion on a parsed object, keys first as the client's bytes have them."""
    inserted: dict[str, Any] = {}
    if "store" not in response:
        inserted["store"] = store
    if "previous_response_id" not in response:
        inserted["previous_response_id"] = previous_response_id
    if inserted:
        rest = dict(response)
        response.clear()
        response.update(inserted)
        response.update(rest)
