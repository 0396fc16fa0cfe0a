"""The opening every Responses handler that forwards a body shares: read it, parse it, note its model
on the access record and hand its content to the log guard, before anything else can log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..exchange import Exchange
from ..logs.log_guard import GuardedContent
from ..settings import RetentionSettings
from ..wire.request_body import read_body

Parse = Callable[[bytes, int], dict[str, Any]]
"""Body and nesting bound to the request object, raising the handler's own OpenAIError (400)."""


async def read_request(
    exchange: Exchange, settings: RetentionSettings, parse: Parse
) -> tuple[bytes, dict[str, Any], GuardedContent | None]:
    """The body, the request parsed by ``parse``, and the guard holding it (None with the guard off).

    Raises what ``read_body`` and ``parse`` raise: ClientGone, or an OpenAIError to answer."""
    body = await read_body(exchange.receive, exchange.scope["headers"], settings.max_body)
    request = parse(body, settings.max_json_depth)
    model = request.get("model")
    exchange.record.model = model if isinstance(model, str) else None
    guard = exchange.guard()
    if guard is not None:
        guard.add_source(request)
    return body, request, guard
