"""Where the elements of one array sit inside a JSON document, as byte offsets.

Rewriting a single element of a server's JSON answer this way leaves every other byte exactly as the
server wrote it. The scanner only tracks strings (and their escapes) and nesting; it trusts the
document to be valid JSON, which the caller has already checked by parsing it.
"""

from __future__ import annotations

_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_QUOTE = ord('"')
_BACKSLASH = ord("\\")
_COMMA = ord(",")
_COLON = ord(":")
_WHITESPACE = frozenset(b" \t\r\n")


def _string_end(document: bytes, start: int) -> int:
    """Index just past the string that opens at ``start``."""
    position = start + 1
    while True:
        position = document.index(b'"', position)
        backslashes = 0
        while document[position - 1 - backslashes] == _BACKSLASH:
            backslashes += 1
        if backslashes % 2 == 0:
            return position + 1
        position += 1


def _value_end(document: bytes, start: int) -> int:
    """Index just past the JSON value that starts at ``start``."""
    first = document[start]
    if first == _QUOTE:
        return _string_end(document, start)
    if first not in _OPEN:
        position = start
        while position < len(document) and document[position] not in _CLOSE and document[position] != _COMMA:
            position += 1
        while document[position - 1] in _WHITESPACE:
            position -= 1
        return position
    depth = 0
    position = start
    while True:
        byte = document[position]
        if byte == _QUOTE:
            position = _string_end(document, position)
            continue
        if byte in _OPEN:
            depth += 1
        elif byte in _CLOSE:
            depth -= 1
            if depth == 0:
                return position + 1
        position += 1


def _skip_space(document: bytes, position: int) -> int:
    while document[position] in _WHITESPACE:
        position += 1
    return position


def top_level_array_elements(document: bytes, key: str) -> list[tuple[int, int]] | None:
    """Spans of the elements of the array under ``key`` in the top-level object, or None."""
    wanted = f'"{key}"'.encode()
    position = _skip_space(document, 0)
    if document[position : position + 1] != b"{":
        return None
    position += 1
    while True:
        position = _skip_space(document, position)
        if document[position] != _QUOTE:
            return None  # "}" (no such key)
        key_end = _string_end(document, position)
        name = document[position:key_end]
        position = _skip_space(document, key_end)
        if document[position] != _COLON:
            return None
        position = _skip_space(document, position + 1)
        value_end = _value_end(document, position)
        if name == wanted:
            return _elements(document, position, value_end) if document[position : position + 1] == b"[" else None
        position = _skip_space(document, value_end)
        if document[position] != _COMMA:
            return None
        position += 1


def _elements(document: bytes, start: int, end: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    position = _skip_space(document, start + 1)
    while position < end - 1:
        element_end = _value_end(document, position)
        spans.append((position, element_end))
        position = _skip_space(document, element_end)
        if document[position] == _COMMA:
            position = _skip_space(document, position + 1)
    return spans
