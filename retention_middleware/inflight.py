"""Writes still ahead of requests in flight in this process, so a delete or an erasure can overtake them.

A client may delete a response it is still receiving (it has the id from ``response.created``), and a
tenant may erase all its data while one of its requests is streaming. Each request that will write
(a stored response, a content record) holds an entry from the moment it starts; a delete or an
erasure cancels the entry, and the request then writes nothing when it completes. If the write is
already under way, the canceller waits for it to finish and then deletes what it wrote, so no
ordering of the two leaves a record behind.

This covers requests in this process. Across replicas, a streamed response's ``in_progress`` record
(``responses/turn.py``) is what a delete on another replica finds and removes; the final write then
finds it gone and writes nothing.
"""

from __future__ import annotations

import asyncio


class InFlightWrite:
    """One request that may write (a stored response, a content record) when it completes."""

    __slots__ = ("tenant", "response_id", "cancelled", "_writes", "_idle")

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.response_id: str | None = None
        self.cancelled = False
        self._writes = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin_write(self) -> bool:
        """Claim the right to write; False when a delete or an erasure came first."""
        if self.cancelled:
            return False
        self._writes += 1
        self._idle.clear()
        return True

    def end_write(self) -> None:
        self._writes -= 1
        if self._writes == 0:
            self._idle.set()

    async def cancel(self) -> None:
        """Mark cancelled; if a write is under way, wait until it has finished."""
        self.cancelled = True
        await self._idle.wait()


class InFlightRegistry:
    """Per middleware instance: this process's requests that have not finished yet."""

    def __init__(self) -> None:
        self._by_tenant: dict[str, set[InFlightWrite]] = {}
        self._by_id: dict[tuple[str, str], InFlightWrite] = {}

    def open(self, tenant: str) -> InFlightWrite:
        entry = InFlightWrite(tenant)
        self._by_tenant.setdefault(tenant, set()).add(entry)
        return entry

    def name(self, entry: InFlightWrite, response_id: str) -> None:
        """The response id became known (``response.created`` or the JSON body)."""
        entry.response_id = response_id
        self._by_id[(entry.tenant, response_id)] = entry

    def close(self, entry: InFlightWrite) -> None:
        entries = self._by_tenant.get(entry.tenant)
        if entries is not None:
            entries.discard(entry)
            if not entries:
                del self._by_tenant[entry.tenant]
        if entry.response_id is not None and self._by_id.get((entry.tenant, entry.response_id)) is entry:
            del self._by_id[(entry.tenant, entry.response_id)]

    def find(self, tenant: str, response_id: str) -> InFlightWrite | None:
        return self._by_id.get((tenant, response_id))

    def of_tenant(self, tenant: str) -> list[InFlightWrite]:
        return list(self._by_tenant.get(tenant, ()))
