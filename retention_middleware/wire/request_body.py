"""Reading a request body the middleware must inspect, and handing it on to the app.

Only the routes the middleware inspects (completions, embeddings, responses) read their body; it is
bounded by ``RETENTION_MAX_BODY`` so a client cannot make the middleware hold unbounded memory.
"""

from __future__ import annotations

from .._types import Headers, Message, Receive, Scope
from ..errors import OpenAIError
from .numbers import bounded_whole


class ClientGone(Exception):
    """The client disconnected before it finished sending its request."""


def body_too_large(limit: int) -> OpenAIError:
    return OpenAIError(
        413,
        f"The request body is larger than this server accepts ({limit} bytes).",
        code="request_too_large",
    )


def header_value(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


async def read_body(receive: Receive, headers: Headers, limit: int) -> bytes:
    """The whole body, or OpenAIError 413 as soon as it is known to exceed ``limit``."""
    declared = header_value(headers, b"content-length")
    # 19 digits: any length a real body can have; a longer Content-Length is over every limit.
    if declared is not None and (len(declared) > 19 or (bounded_whole(declared, 19) or 0) > limit):
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields ``body`` once, then defers to the real one (for http.disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def with_body_length(scope: Scope, length: int) -> Scope:
    """A copy of ``scope`` whose content-length header matches a rewritten body."""
    headers = [
        (name, value) for name, value in scope["headers"] if name not in (b"content-length", b"transfer-encoding")
    ]
    headers.append((b"content-length", str(length).encode("latin-1")))
    return {**scope, "headers": headers}
