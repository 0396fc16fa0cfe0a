"""Inserting ``store``, ``previous_response_id`` (and ``conversation``, for a response in one) into a
response object that lacks them, in flight.

``patch`` rewrites the values an upstream wrote; some upstreams (``transformers serve``) write
neither key, and a client must still see what it asked for. An absent key is only known absent when
the object ends, so the members are inserted right before the ``}`` that closes the response object
(``,"store":true,"previous_response_id":null}``): every byte before it has already gone on, nothing
is held, and every other byte stays as the upstream wrote it.

``KeyInserter`` follows the JSON structure of the byte stream: the top-level object of a JSON body,
or the ``response`` member of each SSE event. In an SSE stream, an event whose ``type`` (its first
member, as servers write it) says it carries no response object is skipped to the end of its line,
so text deltas cost one ``find``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_SPECIAL = re.compile(rb'["\\{}\[\],:]')
_IN_STRING = re.compile(rb'["\\]')
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN, _CLOSE = frozenset(b"{["), frozenset(b"}]")
INSERTED_KEYS = (b"store", b"previous_response_id", b"conversation")
_TYPE_FIRST = b'{"type":"'
# Events that carry a response object; any other type is skipped unread.
_RESPONSE_EVENTS = frozenset(
    {
        b"response.created",
        b"response.in_progress",
        b"response.queued",
        b"response.completed",
        b"response.incomplete",
        b"response.failed",
    }
)


def missing_members(
    present: set[bytes], store: bool, previous_response_id: str | None, conversation: str | None = None
) -> bytes:
    """The members to add (``,"store":true``…) for the keys not in ``present``; leading commas.
    ``conversation`` is added only for a response in one (the upstream never heard of it)."""
    members = b""
    if b"store" not in present:
        members += b',"store":' + (b"true" if store else b"false")
    if b"previous_response_id" not in present:
        members += b',"previous_response_id":' + orjson.dumps(previous_response_id)
    if conversation is not None and b"conversation" not in present:
        members += b',"conversation":' + orjson.dumps({"id": conversation})
    return members


class KeyInserter:
    """Feeds a response body through, inserting absent keys before each response object closes."""

    def __init__(
        self, *, sse: bool, store: bool, previous_response_id: str | None, conversation: str | None = None
    ) -> None:
        self.sse = sse
        self.store = store
        self.previous_response_id = previous_response_id
        self.conversation = conversation
        self.target = 2 if sse else 1  # the depth of the response object's members
        self._reset()
        self.in_string = False
        self.escaped = False
        self.fed = False  # once any byte went through feed, only feed can follow the structure

    def feed_whole(self, body: bytes, present: set[bytes]) -> bytes:
        """A JSON body that came whole, already parsed (``present``: its top-level keys among
        those inserted): the members go before its closing brace, found from the end, not by walking every
        byte (a ~1 KB answer has ~200 structural bytes, each a Python step)."""
        if self.sse or self.fed:
            return self.feed(body)
        self.fed = True
        members = missing_members(present, self.store, self.previous_response_id, self.conversation)
        close = len(body.rstrip(b" \t\r\n")) - 1
        if not members or close < 0 or body[close] != ord("}"):
            return body
        opened = body.lstrip(b" \t\r\n")
        empty = opened[1:].lstrip(b" \t\r\n")[:1] == b"}"
        return body[:close] + (members[1:] if empty else members) + body[close:]

    def _reset(self) -> None:
        self.stack: list[int] = []  # open containers ({ or [) of the current document
        self.expect_key = False
        self.string: bytearray | None = None  # a key or type value being read, if it matters
        self.string_is_key = False
        self.last_key = b""  # the last key at depth 1 (SSE) whose value is coming
        self.awaiting_type = False  # the next string is the event's type value
        self.in_response = not self.sse  # a JSON body's top-level object is the response
        self.present: set[bytes] = set()
        self.empty = True  # no member seen yet in the response object
        self.skip_line = False

    def feed(self, chunk: bytes) -> bytes:
        self.fed = True
        insertions: list[tuple[int, bytes]] = []
        position = 0
        end = len(chunk)
        while position < end:
            if self.skip_line:
                newline = chunk.find(b"\n", position)
                if newline == -1:
                    break
                self.skip_line = False
                if self.stack:
                    self._reset()
                position = newline + 1
                continue
            if self.in_string:
                position = self._string(chunk, position)
                continue
            if self.sse and not self.stack:
                # Between events only an object's opening brace matters. An event that names its type
                # first (as servers write them) and carries no response is skipped without parsing.
                brace = chunk.find(b"{", position)
                if brace == -1:
                    break
                value = brace + len(_TYPE_FIRST)
                if chunk.startswith(_TYPE_FIRST, brace):
                    close = chunk.find(b'"', value)
                    if close != -1 and chunk[value:close] not in _RESPONSE_EVENTS and b"\\" not in chunk[value:close]:
                        self.skip_line = True
                        position = close + 1
                        continue
                position = brace + 1
                self._structural(chunk[brace], brace, insertions)
                continue
            match = _SPECIAL.search(chunk, position)
            if match is None:
                break
            at = match.start()
            position = at + 1
            self._structural(chunk[at], at, insertions)
        if not insertions:
            return chunk
        out = bytearray()
        start = 0
        for at, members in insertions:
            out += chunk[start:at]
            out += members
            start = at
        out += chunk[start:]
        return bytes(out)

    def _string(self, chunk: bytes, position: int) -> int:
        if self.escaped:
            self.escaped = False
            if self.string is not None:
                self.string.append(chunk[position])
            return position + 1
        match = _IN_STRING.search(chunk, position)
        stop = match.start() if match is not None else len(chunk)
        if self.string is not None:
            self.string += chunk[position:stop]
        if match is None:
            return stop
        if chunk[stop] == _BACKSLASH:
            self.escaped = True
            if self.string is not None:
                self.string.append(_BACKSLASH)
            return stop + 1
        self.in_string = False
        self._string_done()
        return stop + 1

    def _string_done(self) -> None:
        text, self.string = self.string, None
        if text is None:
            return
        depth = len(self.stack)
        if self.string_is_key:
            if self.in_response and depth == self.target:
                self.empty = False
                if text in INSERTED_KEYS:
                    self.present.add(bytes(text))
            if self.sse and depth == 1:
                self.last_key = bytes(text)
        elif self.awaiting_type:
            self.awaiting_type = False
            if bytes(text) not in _RESPONSE_EVENTS:
                self.skip_line = True  # no response object in this event: on to the next line

    def _structural(self, byte: int, at: int, insertions: list[tuple[int, bytes]]) -> None:
        depth = len(self.stack)
        if byte == _QUOTE:
            if depth == 0:
                return
            self.in_string = True
            is_key = self.expect_key
            self.string_is_key = is_key
            self.expect_key = False
            wanted_key = is_key and ((self.in_response and depth == self.target) or (self.sse and depth == 1))
            wanted_type = not is_key and self.sse and depth == 1 and self.last_key == b"type"
            self.awaiting_type = wanted_type
            self.string = bytearray() if wanted_key or wanted_type else None
        elif byte in _OPEN:
            if depth == 0 and byte != ord("{"):
                return
            if self.sse and depth == 1 and byte == ord("{") and self.last_key == b"response":
                self.in_response = True
                self.present = set()
                self.empty = True
            self.stack.append(byte)
            self.expect_key = byte == ord("{")
        elif byte in _CLOSE:
            if depth == 0:
                return
            if self.in_response and depth == self.target and byte == ord("}"):
                members = missing_members(self.present, self.store, self.previous_response_id, self.conversation)
                if members:
                    insertions.append((at, members[1:] if self.empty else members))
                self.in_response = False
            self.stack.pop()
            self.expect_key = False
            if not self.stack and self.sse:
                self._reset()
        elif byte == ord(","):
            self.expect_key = depth > 0 and self.stack[-1] == ord("{")


def restore_keys(
    response: dict[str, Any], store: bool, previous_response_id: str | None, conversation: str | None = None
) -> None:
    """The same insertion on a parsed object (the stored copy): absent keys added at its end, as the
    client's bytes have them."""
    response.setdefault("store", store)
    response.setdefault("previous_response_id", previous_response_id)
    if conversation is not None:
        response.setdefault("conversation", {"id": conversation})
