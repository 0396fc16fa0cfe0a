"""An incremental parser for ``text/event-stream`` bodies: bytes in, events out.

It accepts the byte stream split anywhere (mid-line, mid-UTF-8 sequence, between ``\\r`` and
``\\n``) and handles ``\\r\\n``, ``\\n`` and ``\\r`` line ends, multi-line ``data:``, comments and
``[DONE]``. It holds only the unfinished line and the current event, so its memory is bounded by the
largest single event, never by the length of the stream. Every event also reports how many raw bytes
it spanned, so a caller can drop one event from the byte stream without re-encoding the others.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_EVENT_BYTES = 64 * 1024 * 1024
"""An event larger than this is skipped (and counted) rather than buffered without limit."""

DONE = b"[DONE]"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    """The ``event:`` field, or None when the event has none (the spec's default type "message")."""
    data: bytes
    """The ``data:`` lines joined with ``\\n``; left as bytes because orjson parses bytes directly."""
    raw_length: int
    """Bytes of the stream from the end of the previous event through this event's blank line."""


class SSEParser:
    """Feed body chunks with ``feed``; it returns the events each chunk completes."""

    __slots__ = (
        "_pieces",
        "_pending",
        "_in_dropped_line",
        "_skipping",
        "_data",
        "_size",
        "_event",
        "_raw",
        "_after_cr",
        "_open",
        "skipped_events",
    )

    def __init__(self) -> None:
        # The unfinished last line, as the pieces it arrived in: joined once, when its line end comes,
        # so a line spread over many chunks costs its length, not its length times the chunk count.
        self._pieces: list[bytes] = []
        self._pending = 0  # bytes in _pieces
        self._in_dropped_line = False  # the next bytes continue a line too long to keep
        self._skipping = False  # inside an oversized event: discard until its blank line
        self._data: list[bytes] = []
        self._size = 0
        self._event: str | None = None
        self._raw = 0  # bytes of complete lines since the last dispatched event
        self._after_cr = False  # the previous chunk ended in \r, so a leading \n ends that same line
        self._open = 0  # bytes of complete lines since the last blank line
        self.skipped_events = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._clean and chunk[-2:] == b"\n\n":
            event = self._whole_event(chunk)
            if event is not None:
                return [event]
        events: list[SSEEvent] = []
        if not chunk:
            return events
        if self._after_cr and chunk[:1] == b"\n":
            self._raw += 1
            chunk = chunk[1:]
            if not chunk:
                self._after_cr = False
                return events
        self._after_cr = chunk[-1:] == b"\r"
        if b"\n" not in chunk and b"\r" not in chunk:
            # No line end: the whole chunk continues the unfinished line (two C-speed scans).
            if self._in_dropped_line:
                self._raw += len(chunk)
            else:
                self._pieces.append(chunk)
                self._pending += len(chunk)
                self._drop_line_if_too_long()
            return events
        # bytes.splitlines splits on exactly \r\n, \n and \r, the three line ends SSE allows.
        lines = chunk.splitlines(keepends=True)
        if self._in_dropped_line:
            self._raw += len(lines[0])
            self._in_dropped_line = False
            del lines[0]
            if not lines:
                return events
        elif self._pieces:
            self._pieces.append(lines[0])
            lines[0] = b"".join(self._pieces)
            self._pieces = []
            self._pending = 0
        tail = lines[-1]
        if tail[-1:] not in (b"\n", b"\r"):
            lines.pop()
            self._pieces = [tail]
            self._pending = len(tail)
        for line in lines:
            self._raw += len(line)
            self._open = 0 if line in (b"\n", b"\r", b"\r\n") else self._open + len(line)
            self._take(line, events)
        self._drop_line_if_too_long()
        return events

    @property
    def _clean(self) -> bool:
        """Between two events, with nothing held: the next chunk starts a line and an event."""
        return not (
            self._pieces or self._data or self._event is not None or self._after_cr or self._in_dropped_line
            or self._skipping
        )  # fmt: skip

    def _whole_event(self, chunk: bytes) -> SSEEvent | None:
        """The common chunk, one whole event (``data: ...``, perhaps after ``event: ...``, then a blank
        line, ``\n`` line ends only), parsed in a few C-speed scans; None for any other shape, which
        ``feed`` then parses line by line with the same result."""
        lines = chunk.count(b"\n")
        if b"\r" in chunk or lines > 3:
            return None
        event = None
        data_line = chunk
        if lines == 3:
            if not chunk.startswith(b"event:"):
                return None
            end = chunk.index(b"\n")
            value = chunk[6:end]
            event = (value[1:] if value[:1] == b" " else value).decode("utf-8", "replace")
            data_line = chunk[end + 1 :]
        elif lines != 2:
            return None
        if not data_line.startswith(b"data:"):
            return None
        data = data_line[5:-2]
        if data[:1] == b" ":
            data = data[1:]
        if len(data) + 1 > MAX_EVENT_BYTES:
            return None
        raw = self._raw + len(chunk)
        self._raw = 0
        self._open = 0
        return SSEEvent(event, data, raw)

    def _drop_line_if_too_long(self) -> None:
        if self._pending + self._size > MAX_EVENT_BYTES:
            self._start_skipping()
            # Keep counting the unfinished line as raw bytes, but stop holding it.
            self._raw += self._pending
            self._pieces = []
            self._pending = 0
            self._in_dropped_line = True

    @property
    def pending_bytes(self) -> int:
        """Bytes fed but not yet attributed to a dispatched event."""
        return self._raw + self._pending

    @property
    def mid_event(self) -> bool:
        """Whether the bytes fed so far end inside an event (after its first line, or mid-line):
        a tee that forwards chunks as they come has then sent its client part of an event."""
        return bool(self._open or self._pending or self._skipping or self._in_dropped_line)

    def _take(self, line: bytes, events: list[SSEEvent]) -> None:
        content = line.rstrip(b"\r\n")
        if not content:
            if self._data and not self._skipping:
                events.append(SSEEvent(self._event, b"\n".join(self._data), self._raw))
                self._raw = 0
            self._reset()
            return
        if self._skipping or content[:1] == b":":
            return  # inside an oversized event, or a comment such as a keep-alive
        name, colon, value = content.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._size += len(value) + 1
            if self._size > MAX_EVENT_BYTES:
                self._start_skipping()
                return
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        # id and retry change nothing a tee needs; unknown fields are ignored, as the spec says.

    def _start_skipping(self) -> None:
        if not self._skipping:
            self.skipped_events += 1
        self._skipping = True
        self._data = []
        self._size = 0

    def _reset(self) -> None:
        self._data = []
        self._size = 0
        self._event = None
        self._skipping = False
