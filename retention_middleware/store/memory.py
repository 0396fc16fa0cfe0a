"""MemoryStore: the embedded default, records in process memory with the same semantics as MongoDB.

Content is kept as orjson bytes, not as the caller's objects: every read hands out a fresh copy (as
a database would), and a caller mutating its dict after ``put`` cannot change what was stored. The
byte budget bounds what the process really holds (see ``record_cost``): a record's JSON fields are
copied into one exactly-sized bytes object, because each buffer orjson returns keeps about 4 KiB of
allocator slack, and the Python objects that hold a record's metadata are counted too. Datetimes
are floored to milliseconds as BSON does, so a record reads back the same from either store.

Everything here is synchronous between awaits, so asyncio's single thread is the only lock needed:
``get_chain`` sees one consistent state because it never yields while reading.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import orjson

from .base import ContentRecord, ResponseChain, ResponsePage, StoredResponse, StoreError, StoreFull
from .sweeper import Sweeper

DEFAULT_BUDGET = 256 * 1024**2
DEFAULT_SWEEP_INTERVAL = 30.0


def utc_millis(moment: datetime, name: str = "datetime") -> datetime:
    """``moment`` in UTC, floored to the millisecond the way BSON stores dates."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got a naive datetime")
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def _dump(value: Any, what: str) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        raise StoreError(f"{what} is not JSON-serialisable") from None


R = TypeVar("R", StoredResponse, ContentRecord)

RECORD_OVERHEAD = 512
"""Bytes a record costs besides its content and strings: the metadata dataclass and its ``__dict__``,
two datetimes, the holder, the table's dict slot (measured with tracemalloc and RSS, rounded up)."""


def record_cost(blob: bytes, *strings: str | None) -> int:
    """What keeping one record costs the process, as the budget counts it."""
    return RECORD_OVERHEAD + len(blob) + sum(56 + len(text) for text in strings if text is not None)


@dataclass(frozen=True, slots=True)
class _Kept(Generic[R]):
    """One stored record: its metadata, with the content fields held as JSON in one bytes object."""

    record: R
    blob: bytes
    ends: tuple[int, ...]
    """Where each content field's JSON ends in ``blob``."""
    size: int

    @property
    def blobs(self) -> tuple[memoryview, ...]:
        view = memoryview(self.blob)
        starts = (0, *self.ends[:-1])
        return tuple(view[start:end] for start, end in zip(starts, self.ends, strict=True))

    @property
    def tenant(self) -> str:
        return self.record.tenant

    def live(self, tenant: str, now: datetime) -> bool:
        return self.record.tenant == tenant and self.record.expires_at > now


class MemoryStore:
    """Stored responses and content records in process memory, bounded by a byte budget.

    A ``put`` that would exceed ``budget`` bytes first purges expired records, then raises
    ``StoreFull``: live records are never evicted. A background task started by ``start()`` purges
    expired records every ``sweep_interval`` seconds; reads never return them either way.
    """

    def __init__(
        self,
        budget: int = DEFAULT_BUDGET,
        *,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if budget <= 0 or sweep_interval <= 0:
            raise ValueError("MemoryStore: budget and sweep_interval must be positive")
        self.budget = budget
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._responses: dict[str, _Kept[StoredResponse]] = {}
        self._content: dict[str, _Kept[ContentRecord]] = {}
        self._used = 0
        self._sweeper = Sweeper(lambda: self._purge_expired(self._now()), sweep_interval, "retention-sweep")

    @property
    def used_bytes(self) -> int:
        """Bytes of content currently held, expired-but-unpurged records included."""
        return self._used

    def __len__(self) -> int:
        """Records physically held (responses and content), expired-but-unpurged included."""
        return len(self._responses) + len(self._content)

    async def start(self) -> None:
        self._ensure_started()

    async def close(self) -> None:
        await self._sweeper.stop()
        # Volatile by design: closing the store is the end of what it held.
        self._responses.clear()
        self._content.clear()
        self._used = 0

    async def check(self, needed: int = 0) -> None:
        """Raise StoreFull unless a record of ``needed`` content bytes fits, after purging expired ones."""
        self._ensure_started()
        wanted = needed + RECORD_OVERHEAD if needed > 0 else 1
        if self._used + wanted > self.budget:
            self._purge_expired(self._now())
        if self._used + wanted > self.budget:
            raise StoreFull(f"memory store budget of {self.budget} bytes is spent")

    def _ensure_started(self) -> None:
        self._sweeper.ensure_started()

    def _now(self) -> datetime:
        return utc_millis(self._clock(), "clock()")

    def _purge_expired(self, now: datetime) -> int:
        purged = 0
        for table in (self._responses, self._content):
            expired = [key for key, kept in table.items() if kept.record.expires_at <= now]
            for key in expired:
                self._used -= table.pop(key).size
            purged += len(expired)
        return purged

    def _keep(
        self, table: dict[str, _Kept[R]], key: str, record: R, blobs: tuple[bytes, ...], strings: tuple[str | None, ...]
    ) -> None:
        if key in table:
            raise StoreError(f"a record with id {key!r} is already stored")
        ends: list[int] = []
        for blob in blobs:
            ends.append((ends[-1] if ends else 0) + len(blob))
        joined = b"".join(blobs)  # a new, exactly-sized object; orjson's slack-laden buffers go
        size = record_cost(joined, *strings)
        self.charge(size)  # raises StoreFull before anything is kept
        table[key] = _Kept(record, joined, tuple(ends), size)

    def _drop(self, table: dict[str, _Kept[R]], key: str) -> _Kept[R]:
        kept = table.pop(key)
        self._used -= kept.size
        return kept

    @staticmethod
    def _response(kept: _Kept[StoredResponse]) -> StoredResponse:
        input_items, response, usage = (orjson.loads(blob) for blob in kept.blobs)
        return dataclasses.replace(kept.record, input_items=input_items, response=response, usage=usage)

    @staticmethod
    def _content_record(kept: _Kept[ContentRecord]) -> ContentRecord:
        request, response = (orjson.loads(blob) for blob in kept.blobs)
        return dataclasses.replace(kept.record, request=request, response=response)

    # -- the byte budget, shared with the conversation store -------------------------------------

    def charge(self, size: int) -> None:
        """Take ``size`` bytes of the budget for records kept beside this store (conversations).

        Raises StoreFull, after purging expired responses, if they do not fit: one budget bounds
        everything the process holds.
        """
        if self._used + size > self.budget:
            self._purge_expired(self._now())
        if self._used + size > self.budget:
            raise StoreFull(
                f"memory store budget of {self.budget} bytes is spent ({self._used} in use, {size} more "
                "asked); live records are never evicted: raise RETENTION_MEMORY_BUDGET or use MongoDB"
            )
        self._used += size

    def refund(self, size: int) -> None:
        """Give back bytes taken with ``charge`` (the records were deleted or expired)."""
        self._used = max(0, self._used - size)

    # -- stored responses -------------------------------------------------------------------------

    @staticmethod
    def _response_parts(record: StoredResponse) -> tuple[tuple[bytes, ...], tuple[str | None, ...]]:
        blobs = (
            _dump(record.input_items, "input_items"),
            _dump(record.response, "response"),
            _dump(record.usage, "usage"),
        )
        ids = (record.id, record.previous_response_id, *record.ancestors)
        return blobs, (record.tenant, record.model, record.status, *ids)

    @classmethod
    def response_cost(cls, record: StoredResponse) -> int:
        """What keeping ``record`` costs against the budget (for operators sizing it, and tests)."""
        blobs, strings = cls._response_parts(record)
        return record_cost(b"".join(blobs), *strings)

    async def put(self, record: StoredResponse) -> None:
        self._ensure_started()
        blobs, strings = self._response_parts(record)
        self._keep(self._responses, record.id, self._meta(record), blobs, strings)

    @staticmethod
    def _meta(record: StoredResponse) -> StoredResponse:
        return dataclasses.replace(
            record,
            created_at=utc_millis(record.created_at, "created_at"),
            expires_at=utc_millis(record.expires_at, "expires_at"),
            ancestors=tuple(record.ancestors),
            input_items=[],
            response={},
            usage=None,
        )

    async def replace(self, record: StoredResponse) -> bool:
        self._ensure_started()
        kept = self._responses.get(record.id)
        if kept is None or not kept.live(record.tenant, self._now()):
            return False
        blobs, strings = self._response_parts(record)
        size = record_cost(b"".join(blobs), *strings)
        if self._used - kept.size + size > self.budget:
            self._purge_expired(self._now())
            if self._used - kept.size + size > self.budget:
                raise StoreFull(f"memory store budget of {self.budget} bytes is spent (replacing {record.id!r})")
        self._drop(self._responses, record.id)
        self._keep(self._responses, record.id, self._meta(record), blobs, strings)
        return True

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        self._ensure_started()
        kept = self._responses.get(response_id)
        if kept is None or not kept.live(tenant, self._now()):
            return None
        return self._response(kept)

    async def get_chain(self, tenant: str, response_id: str) -> ResponseChain:
        self._ensure_started()
        now = self._now()
        kept = self._responses.get(response_id)
        if kept is None or not kept.live(tenant, now):
            return ResponseChain(response=None, ancestors={})
        root = self._response(kept)
        ancestors: dict[str, StoredResponse] = {}
        for ancestor_id in root.ancestors:
            found = self._responses.get(ancestor_id)
            if found is not None and found.live(tenant, now):
                ancestors[ancestor_id] = self._response(found)
        return ResponseChain(response=root, ancestors=ancestors)

    async def delete(self, tenant: str, response_id: str) -> bool:
        self._ensure_started()
        kept = self._responses.get(response_id)
        if kept is None or kept.tenant != tenant:
            return False
        # Removed even when already expired (as MongoStore does); only a live one counts as deleted.
        self._drop(self._responses, response_id)
        return kept.record.expires_at > self._now()

    async def delete_tenant(self, tenant: str) -> int:
        self._ensure_started()
        return self._drop_tenant(self._responses, tenant)

    async def list_responses(
        self, tenant: str, *, limit: int, order: str, after: str | None = None, before: str | None = None
    ) -> ResponsePage | None:
        self._ensure_started()
        now = self._now()
        live = [kept for kept in self._responses.values() if kept.live(tenant, now)]
        live.sort(key=lambda kept: (kept.record.created_at, kept.record.id), reverse=order == "desc")
        ids = [kept.record.id for kept in live]
        start, end = 0, len(live)
        for cursor in (after, before):
            if cursor is not None and cursor not in ids:
                return None
        if after is not None:
            start = ids.index(after) + 1
        if before is not None:
            end = ids.index(before)
        if before is not None and after is None:
            chosen = live[max(start, end - limit) : end]
            has_more = end - limit > start
        else:
            chosen = live[start : min(end, start + limit)]
            has_more = start + limit < end
        return ResponsePage([self._response(kept) for kept in chosen], has_more)

    def _drop_tenant(self, table: dict[str, _Kept[R]], tenant: str) -> int:
        keys = [key for key, kept in table.items() if kept.tenant == tenant]
        for key in keys:
            self._drop(table, key)
        return len(keys)

    # -- content records --------------------------------------------------------------------------

    async def put_content(self, record: ContentRecord) -> None:
        self._ensure_started()
        blobs = (_dump(record.request, "request"), _dump(record.response, "response"))
        meta = dataclasses.replace(
            record,
            created_at=utc_millis(record.created_at, "created_at"),
            expires_at=utc_millis(record.expires_at, "expires_at"),
            request=None,
            response=None,
        )
        strings = (record.id, record.tenant, record.model, record.endpoint, record.reason)
        self._keep(self._content, record.id, meta, blobs, strings)

    async def delete_tenant_content(self, tenant: str) -> int:
        self._ensure_started()
        return self._drop_tenant(self._content, tenant)

    async def count_content(self, tenant: str) -> int:
        self._ensure_started()
        now = self._now()
        return sum(1 for kept in self._content.values() if kept.live(tenant, now))

    async def find_content(self, tenant: str) -> Sequence[ContentRecord]:
        self._ensure_started()
        now = self._now()
        live = [kept for kept in self._content.values() if kept.live(tenant, now)]
        live.sort(key=lambda kept: (kept.record.created_at, kept.record.id))
        return [self._content_record(kept) for kept in live]
