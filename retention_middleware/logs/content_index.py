"""One index of the content of every in-flight request, so that checking a log record costs what
the record's own length costs, however many requests are in flight.

The index holds *parts*: immutable strings (a message, a prompt, a block of generated text), each
under an integer id. Two lookups are kept over all of them together:

- sampled grams: the hash of every ``GRAM``-character substring that starts at a multiple of
  ``STRIDE`` in a part, mapped to where it occurs. A record is read once, left to right; wherever
  one of its grams is in the index, the match is grown in both directions against the part it came
  from, and kept when it reaches ``MIN_SHARED`` characters. Every shared stretch that long contains
  a sampled gram, so every one is found;
- pieces: short strings matched as whole words (see ``redaction``), counted by how many requests
  registered them, looked up by length at each word start of the record.

Both are reference-counted: a request adds its registrations and removes them when it completes, and
identical strings (the system prompt every request carries) are held once.

A gram seen in more than ``MAX_OCCURRENCES`` places keeps only that many: it is common text, and
the cap is what bounds memory and work for repetitive content ("aaaa…") and for the phrases every
request shares. A stretch made only of such grams can therefore go unrecognised.
"""

from __future__ import annotations

import re

GRAM = 6
STRIDE = 4
MIN_SHARED = GRAM + STRIDE - 1
"""Shared stretches at least this long always contain a sampled gram."""

MAX_OCCURRENCES = 64
_LEFT_REACH = MIN_SHARED - 1  # the first gram hit of a stretch is at most STRIDE-1 characters into it
_OFFSET_BITS = 32
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1

# Where a whole-word piece may start: not inside a word, or right after an escape such as the \n
# that %r writes for a newline, or the \uXXXX that json.dumps writes.
_WORD_START = re.compile(r"(?:(?<!\w)|(?<=\\[ntr])|(?<=\\u[0-9a-fA-F]{4}))(?=\S)")
_ALNUM = re.compile(r"[^\W_]")

Span = tuple[int, int]


def _word_char(character: str) -> bool:
    return character.isalnum() or character == "_"


def _equal_run(text: str, start: int, part: str, at: int) -> int:
    """How many characters ``text[start:]`` and ``part[at:]`` share from the start: slices compared
    with doubling then halving widths, so a long match costs C-speed comparisons, not a Python loop."""
    limit = min(len(text) - start, len(part) - at)
    run, width = 0, 16
    while run < limit and width:
        width = min(width, limit - run)
        if text[start + run : start + run + width] == part[at + run : at + run + width]:
            run += width
            width *= 2
        else:
            width //= 2
    return run


class ContentIndex:
    """Parts, sampled grams and whole-word pieces of all in-flight content. Changes must be
    serialised (the log guard holds a lock); a lookup may run alongside one: parts are added before
    their grams and removed before them, so a lookup finds a gram's part or skips it."""

    __slots__ = ("_parts", "_interned", "_grams", "_pieces", "_piece_lengths", "_held", "_next_id")

    def __init__(self) -> None:
        self._parts: dict[int, str] = {}
        self._interned: dict[str, list[int]] = {}  # text -> [part id, references]
        self._grams: dict[int, int | list[int]] = {}  # hash(gram) -> occurrence(s): id << 32 | offset
        self._pieces: dict[str, int] = {}  # piece -> references
        self._piece_lengths: dict[int, int] = {}  # length -> how many pieces have it, longest tried first
        self._held: dict[str, int] = {}  # streamed deltas, matched only as a whole log argument
        self._next_id = 0

    # -- parts ---------------------------------------------------------------------------------
    def add_text(self, text: str) -> int:
        """Hold ``text`` (once, however many requests add it); the id to give back to ``remove``."""
        entry = self._interned.get(text)
        if entry is not None:
            entry[1] += 1
            return entry[0]
        part_id = self.open_part(text)
        self._interned[text] = [part_id, 1]
        return part_id

    def remove_text(self, part_id: int) -> None:
        text = self._parts.get(part_id)
        if text is None:
            return
        entry = self._interned.get(text)
        if entry is not None and entry[0] == part_id:
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self._interned[text]
        self.close_part(part_id)

    def open_part(self, text: str) -> int:
        """A part of its own (not shared), which may later grow with ``extend_part``."""
        part_id = self._next_id
        self._next_id += 1
        self._parts[part_id] = ""
        self.extend_part(part_id, text)
        return part_id

    def extend_part(self, part_id: int, text: str) -> None:
        """Replace the part with ``text``, which starts with the part as it was (text only grows)."""
        old = self._parts[part_id]
        self._parts[part_id] = text
        first = -(-max(0, len(old) - GRAM + 1) // STRIDE) * STRIDE  # the first gram not yet indexed
        base = part_id << _OFFSET_BITS
        grams = self._grams
        for offset in range(first, len(text) - GRAM + 1, STRIDE):
            key = hash(text[offset : offset + GRAM])
            held = grams.get(key)
            if held is None:
                grams[key] = base | offset
            elif isinstance(held, int):
                grams[key] = [held, base | offset]
            elif len(held) < MAX_OCCURRENCES:
                held.append(base | offset)

    def close_part(self, part_id: int) -> None:
        text = self._parts.pop(part_id, None)
        if text is None:
            return
        base = part_id << _OFFSET_BITS
        grams = self._grams
        for offset in range(0, len(text) - GRAM + 1, STRIDE):
            key = hash(text[offset : offset + GRAM])
            held = grams.get(key)
            occurrence = base | offset
            if held == occurrence:
                del grams[key]
            elif isinstance(held, list) and occurrence in held:
                held.remove(occurrence)
                if not held:
                    del grams[key]

    # -- pieces --------------------------------------------------------------------------------
    def add_piece(self, piece: str) -> None:
        count = self._pieces.get(piece, 0)
        self._pieces[piece] = count + 1
        if not count:
            self._piece_lengths[len(piece)] = self._piece_lengths.get(len(piece), 0) + 1

    def remove_piece(self, piece: str) -> None:
        count = self._pieces.get(piece, 0)
        if count > 1:
            self._pieces[piece] = count - 1
        elif count == 1:
            del self._pieces[piece]
            left = self._piece_lengths[len(piece)] - 1
            if left:
                self._piece_lengths[len(piece)] = left
            else:
                del self._piece_lengths[len(piece)]

    def add_held(self, delta: str) -> None:
        self._held[delta] = self._held.get(delta, 0) + 1

    def remove_held(self, delta: str) -> None:
        count = self._held.pop(delta, 0)
        if count > 1:
            self._held[delta] = count - 1

    def holds(self, argument: str) -> bool:
        """True when a log argument is, whole, a piece the index holds or a streamed delta."""
        return argument in self._held or argument in self._pieces

    @property
    def empty(self) -> bool:
        return not self._parts and not self._pieces and not self._held

    # -- matching ------------------------------------------------------------------------------
    def spans(self, text: str) -> list[Span]:
        """Where ``text`` holds indexed content, in order of their start; spans may overlap."""
        spans = self._shared_spans(text) if self._grams else []
        if self._pieces:
            spans += self._piece_spans(text)
            spans.sort()
        return spans

    def _shared_spans(self, text: str) -> list[Span]:
        grams, parts = self._grams, self._parts
        spans: list[Span] = []
        index, last = 0, len(text) - GRAM
        while index <= last:
            held = grams.get(hash(text[index : index + GRAM]))
            if held is None:
                index += 1
                continue
            best_start, best_end = index, index
            gram = text[index : index + GRAM]
            window = text[index : index + MIN_SHARED]
            for occurrence in (held,) if isinstance(held, int) else held:
                part = parts.get(occurrence >> _OFFSET_BITS)
                at = occurrence & _OFFSET_MASK
                if part is None:
                    continue
                if part.startswith(window, at):
                    right = _equal_run(text, index, part, at)
                elif part.startswith(gram, at):
                    right = GRAM  # fewer than MIN_SHARED: only a few characters more can follow
                    while index + right < len(text) and text[index + right] == part[at + right : at + right + 1]:
                        right += 1
                else:
                    continue  # a hash collision, not the gram
                left, reach = 0, min(_LEFT_REACH, index, at)
                while left < reach and text[index - left - 1] == part[at - left - 1]:
                    left += 1
                if right + left > best_end - best_start:
                    best_start, best_end = index - left, index + right
                    if right + left >= MIN_SHARED:
                        break  # the first alignment long enough will do; what it misses, the next finds
            if best_end - best_start >= MIN_SHARED and _ALNUM.search(text, best_start, best_end):
                spans.append((best_start, best_end))
                index = max(index + 1, best_end - GRAM + 1)
            else:
                # Six shared characters alone ("request", "the user") are as likely coincidence.
                index += 1
        return spans

    def _piece_spans(self, text: str) -> list[Span]:
        pieces = self._pieces
        lengths = sorted(list(self._piece_lengths), reverse=True)  # one C call: a snapshot
        spans: list[Span] = []
        size = len(text)
        after = 0
        for match in _WORD_START.finditer(text):
            start = match.start()
            if start < after:
                continue
            for length in lengths:
                end = start + length
                if end <= size and (end == size or not _word_char(text[end])) and text[start:end] in pieces:
                    spans.append((start, end))
                    after = end
                    break
        return spans
