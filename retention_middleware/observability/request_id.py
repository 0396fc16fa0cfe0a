"""Request ids: the client's ``X-Request-ID`` when it is well formed, a fresh one otherwise.

The id joins three logs: the client's error report, our access line and the upstream's own log. So
it is returned on every response and forwarded upstream. A client's value is taken only if it is
1-128 characters of ``A-Z a-z 0-9 . _ : -`` (what tracing systems and uuids use); anything else (too
long, spaces, non-ASCII, a second copy) is replaced by a minted id rather than refused, since a bad
tracing header should not fail a request, and it is never echoed or logged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .._types import Message, Scope
from .upstream_errors import RECORD_KEY

HEADER = b"x-request-id"
MAX_LENGTH = 128
_WELL_FORMED = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


def client_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The client's id if it sent exactly one well-formed ``X-Request-ID``."""
    found: bytes | None = None
    for name, value in headers:
        if name == HEADER or (len(name) == len(HEADER) and name.lower() == HEADER):
            if found is not None:
                return None  # two ids: neither can be trusted to be the one the client logs
            found = value
    if found is None or not _WELL_FORMED.match(found):
        return None
    return found.decode("ascii")


def with_request_id(scope: Scope, request_id: str, accepted: bool) -> Scope:
    """A copy of ``scope`` whose headers carry exactly ``request_id``, so the app and upstream see it."""
    if accepted:
        return scope  # the client's own header, unchanged
    headers = [(name, value) for name, value in scope["headers"] if name.lower() != HEADER]
    headers.append((HEADER, request_id.encode("ascii")))
    return {**scope, "headers": headers}


def stamp_response(message: Message, request_id: str) -> Message:
    """``http.response.start`` with our id as its only ``x-request-id`` (an upstream's own is replaced)."""
    headers = [(name, value) for name, value in message.get("headers", ()) if name.lower() != HEADER]
    headers.append((HEADER, request_id.encode("ascii")))
    return {**message, "headers": headers}


def tag_scope(scope: Scope, record: Any) -> Scope:
    """The scope the app sees: the request's id in its headers and the access record under ``RECORD_KEY``.

    Takes the client's well-formed id for the record, or keeps the one the record minted."""
    accepted = client_request_id(scope["headers"])
    if accepted is not None:
        record.request_id = accepted
    scope = with_request_id(scope, record.request_id, accepted is not None)
    return {**scope, RECORD_KEY: record}
