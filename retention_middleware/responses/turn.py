"""The writes of one stored response: an ``in_progress`` record first, the final response over it.

A streamed response is written as soon as its id is known (``response.created``), with status
``in_progress``, before the client sees that event: from then on every replica sharing the store finds
it, so a GET shows it in progress and a DELETE on any replica removes it. The final response then
replaces that record only if it still exists, so a deletion made anywhere while the stream ran is
honoured. A stream that ends without a final response (the upstream or the client gone) removes its
``in_progress`` record again. A JSON answer names its id only when it is complete and is written once.

With ``RETENTION_STORE_FAILURE=reject`` a write that fails is reported to the capture (the callbacks
return False), which then ends the answer without telling the client it was stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..conversations.turn import ConversationTurn
from ..exchange import Exchange
from ..inflight import InFlightRegistry, InFlightWrite
from ..settings import RetentionSettings
from ..store.base import ResponseStore, StoredResponse, StoreError, StoreOutcomeUnknown
from .items import input_as_items
from .patch import restore_in_object

logger = logging.getLogger("retention_middleware")

IN_PROGRESS = "in_progress"


class StoredTurn:
    """The per-request side of a capture: the in-flight entry and the writes of the stored response."""

    def __init__(
        self,
        *,
        settings: RetentionSettings,
        store: ResponseStore,
        inflight: InFlightRegistry,
        clock: Callable[[], datetime],
        exchange: Exchange,
        request: dict[str, Any],
        store_requested: bool,
        previous_id: str | None,
        history: list[StoredResponse],
        entry: InFlightWrite | None,
        conversation: ConversationTurn | None = None,
    ) -> None:
        self.settings = settings
        self.conversation = conversation  # the conversation this turn joins (``conversation``)
        self.store = store
        self.inflight = inflight
        self.clock = clock
        self.exchange = exchange
        self.request = request
        self.store_requested = store_requested
        self.previous_id = previous_id
        self.history = history
        self.entry = entry
        self.final: dict[str, Any] | None = None
        self.in_progress_id: str | None = None  # an in_progress record this request wrote and must finish
        self.created_at: datetime | None = None
        self.reject = settings.store_failure == "reject"

    @property
    def _conversation_id(self) -> str | None:
        return None if self.conversation is None else self.conversation.conversation_id

    def on_response_id(self, response_id: str) -> None:
        if self.entry is not None and self.store_requested:
            self.inflight.name(self.entry, response_id)

    async def on_started(self, response: dict[str, Any]) -> bool:
        """Write the ``in_progress`` record; False if the store refused it in reject mode."""
        snapshot = dict(response)  # the event's own object goes on to the client unchanged
        restore_in_object(snapshot, self.store_requested, self.previous_id, self._conversation_id)
        snapshot["status"] = IN_PROGRESS
        written = await self._write(snapshot, replace=False)
        if written:
            self.in_progress_id = snapshot["id"]
        return written is not False

    async def on_final(self, response: dict[str, Any]) -> bool:
        """Write the final response; False if the store refused it in reject mode."""
        restore_in_object(response, self.store_requested, self.previous_id, self._conversation_id)
        self.final = response
        if self.conversation is not None and not self.store_requested:
            return await self._join_conversation(response, None)  # the turn is kept, the response not
        replace = self.in_progress_id is not None and response.get("id") == self.in_progress_id
        written = await self._write(response, replace=replace)
        if written:
            self.exchange.record.stored = True
            self.in_progress_id = None
            if self.conversation is not None:
                return await self._join_conversation(response, response["id"])
        return written is not False

    async def _join_conversation(self, response: dict[str, Any], stored_id: str | None) -> bool:
        """Add the turn to its conversation, all or nothing with the response's own storing: if the
        turn cannot be added, a response stored for it is deleted again. False in reject mode when
        the store failed."""
        assert self.conversation is not None
        entry, record = self.entry, self.exchange.record
        if entry is None or not entry.begin_write():
            record.error = "deleted_while_streaming"  # by a DELETE of this id or an erasure of its tenant
            return True
        try:
            if not await self.conversation.append(response):
                record.error = "conversation_deleted"  # deleted while the response was streaming
            return True
        except StoreError as error:
            record.error = error.code
            logger.warning("conversation not updated: %s (request %s)", error.code, record.request_id)
            if stored_id is not None:
                # Neither or both: a stored turn missing from its conversation would be a surprise.
                record.stored = False
                try:
                    await self.store.delete(entry.tenant, stored_id)
                except StoreError:
                    logger.warning("response %s kept without its conversation turn", stored_id)
            return not self.reject
        finally:
            entry.end_write()

    async def discard_in_progress(self) -> None:
        """The stream ended without a final response: remove its ``in_progress`` record."""
        response_id, self.in_progress_id = self.in_progress_id, None
        if response_id is None or self.entry is None:
            return
        try:
            await self.store.delete(self.entry.tenant, response_id)
        except StoreError as error:  # it expires with its TTL; the access log says why it is there
            logger.warning(
                "in-progress record not removed: %s (request %s)", error.code, self.exchange.record.request_id
            )

    async def _write(self, response: dict[str, Any], *, replace: bool) -> bool | None:
        """True when written, None when there is nothing to write (or it was deleted meanwhile),
        False when the store failed and the mode is reject."""
        response_id = response.get("id")
        entry = self.entry
        if not self.store_requested or entry is None or not isinstance(response_id, str):
            return None
        record = self.exchange.record
        if not entry.begin_write():
            record.error = "deleted_while_streaming"  # by a DELETE of this id or an erasure of its tenant
            return None
        try:
            stored = self._record(entry.tenant, response_id, response)
            if not replace:
                await self.store.put(stored)
            elif not await self.store.replace(stored):
                self.in_progress_id = None
                record.error = "deleted_while_streaming"  # on another replica: its record is gone
                return None
            return True
        except StoreError as error:
            # With RETENTION_STORE_FAILURE=serve the answer is served all the same; the client can
            # tell from a later GET, the operator from the access log.
            record.error = error.code
            if isinstance(error, StoreOutcomeUnknown):
                record.stored = "unknown"  # the write may land after all: "false" would be a lie
            logger.warning("response not stored: %s (request %s)", error.code, record.request_id)
            return False if self.reject else None
        finally:
            entry.end_write()

    def _record(self, tenant: str, response_id: str, response: dict[str, Any]) -> StoredResponse:
        if self.created_at is None:
            self.created_at = self.clock()
        ancestors = (*self.history[-1].ancestors, self.history[-1].id) if self.history else ()
        model, status = response.get("model"), response.get("status")
        return StoredResponse(
            id=response_id,
            tenant=tenant,
            created_at=self.created_at,
            expires_at=self.created_at + self.settings.ttl,
            model=model if isinstance(model, str) else None,
            status=status if isinstance(status, str) else None,
            previous_response_id=self.previous_id,
            ancestors=tuple(ancestors),
            input_items=input_as_items(self.request.get("input", [])),
            response=response,
            usage=self.exchange.record.usage if status != IN_PROGRESS else None,
        )
