"""OpenAI-shaped error responses: ``{"error": {"message", "type", "param", "code"}}``.

Messages are written by us and never echo request content, so they are safe to return and to
count in the access log by their ``code``.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from ._types import Send


class OpenAIError(Exception):
    """An error answered to the client in OpenAI's shape; ``code`` is what the access log records."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def not_found(response_id: str) -> OpenAIError:
    # The same answer for missing, expired, deleted and another tenant's ids (guarantee G6).
    return OpenAIError(404, f"Response with id '{response_id}' not found.", code="not_found")


async def send_json(send: Send, status: int, body: bytes, extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Send a complete JSON response in one body message."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("latin-1")),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, error: OpenAIError) -> None:
    await send_json(send, error.status, error.body())


class UpstreamFailedMidResponse(Exception):
    """The upstream failed after its response had started (it disconnected, or fell silent).

    Raised by the proxy's forwarder, which has logged it in one line; the middleware answers it
    (a Responses stream ends with a terminal ``error`` event, anything else is cut off so it never
    looks complete) and never lets it reach the server as a traceback. ``code`` goes to the access log.
    """

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code
