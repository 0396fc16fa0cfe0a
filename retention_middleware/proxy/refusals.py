"""What the proxy's server protocol answers on its own, before or instead of the app, in OpenAI's shape."""

from __future__ import annotations

from collections.abc import Iterable

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from .._types import Receive, Scope, Send
from ..errors import OpenAIError, send_json

TIMED_OUT = OpenAIError(408, "The request was not received in time; the connection is closed.", code="request_timeout")
OVER_CAPACITY = OpenAIError(
    503,
    "The server has too many open connections; please retry shortly.",
    type="server_error",
    code="too_many_connections",
)


async def over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    """The app a connection beyond the cap gets: 503, and uvicorn closes on ``connection: close``."""
    await send_json(send, OVER_CAPACITY.status, OVER_CAPACITY.body(), [(b"connection", b"close")])


def response_bytes(error: OpenAIError, default_headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 response for ``error``, written straight to the transport (no app is running)."""
    body = error.body()
    head = [STATUS_LINE[error.status]]
    head += [name + b": " + value + b"\r\n" for name, value in default_headers]
    head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    return b"".join(head) + body
