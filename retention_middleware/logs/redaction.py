"""Find and replace request content inside arbitrary log text.

A log line rarely contains a prompt verbatim: servers render it into a chat template, escape it with
``%r`` or ``json.dumps``, truncate it to a maximum length, or log one streamed delta at a time. So
content is matched as *shared stretches* of text rather than whole strings (see ``content_index``):

- every stretch of ``MIN_SHARED`` characters or more shared with the content is found;
- content too short for that (a one-word prompt, a short line between escaped newlines) is matched
  exactly, as a whole word, so that "hi" does not redact the middle of "this";
- for content with non-ASCII text, the ``\\uXXXX`` form ``json.dumps`` writes is indexed as well.

Which strings of a JSON body are content: all of them but protocol vocabulary (model names, roles,
ids, enum values), see ``content_strings``.

Not everything short is content worth redacting (the noise rule): a piece with no letter or digit
(``{``, ``...``) never is, nor a single character; a piece cut out of a longer text (one line of a
multi-line prompt, one delta of a stream) must have ``MIN_PIECE`` characters. Only a whole content
string may be shorter ("hi" as the entire prompt).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from .content_index import MIN_SHARED, ContentIndex, Span

REDACTED = "[redacted]"

MIN_PIECE = 4
"""Shortest piece of a longer text matched on its own; "the", "and", "you" are everybody's words."""

MIN_WHOLE = 2
"""Shortest whole content string matched on its own: a single letter is everybody's."""

_ESCAPE_PRONE = re.compile(r"[\x00-\x1f\"'\\]+")
_ALNUM = re.compile(r"[^\W_]")


# Keys whose string values are protocol vocabulary, not content; walking past them keeps ids, model
# names and enum values such as "user" or "auto" readable in everybody's logs.
_NOT_CONTENT_KEYS = frozenset(
    {
        "model", "role", "type", "object", "id", "call_id", "item_id", "status", "tool_choice",
        "service_tier", "truncation", "finish_reason", "system_fingerprint", "encoding_format",
        "effort", "reasoning_effort", "verbosity", "detail", "previous_response_id", "format",
    }
)  # fmt: skip

# Keys whose string values are pieces of a text held elsewhere, never a content string of their
# own: a logprobs token is one piece of the answer (or of an answer not given).
_PIECE_KEYS = frozenset({"token"})


def content_strings(value: Any) -> Iterator[tuple[str, bool]]:
    """Every string inside a parsed JSON value, skipping protocol vocabulary, with whether it is a
    whole content string. Walked with a stack of its own: a body nested thousands deep is fine."""
    stack: list[tuple[Any, str | None]] = [(value, None)]
    while stack:
        item, key = stack.pop()
        if isinstance(item, str):
            if key not in _NOT_CONTENT_KEYS:
                yield item, key not in _PIECE_KEYS
        elif isinstance(item, dict):
            stack.extend((child, child_key) for child_key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, key) for child in item)


def worth_matching(piece: str, *, whole: bool) -> bool:
    """The noise rule: is this short text (already stripped) content worth redacting on its own?"""
    return len(piece) >= (MIN_WHOLE if whole else MIN_PIECE) and _ALNUM.search(piece) is not None


def variants(text: str) -> list[str]:
    if text.isascii():
        return [text]
    return [text, json.dumps(text)[1:-1]]


def short_pieces(text: str, *, whole: bool = True) -> list[str]:
    """The pieces of ``text`` matched as whole words: its stripped self when short, and the short
    segments between the characters that escaping rewrites (newlines, quotes, backslashes)."""
    found: list[str] = []
    for variant in variants(text):
        for segment in _ESCAPE_PRONE.split(variant):
            segment = segment.strip()
            if len(segment) < MIN_SHARED and worth_matching(segment, whole=False) and segment not in found:
                found.append(segment)
    stripped = text.strip()
    if whole and len(stripped) < MIN_SHARED and worth_matching(stripped, whole=True) and stripped not in found:
        found.append(stripped)
    return found


def apply_spans(text: str, spans: list[Span]) -> str:
    """``text`` with every span (sorted by start; overlapping ones merge) replaced by ``REDACTED``."""
    if not spans:
        return text
    pieces: list[str] = []
    position = 0
    for start, end in spans:
        if start >= position:
            pieces.append(text[position:start])
            pieces.append(REDACTED)
        position = max(position, end)  # an overlapping span only widens the redaction
    pieces.append(text[position:])
    return "".join(pieces)


class ContentMatcher:
    """The content of one set of strings, on an index of its own (the log guard shares one index
    among all in-flight requests; this is the same matching for a single owner)."""

    __slots__ = ("_index", "_texts")

    def __init__(self) -> None:
        self._index = ContentIndex()
        self._texts: list[str] = []

    def add(self, text: str) -> None:
        """Index one content string (a message, an input, a piece of generated text)."""
        if not text.strip():
            return
        for variant in variants(text):
            self._index.add_text(variant)
            self._texts.append(variant)
        for piece in short_pieces(text):
            self._index.add_piece(piece)

    def holds(self, text: str) -> bool:
        """True when ``text`` is itself a piece of the content (e.g. one streamed delta)."""
        text = text.strip()
        return worth_matching(text, whole=False) and any(text in part for part in self._texts)

    def redact(self, text: str) -> str:
        return apply_spans(text, self._index.spans(text))
