"""Find and replace request content inside arbitrary log text.

A log line rarely contains a prompt verbatim: servers render it into a chat template, escape it with
``%r`` or ``json.dumps``, truncate it to a maximum length, or log one streamed delta at a time. So the
matcher looks for any *shared stretch* of text rather than whole strings:

- every long-enough stretch shared with the content is found through an index of short substrings
  ("grams") sampled every ``STRIDE`` characters of the content, then grown character by character to
  its full extent; a shared stretch of ``MIN_SHARED`` characters or more always contains a sampled gram;
- content too short for that (a one-word prompt, a short line between escaped newlines) is matched
  exactly, as a whole word, so that "hi" does not redact the middle of "this";
- for content with non-ASCII text, the ``\\uXXXX`` form ``json.dumps`` writes is indexed as well.

The index is built only when a log record actually needs it, so a server that does not log pays
nothing.
"""

from __future__ import annotations

import json
import re

REDACTED = "[redacted]"

GRAM = 6
STRIDE = 4
MIN_SHARED = GRAM + STRIDE - 1
"""Shared stretches at least this long are always found through the gram index."""

MIN_HELD = 3
"""Shortest log argument that is redacted for being a piece of the content."""

_MAX_ALIGNMENTS = 16  # occurrences of one gram to try; grams are rare in real text
_ESCAPE_PRONE = re.compile(r"[\x00-\x1f\"'\\]+")


def _variants(text: str) -> list[str]:
    if text.isascii():
        return [text]
    return [text, json.dumps(text)[1:-1]]


class ContentMatcher:
    """Holds the content of one request and redacts it from text."""

    __slots__ = ("_corpus_parts", "_corpus", "_grams", "_short", "_short_pattern")

    def __init__(self) -> None:
        self._corpus_parts: list[str] = []
        self._corpus: str | None = ""
        self._grams: set[str] = set()
        self._short: set[str] = set()
        self._short_pattern: re.Pattern[str] | None = None

    def add(self, text: str) -> None:
        """Index one content string (a message, an input, a piece of generated text)."""
        stripped = text.strip()
        if not stripped:
            return
        for variant in _variants(text):
            self._corpus_parts.append(variant)
            self._corpus = None
            grams = self._grams
            for start in range(0, len(variant) - GRAM + 1, STRIDE):
                grams.add(variant[start : start + GRAM])
            for segment in _ESCAPE_PRONE.split(variant):
                segment = segment.strip()
                if 0 < len(segment) < MIN_SHARED and segment not in self._short:
                    self._short.add(segment)
                    self._short_pattern = None
        if len(stripped) < MIN_SHARED and stripped not in self._short:
            self._short.add(stripped)
            self._short_pattern = None

    def holds(self, text: str) -> bool:
        """True when ``text`` is itself a piece of the content (e.g. one streamed delta)."""
        text = text.strip()
        # One or two characters are a piece of almost any text; matching them would redact model
        # names and status words from every record while a request is in flight.
        return len(text) >= MIN_HELD and any(text in part for part in self._corpus_parts)

    def redact(self, text: str) -> str:
        spans = sorted(self._shared_spans(text) + self._short_spans(text))
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

    def _shared_spans(self, text: str) -> list[tuple[int, int]]:
        grams = self._grams
        if not grams or len(text) < GRAM:
            return []
        if self._corpus is None:
            # NUL never occurs in log text, so no match runs from one content string into the next.
            self._corpus = "\x00".join(self._corpus_parts)
        corpus = self._corpus
        spans: list[tuple[int, int]] = []
        index = 0
        last = len(text) - GRAM
        while index <= last:
            gram = text[index : index + GRAM]
            if gram not in grams:
                index += 1
                continue
            best_start, best_end = index, index + GRAM
            found = corpus.find(gram)
            tries = 0
            while found >= 0 and tries < _MAX_ALIGNMENTS:
                start, end = index, index + GRAM
                left, right = found, found + GRAM
                while start > 0 and left > 0 and text[start - 1] == corpus[left - 1]:
                    start -= 1
                    left -= 1
                while end < len(text) and right < len(corpus) and text[end] == corpus[right]:
                    end += 1
                    right += 1
                if end - start > best_end - best_start:
                    best_start, best_end = start, end
                found = corpus.find(gram, found + 1)
                tries += 1
            if best_end - best_start >= MIN_SHARED:
                spans.append((best_start, best_end))
                index = max(index + 1, best_end - GRAM + 1)
            else:
                # Six shared characters alone ("request", "the user") are as likely coincidence.
                index += 1
        return spans

    def _short_spans(self, text: str) -> list[tuple[int, int]]:
        if not self._short:
            return []
        if self._short_pattern is None:
            alternatives = "|".join(re.escape(piece) for piece in sorted(self._short, key=len, reverse=True))
            # Whole words only: a short piece inside a longer word is a coincidence, not content. An
            # escape such as the \n that %r writes for a newline also starts a word.
            self._short_pattern = re.compile(
                rf"(?:(?<!\w)|(?<=\\[ntr])|(?<=\\u[0-9a-fA-F]{{4}}))(?:{alternatives})(?!\w)"
            )
        return [match.span() for match in self._short_pattern.finditer(text)]
