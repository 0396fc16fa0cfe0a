"""What kind of body an answer has, judged from its ``http.response.start`` message."""

from __future__ import annotations

import enum

from .._types import Message


class BodyKind(enum.Enum):
    SSE = "sse"
    JSON = "json"
    OTHER = "other"


def body_kind_of(start: Message) -> BodyKind:
    for name, value in start.get("headers", ()):
        if name.lower() == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            if media_type == b"text/event-stream":
                return BodyKind.SSE
            if media_type == b"application/json" or media_type.endswith(b"+json"):
                return BodyKind.JSON
            return BodyKind.OTHER
    return BodyKind.OTHER


def without_content_length(start: Message) -> Message:
    """The start message of a body about to be rewritten: its length is no longer known, so the
    server frames it by itself (chunked transfer encoding, or the end of an HTTP/2 stream)."""
    headers = [(name, value) for name, value in start.get("headers", ()) if name.lower() != b"content-length"]
    return {**start, "headers": headers}
