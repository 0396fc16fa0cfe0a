"""The request-head limits: total size of the request line and headers, and the number of headers.

The proxy's server refuses an oversized head while it is still arriving (proxy/server.py), before it
is buffered; this check is the same rule for in-process hosts, whose server has already read the head
but whose app and middleware should not process it (and a huge bearer token must not reach the tenant
hash). Both answer 431 in OpenAI's shape and count a header line as ``name: value`` plus CRLF.
"""

from __future__ import annotations

from .._types import Scope
from ..errors import OpenAIError

HEADER_LINE_OVERHEAD = 4  # ": " and CRLF
REQUEST_LINE_OVERHEAD = 12  # " ", " HTTP/1.1" and CRLF around method and target


def headers_too_large(max_bytes: int, max_count: int) -> OpenAIError:
    return OpenAIError(
        431,
        f"The request headers are too large: at most {max_bytes} bytes for the request line and headers "
        f"together, and at most {max_count} headers.",
        code="request_header_fields_too_large",
    )


class HeadLimits:
    """Checks an ASGI scope against the configured head limits."""

    def __init__(self, max_bytes: int, max_count: int) -> None:
        self.max_bytes = max_bytes
        self.max_count = max_count

    def check(self, scope: Scope) -> OpenAIError | None:
        headers = scope["headers"]
        if len(headers) > self.max_count:
            return headers_too_large(self.max_bytes, self.max_count)
        target = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        size = len(scope["method"]) + len(target) + len(scope.get("query_string", b"")) + REQUEST_LINE_OVERHEAD
        for name, value in headers:
            size += len(name) + len(value) + HEADER_LINE_OVERHEAD
        if size > self.max_bytes:
            return headers_too_large(self.max_bytes, self.max_count)
        return None
