"""Generated text, registered one streamed delta at a time and indexed as it grows.

Deltas are a few characters each, so they are kept as a list until someone logs; then they are
joined onto the stream's open block, and only the grams that the new text completes are indexed.
A block is closed at ``BLOCK`` characters and the next one starts with the last ``OVERLAP``
characters of it, so any stretch up to ``OVERLAP`` long lies whole inside one block, and a longer
one is found block by block. No work is redone when the stream grows: what indexing costs is
proportional to the text generated, not to how often the process logs.
"""

from __future__ import annotations

import json
import re

from .content_index import MIN_SHARED, ContentIndex
from .redaction import worth_matching

BLOCK = 4096
OVERLAP = 64
_DELTAS_PER_STRING = 256  # unindexed deltas are joined every 256, not kept one string apiece

_ESCAPE_PRONE = re.compile(r"[\x00-\x1f\"'\\]+")


class GeneratedStream:
    """One generated part (a choice, an output item) of one request."""

    __slots__ = ("_pending", "_blocks", "_tail", "_tail_id", "_closed", "_carry", "_carry_long", "_split",
                 "_provisional", "_pieces", "_held", "_held_new", "_escaped", "_is_escaped")  # fmt: skip

    def __init__(self, *, escaped: bool = False) -> None:
        self._pending: list[str] = []
        self._blocks: list[str] = []  # unindexed deltas, joined every 256
        self._tail = ""  # the open block's text
        self._tail_id: int | None = None
        self._closed: list[int] = []
        self._carry = ""  # the segment after the last escape-prone character, while it is short
        self._carry_long = False
        self._split = False  # an escape-prone character was seen: no segment is the whole text
        self._provisional: str | None = None  # the open segment's piece, replaced as it grows
        self._pieces: list[str] = []
        self._held: set[str] = set()
        self._held_new: list[str] = []  # held deltas not yet in the index
        self._is_escaped = escaped
        self._escaped: GeneratedStream | None = None  # the json.dumps form, once text is not ASCII

    def add(self, delta: str) -> bool:
        """Keep one delta; True when enough are waiting that ``compact`` should be called.

        Called on the event loop without the guard's lock: appending to a list is atomic, and
        ``flush`` and ``compact`` (which hold the lock) take exactly the items they counted."""
        pending = self._pending
        pending.append(delta)
        if not self._is_escaped and (self._escaped is not None or not delta.isascii()):
            if self._escaped is None:
                self._escaped = GeneratedStream(escaped=True)
            if self._escaped.add(json.dumps(delta)[1:-1]):
                return True
        return len(pending) >= _DELTAS_PER_STRING

    def _take(self) -> list[str]:
        """The waiting deltas, removed; a server logging one delta alone logs a piece too short to
        share a stretch with anything, so the distinct short ones are kept to match whole arguments."""
        pending = self._pending
        count = len(pending)
        taken = pending[:count]
        del pending[:count]
        if not self._is_escaped:
            for held in set(map(str.strip, taken)) - self._held:
                if len(held) < MIN_SHARED and worth_matching(held, whole=False):
                    self._held.add(held)
                    self._held_new.append(held)
        return taken

    def compact(self) -> None:
        """Join waiting deltas into one string: one object per 256 deltas rather than one each."""
        if self._escaped is not None:
            self._escaped.compact()
        taken = self._take()
        if taken:
            self._blocks.append("".join(taken))

    def flush(self, index: ContentIndex) -> None:
        """Index what arrived since the last flush."""
        if self._escaped is not None:
            self._escaped.flush(index)
        taken = self._take()
        if not taken and not self._blocks:
            return
        new = "".join(self._blocks) + "".join(taken)
        self._blocks = []
        text = self._tail + new
        if self._tail_id is None:
            self._tail_id = index.open_part(text)
        else:
            index.extend_part(self._tail_id, text)
        self._tail = text
        if len(text) >= BLOCK + OVERLAP:
            self._closed.append(self._tail_id)
            self._tail = text[-OVERLAP:]
            self._tail_id = index.open_part(self._tail)
        if not self._is_escaped:
            for held in self._held_new:
                index.add_held(held)
            self._held_new = []
            self._index_pieces(index, new)

    def _index_pieces(self, index: ContentIndex, new: str) -> None:
        segments = _ESCAPE_PRONE.split(self._carry + new)
        last = segments.pop()
        for number, segment in enumerate(segments):
            if number == 0 and self._carry_long:
                continue  # the end of a segment already too long to be a piece
            self._add_piece(index, segment.strip(), whole=False)
        if segments:
            self._split = True
            self._carry_long = len(last) >= MIN_SHARED
        else:
            self._carry_long = self._carry_long or len(last) >= MIN_SHARED
        self._carry = "" if self._carry_long else last
        # The open segment may be the stream's last line, or its whole text: matched for now, and
        # replaced by its longer self when more text arrives.
        if self._provisional is not None:
            index.remove_piece(self._provisional)
            self._provisional = None
        piece = self._carry.strip()
        if piece and len(piece) < MIN_SHARED and worth_matching(piece, whole=not self._split):
            self._provisional = piece
            index.add_piece(piece)

    def _add_piece(self, index: ContentIndex, piece: str, *, whole: bool) -> None:
        if len(piece) < MIN_SHARED and worth_matching(piece, whole=whole):
            self._pieces.append(piece)
            index.add_piece(piece)

    def release(self, index: ContentIndex) -> None:
        """Take everything this stream put in the index out of it again."""
        if self._escaped is not None:
            self._escaped.release(index)
        for part_id in self._closed:
            index.close_part(part_id)
        if self._tail_id is not None:
            index.close_part(self._tail_id)
        for piece in self._pieces:
            index.remove_piece(piece)
        if self._provisional is not None:
            index.remove_piece(self._provisional)
        unindexed = set(self._held_new)
        for delta in self._held:
            if delta not in unindexed:
                index.remove_held(delta)
        self._closed, self._tail_id, self._pieces, self._provisional, self._held = [], None, [], None, set()
