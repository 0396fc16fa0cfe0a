"""Which backend serves the Responses API: ``RETENTION_RESPONSES_BACKEND=responses|chat|auto``.

``responses`` forwards to the upstream's own ``/v1/responses``; ``chat`` always translates to
``/v1/chat/completions``; ``auto`` asks the upstream once whether it serves ``/v1/responses`` and
remembers the answer. The question is a ``POST /v1/responses`` with the body ``{}``: an upstream that
serves the route judges the body (400 or 422), one that does not answers 404 or 405. Any other answer
(401, 5xx, no connection) decides nothing; the request is served natively and the next one asks again.
The probe carries no content and goes straight to the app, so it is neither logged nor stored, and
an error it meets is not written on the request's access record.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from .._types import ASGIApp, Message, Scope
from ..observability.upstream_errors import RECORD_KEY
from .request_translation import chat_request
from .upstream_call import NATIVE, ChatCall, NativeCall

logger = logging.getLogger("retention_middleware")

Mode = Literal["responses", "chat"]

PROBE_TIMEOUT = 30.0
_BODY_HEADERS = (b"content-length", b"content-type", b"transfer-encoding", b"accept-encoding")

PROBE_SCOPE: Scope = {
    "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
    "method": "POST", "scheme": "http", "path": "/v1/responses", "raw_path": b"/v1/responses",
    "query_string": b"", "root_path": "", "headers": [], "client": None, "server": None,
}  # fmt: skip


def verdict(status: int | None) -> Mode | None:
    if status in (404, 405):
        return "chat"
    if status is not None and (200 <= status < 300 or status in (400, 422)):
        return "responses"
    return None


async def probe(app: ASGIApp, scope: Scope = PROBE_SCOPE, timeout: float = PROBE_TIMEOUT) -> Mode | None:
    """Ask ``app`` whether it serves ``POST /v1/responses``; None when its answer decides nothing."""
    headers = [(name, value) for name, value in scope.get("headers", ()) if name.lower() not in _BODY_HEADERS]
    headers += [(b"content-type", b"application/json"), (b"content-length", b"2")]
    path = "/v1/responses" if scope.get("path", "/v1").startswith("/v1") else "/responses"
    # Without the request's access record: the probe's own failure (a 5xx) is not the request's error.
    probe_scope = {name: value for name, value in scope.items() if name != RECORD_KEY}
    probe_scope.update(method="POST", path=path, raw_path=path.encode(), query_string=b"", headers=headers)
    status: int | None = None
    answered = asyncio.Event()
    sent_body = False

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": b"{}", "more_body": False}
        await answered.wait()  # an app watching for a disconnect sees one only once it has answered
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            answered.set()

    try:
        await asyncio.wait_for(app(probe_scope, receive, send), timeout)
    except Exception as error:  # the upstream being down decides nothing; the request will say so itself
        logger.info(
            "responses backend probe got no answer (%s); asking again on the next request", type(error).__name__
        )
        return None
    finally:
        answered.set()
    return verdict(status)


class ResponsesBackend:
    """Chooses, per request, how a Responses request reaches the upstream (``call_for``)."""

    def __init__(self, app: ASGIApp, setting: str) -> None:
        self.app = app
        self.setting = setting
        self.mode: Mode | None = None if setting == "auto" else setting  # type: ignore[assignment]
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        """Which backend is in use, for banners and readiness answers."""
        if self.setting != "auto":
            return self.setting
        return f"auto: {self.mode}" if self.mode else "auto (upstream not asked yet)"

    async def call_for(self, scope: Scope, request: dict[str, Any]) -> NativeCall | ChatCall:
        """The call to make for ``request`` (already stateless); raises OpenAIError 400 if untranslatable."""
        mode = self.mode or await self._resolve(scope)
        if mode == "chat":
            return ChatCall(request, chat_request(request))
        return NATIVE

    async def _resolve(self, scope: Scope) -> Mode:
        async with self._lock:  # concurrent first requests share one probe
            if self.mode is None:
                self.mode = await probe(self.app, scope)
                if self.mode is not None:
                    logger.info("responses backend: %s (asked the upstream)", self.mode)
            return self.mode or "responses"
