"""A JSON answer registered with the log guard the moment its bytes are whole, not at the end.

FastAPI and Starlette send a JSON answer as one body message with ``more_body=True`` and then an
empty final message; anything the app logs in between would see an answer the guard does not know
yet. So the collected bytes are parsed as soon as they end like a JSON object. A try that fails is
repeated only once the body has doubled, so however the body is cut, parsing costs at most about
twice its length.
"""

from __future__ import annotations

from typing import Any

from ..wire.json_object import json_object

_WHITESPACE = b" \t\r\n"


def _ends_like_an_object(collected: bytearray) -> bool:
    position = len(collected) - 1
    while position >= 0 and collected[position] in _WHITESPACE:
        position -= 1
    return position >= 0 and collected[position] == ord("}")


class EarlyAnswer:
    """Parses a JSON body before its final message, when it is already complete."""

    __slots__ = ("_tried", "_length", "value")

    def __init__(self) -> None:
        self._tried = 0
        self._length = -1
        self.value: dict[str, Any] | None = None

    def attempt(self, collected: bytearray) -> dict[str, Any] | None:
        """The object the bytes so far form, when they newly do; None otherwise."""
        size = len(collected)
        if size == self._length or size < 2 * self._tried or not _ends_like_an_object(collected):
            return None
        self._tried = size
        value = json_object(collected)
        if value is not None:
            self.value, self._length = value, size
        return value

    def parsed(self, collected: bytearray) -> dict[str, Any] | None:
        """The object already parsed from exactly these bytes, if any (the final message was empty)."""
        return self.value if len(collected) == self._length else None
