"""Restoring what the client asked for in the upstream's answer, without re-encoding it.

The upstream is always asked for ``store: false`` and never sees ``previous_response_id``, so its
response objects say so. The client must see what it sent, so the value after the key ``"store":``
(``false``) and after ``"previous_response_id":`` (``null``) is rewritten as the bytes stream past;
so is ``"conversation":`` (``null``) for a response in a conversation, which the upstream never saw.
Working on bytes keeps every other byte as the upstream wrote it (formatting, key order, escapes) and
keeps one message out per message in. Such a key can only be a key of a JSON object: inside a JSON
string its quotes would be escaped.

Only the value is ever rewritten, so the key may leave in one message and its value arrive in the
next; a message is held back only by the few bytes of a value it ends in the middle of
(``"store":fal``), which an answer that needs no rewriting never contains.
"""

from __future__ import annotations

from typing import Any

import orjson

from .insert import restore_keys

Pattern = tuple[bytes, bytes, bytes]
"""(key with its colon, value to replace, replacement value)."""


def restoration_patterns(
    store: bool, previous_response_id: str | None, conversation: str | None = None
) -> list[Pattern]:
    patterns: list[Pattern] = []
    if store:
        patterns += [(b'"store":', b"false", b"true"), (b'"store": ', b"false", b"true")]
    if previous_response_id is not None:
        quoted = orjson.dumps(previous_response_id)
        patterns += [
            (b'"previous_response_id":', b"null", quoted),
            (b'"previous_response_id": ', b"null", quoted),
        ]
    if conversation is not None:  # an upstream writing the key says null: it was in no conversation
        named = orjson.dumps({"id": conversation})
        patterns += [(b'"conversation":', b"null", named), (b'"conversation": ', b"null", named)]
    return patterns


def restore_in_object(
    response: dict[str, Any], store: bool, previous_response_id: str | None, conversation: str | None = None
) -> None:
    """The same restoration on a parsed response object (the copy that is stored), absent keys
    inserted as ``insert`` inserts them in the client's bytes."""
    if store and response.get("store") is False:
        response["store"] = True
    if previous_response_id is not None and "previous_response_id" in response:
        if response["previous_response_id"] is None:
            response["previous_response_id"] = previous_response_id
    if conversation is not None and "conversation" in response and response["conversation"] is None:
        response["conversation"] = {"id": conversation}
    restore_keys(response, store, previous_response_id, conversation)


class StreamingPatcher:
    """Rewrites pattern values in a stream split anywhere."""

    __slots__ = ("_patterns", "_context", "_held", "_emitted_tail")

    def __init__(self, patterns: list[Pattern]) -> None:
        self._patterns = patterns
        self._context = max(len(key) for key, _, _ in patterns)
        self._held = b""  # the start of a value the last message ended in
        self._emitted_tail = b""  # the last bytes already sent, where a key may have ended

    def feed(self, chunk: bytes, *, final: bool) -> bytes:
        tail = self._emitted_tail
        data = self._held + chunk
        text = tail + data
        for key, old, new in self._patterns:
            target = key + old
            position = text.find(target)
            while position != -1:
                # Values are never sent in part, so a value to replace always lies in ``data``.
                value_start = position + len(key) - len(tail)
                data = data[:value_start] + new + data[value_start + len(old) :]
                text = tail + data
                position = text.find(target, position + len(key) + len(new))
        hold = 0 if final else self._partial_value_length(text)
        self._held = data[len(data) - hold :] if hold else b""
        out = data[: len(data) - hold]
        self._emitted_tail = (tail + out)[-self._context :]
        return out

    def _partial_value_length(self, text: bytes) -> int:
        """How many trailing bytes are a key followed by an unfinished value to replace."""
        for key, old, _ in self._patterns:
            for length in range(len(old) - 1, 0, -1):
                if text.endswith(old[:length]) and text[: len(text) - length].endswith(key):
                    return length
        return 0
