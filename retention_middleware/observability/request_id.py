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
_LENGTH = len(HEADER)


def _ids_in(headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    # ASGI servers lower-case header names; the length test keeps lower() off every other header.
    return [value for name, value in headers if len(name) == _LENGTH and name.lower() == HEADER]


def client_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The client's id if it sent exactly one well-formed ``X-Request-ID``; two ids cannot be trusted."""
    found = _ids_in(headers)
    if len(found) != 1 or not _WELL_FORMED.match(found[0]):
        return None
    return found[0].decode("ascii")


def _replaced(headers: Iterable[tuple[bytes, bytes]], request_id: str, present: bool) -> list[tuple[bytes, bytes]]:
    if present:
        kept = [(name, value) for name, value in headers if not (len(name) == _LENGTH and name.lower() == HEADER)]
    else:
        kept = list(headers)
    kept.append((HEADER, request_id.encode("ascii")))
    return kept


def stamp_response(message: Message, request_id: str) -> Message:
    """``http.response.start`` with our id as its only ``x-request-id`` (an upstream's own is replaced)."""
    headers = message.get("headers", ())
    return {**message, "headers": _replaced(headers, request_id, bool(_ids_in(headers)))}


def tag_scope(scope: Scope, record: Any) -> Scope:
    """The scope the app sees: the request's id in its headers and the access record under ``RECORD_KEY``.

    Takes the client's well-formed id for the record, or keeps the one the record minted and puts it
    in the headers in place of the client's, so the app and the upstream see the id we log."""
    tagged = dict(scope)
    tagged[RECORD_KEY] = record
    found = _ids_in(scope["headers"])
    if len(found) == 1 and _WELL_FORMED.match(found[0]):
        record.request_id = found[0].decode("ascii")
    else:
        tagged["headers"] = _replaced(scope["headers"], record.request_id, bool(found))
    return tagged
