"""Responses still streaming through this process, so a DELETE can overtake them.

A client may delete a response it is still receiving (it has the id from ``response.created``). The
delete is acknowledged at once and the capture, when the stream completes, stores nothing. If the
capture is already writing, the delete waits for that write to finish and then removes the record,
so no ordering of the two leaves a stored copy behind.

This covers responses streaming through this process. With several replicas behind a load balancer,
a delete that lands on another replica finds nothing to delete yet; that replica answers 404.
"""

from __future__ import annotations

import asyncio


class InFlightResponse:
    """One response being captured; created when its id is first seen."""

    __slots__ = ("tenant", "response_id", "deleted", "_write_done", "_writing")

    def __init__(self, tenant: str, response_id: str) -> None:
        self.tenant = tenant
        self.response_id = response_id
        self.deleted = False
        self._writing = False
        self._write_done = asyncio.Event()

    def begin_write(self) -> bool:
        """Claim the right to store; False when a delete came first."""
        if self.deleted:
            return False
        self._writing = True
        return True

    def end_write(self) -> None:
        self._write_done.set()

    async def cancel(self) -> None:
        """Mark deleted; if a write is under way, wait until it has finished."""
        self.deleted = True
        if self._writing:
            await self._write_done.wait()


class InFlightRegistry:
    """Per middleware instance: responses of this process not yet finished, by tenant and id."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], InFlightResponse] = {}

    def open(self, tenant: str, response_id: str) -> InFlightResponse:
        entry = InFlightResponse(tenant, response_id)
        self._entries[(tenant, response_id)] = entry
        return entry

    def close(self, entry: InFlightResponse) -> None:
        if self._entries.get((entry.tenant, entry.response_id)) is entry:
            del self._entries[(entry.tenant, entry.response_id)]

    def find(self, tenant: str, response_id: str) -> InFlightResponse | None:
        return self._entries.get((tenant, response_id))

    def of_tenant(self, tenant: str) -> list[InFlightResponse]:
        return [entry for (owner, _), entry in self._entries.items() if owner == tenant]
