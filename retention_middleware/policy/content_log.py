"""The documented exceptions to zero retention: content kept because someone chose it.

Content is kept for a request only when

- its model is listed in ``RETENTION_LOGGED_MODELS`` (reason ``logged-model``; disclosed in
  ``/v1/models`` and by a header on every answer),
- its tenant is listed in ``RETENTION_OPT_IN_TENANTS`` (reason ``tenant-opt-in``), or
- it carries ``x-retention-opt-in: log`` and ``RETENTION_ALLOW_REQUEST_OPT_IN=true`` (reason
  ``request-opt-in``; without that setting the header is ignored and counted).

The record (tenant, model, endpoint, reason, times, the request body and the final response, for a
stream the assembled result) goes to the store's content collection with its own TTL
(``RETENTION_CONTENT_TTL``), never to a log line. The access log only says ``content_logged``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .._types import Headers, Message, Send
from ..inflight import InFlightWrite
from ..logs.access_log import AccessRecord
from ..observability.metrics import count_ignored_opt_in
from ..settings import RetentionSettings, format_duration
from ..store.base import ContentRecord, ResponseStore, StoreError

logger = logging.getLogger("retention_middleware")

LOGGED_MODEL = "logged-model"
TENANT_OPT_IN = "tenant-opt-in"
REQUEST_OPT_IN = "request-opt-in"
OPT_IN_HEADER = b"x-retention-opt-in"
DISCLOSURE_HEADER = b"x-retention-content-logging"


class ContentLog:
    """Decides whether a request's content is kept, and keeps it. One per middleware."""

    def __init__(self, settings: RetentionSettings, store: ResponseStore, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.ignored_request_opt_ins = 0
        """Requests that asked for content logging by header while RETENTION_ALLOW_REQUEST_OPT_IN is off."""

    def reason(self, tenant: str, model: Any, headers: Headers) -> str | None:
        """Why this request's content is kept, or None (the normal case: it is not)."""
        if isinstance(model, str) and model in self.settings.logged_models:
            return LOGGED_MODEL
        if tenant in self.settings.opt_in_tenants:
            return TENANT_OPT_IN
        for name, value in headers:
            if name == OPT_IN_HEADER and value.strip().lower() == b"log":
                if self.settings.allow_request_opt_in:
                    return REQUEST_OPT_IN
                self.ignored_request_opt_ins += 1
                count_ignored_opt_in()
                if self.ignored_request_opt_ins == 1:
                    logger.warning("x-retention-opt-in ignored: RETENTION_ALLOW_REQUEST_OPT_IN is off (counted)")
        return None

    def disclosure(self, reason: str) -> tuple[bytes, bytes]:
        value = f"{reason}; ttl={format_duration(self.settings.content_ttl)}"
        return DISCLOSURE_HEADER, value.encode("latin-1")

    def disclosing(self, send: Send, reason: str) -> Send:
        """``send`` with the disclosure header added to the response start."""
        header = self.disclosure(reason)

        async def disclosing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        return disclosing_send

    async def keep(
        self,
        record: AccessRecord,
        entry: InFlightWrite,
        *,
        reason: str,
        endpoint: str,
        request: Any,
        response: Any,
    ) -> None:
        """Write the content record, unless an erasure of the tenant overtook the request."""
        if not entry.begin_write():
            return
        now = self.clock()
        try:
            await self.store.put_content(
                ContentRecord(
                    id=f"content_{uuid.uuid4().hex}",
                    tenant=entry.tenant,
                    model=record.model,
                    endpoint=endpoint,
                    reason=reason,
                    created_at=now,
                    expires_at=now + self.settings.content_ttl,
                    request=request,
                    response=response,
                )
            )
            record.content_logged = True
        except StoreError as error:
            record.error = record.error or f"content_{error.code}"
            logger.warning("content record not kept: %s (request %s)", error.code, record.request_id)
        finally:
            entry.end_write()
