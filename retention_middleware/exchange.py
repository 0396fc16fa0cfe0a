"""One HTTP request as the middleware sees it: the ASGI triple, observed, plus its access record.

``send`` and ``receive`` are wrapped only to observe (status, byte counts, time to first byte,
client disconnect); every message passes through unchanged and at once.
"""

from __future__ import annotations

from time import perf_counter

from ._types import Message, Receive, Scope, Send
from .logs.access_log import AccessRecord
from .logs.log_guard import GuardedContent, GuardRegistration
from .observability.request_id import stamp_response
from .routes import Route


class Exchange:
    """Per-request state shared by the middleware and the handler that owns the request."""

    __slots__ = ("scope", "route", "raw_id", "record", "_send", "_receive", "_guard", "_guard_enabled")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: AccessRecord,
        route: Route,
        raw_id: str | None,
        guard_enabled: bool,
    ) -> None:
        self.scope = scope
        self.route = route
        self.raw_id = raw_id
        self.record = record
        self._send = send
        self._receive = receive
        self._guard: GuardRegistration | None = None
        self._guard_enabled = guard_enabled

    async def send(self, message: Message) -> None:
        kind = message["type"]
        record = self.record
        if kind == "http.response.body":
            body = message.get("body", b"")
            if body:
                if record.first_byte_at is None:
                    record.first_byte_at = perf_counter()
                record.bytes_out += len(body)
            if not message.get("more_body", False):
                record.response_complete = True
        elif kind == "http.response.start":
            record.status = message["status"]
            message = stamp_response(message, record.request_id)
        await self._send(message)

    async def receive(self) -> Message:
        message = await self._receive()
        kind = message["type"]
        if kind == "http.request":
            self.record.bytes_in += len(message.get("body", b""))
        elif kind == "http.disconnect":
            self.record.disconnected = True
        return message

    @property
    def response_started(self) -> bool:
        return self.record.status is not None

    def guard(self) -> GuardedContent | None:
        """This request's guarded content, registered on first use; None when the guard is off."""
        if not self._guard_enabled:
            return None
        if self._guard is None:
            self._guard = GuardRegistration()
        return self._guard.content

    def finish(self, *, failed: bool) -> None:
        if self._guard is not None:
            self._guard.release(after_this_step=failed)
