"""Conversations in process memory, charged to the memory store's byte budget.

Items are kept as orjson bytes (what the budget measures; every read hands out a fresh copy) in
position order, so a page is a bisection and a slice. Nothing here awaits between reading and
writing, so asyncio's single thread makes each operation atomic: an append cannot interleave with
a delete of the same conversation.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson

from .base import StoreError
from .conversations import Conversation, CursorNotFound, Item, ItemPage, StoredItem
from .memory import DEFAULT_SWEEP_INTERVAL, MemoryStore, utc_millis
from .sweeper import Sweeper


def _dump(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        raise StoreError("a conversation item is not JSON-serialisable") from None


@dataclass
class _Kept:
    conversation: Conversation
    positions: list[int] = field(default_factory=list)
    blobs: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    by_id: dict[str, list[int]] = field(default_factory=dict)
    """Positions of each item id, oldest first: a client may add two items with one id, and then
    (as in MongoDB) lookups find the older one first."""
    next_position: int = 0
    size: int = 0

    def item(self, position: int) -> StoredItem:
        item_id, blob = self.blobs[position]
        return StoredItem(item_id, position, orjson.loads(blob))


class ConversationMemoryStore:
    """The ConversationStore in memory; ``budget`` is the MemoryStore whose budget it shares."""

    def __init__(
        self,
        budget: MemoryStore,
        ttl: timedelta,
        *,
        clock: Callable[[], datetime] | None = None,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL,
    ) -> None:
        self.ttl = ttl
        self._budget = budget
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._kept: dict[str, _Kept] = {}
        self._sweeper = Sweeper(self._purge_expired, sweep_interval, "retention-conversation-sweep")

    async def start(self) -> None:
        self._ensure_started()

    async def close(self) -> None:
        await self._sweeper.stop()
        for kept in self._kept.values():
            self._budget.refund(kept.size)
        self._kept.clear()

    def _ensure_started(self) -> None:
        self._sweeper.ensure_started()

    def _now(self) -> datetime:
        return utc_millis(self._clock(), "clock()")

    def _purge_expired(self) -> None:
        now = self._now()
        for conversation_id in [k for k, kept in self._kept.items() if kept.conversation.expires_at <= now]:
            self._budget.refund(self._kept.pop(conversation_id).size)

    def _charge(self, size: int) -> None:
        try:
            self._budget.charge(size)
        except StoreError:
            self._purge_expired()  # expired conversations give their bytes back first
            self._budget.charge(size)

    def _live(self, tenant: str, conversation_id: str) -> _Kept | None:
        self._ensure_started()
        kept = self._kept.get(conversation_id)
        if kept is None or kept.conversation.tenant != tenant or kept.conversation.expires_at <= self._now():
            return None
        return kept

    def _add(self, kept: _Kept, items: Sequence[Item]) -> list[StoredItem]:
        blobs = [(str(item["id"]), _dump(item)) for item in items]
        size = sum(len(blob) for _, blob in blobs)
        self._charge(size)
        kept.size += size
        added = []
        for item_id, blob in blobs:
            position = kept.next_position
            kept.next_position += 1
            kept.positions.append(position)
            kept.blobs[position] = (item_id, blob)
            kept.by_id.setdefault(item_id, []).append(position)
            added.append(StoredItem(item_id, position, orjson.loads(blob)))
        return added

    async def create(
        self, tenant: str, conversation_id: str, metadata: dict[str, str], items: Sequence[Item]
    ) -> Conversation:
        self._ensure_started()
        if conversation_id in self._kept:
            raise StoreError(f"a conversation with id {conversation_id!r} is already stored")
        now = self._now()
        conversation = Conversation(conversation_id, tenant, now, now + self.ttl, dict(metadata))
        size = len(_dump(metadata))
        self._charge(size)
        kept = _Kept(conversation, size=size)
        try:
            self._add(kept, items)
        except StoreError:
            self._budget.refund(size)
            raise
        self._kept[conversation_id] = kept
        return conversation

    async def get(self, tenant: str, conversation_id: str) -> Conversation | None:
        kept = self._live(tenant, conversation_id)
        return None if kept is None else kept.conversation

    async def update_metadata(self, tenant: str, conversation_id: str, metadata: dict[str, str]) -> Conversation | None:
        kept = self._live(tenant, conversation_id)
        if kept is None:
            return None
        old, new = len(_dump(kept.conversation.metadata)), len(_dump(metadata))
        self._charge(new)
        self._budget.refund(old)
        kept.size += new - old
        kept.conversation = dataclasses.replace(kept.conversation, metadata=dict(metadata))
        return kept.conversation

    async def delete(self, tenant: str, conversation_id: str) -> bool:
        self._ensure_started()
        kept = self._kept.get(conversation_id)
        if kept is None or kept.conversation.tenant != tenant:
            return False
        del self._kept[conversation_id]  # even when expired: deleted means gone now
        self._budget.refund(kept.size)
        return kept.conversation.expires_at > self._now()

    async def append(self, tenant: str, conversation_id: str, items: Sequence[Item]) -> list[StoredItem] | None:
        kept = self._live(tenant, conversation_id)
        if kept is None:
            return None
        added = self._add(kept, items)
        if items:
            kept.conversation = dataclasses.replace(kept.conversation, expires_at=self._now() + self.ttl)
        return added

    async def items(self, tenant: str, conversation_id: str) -> list[Item] | None:
        kept = self._live(tenant, conversation_id)
        if kept is None:
            return None
        return [orjson.loads(kept.blobs[position][1]) for position in kept.positions]

    async def page(
        self, tenant: str, conversation_id: str, *, after: str | None, limit: int, order: str
    ) -> ItemPage | None:
        kept = self._live(tenant, conversation_id)
        if kept is None:
            return None
        positions = kept.positions
        if after is None:
            chosen = positions[: limit + 1] if order == "asc" else positions[::-1][: limit + 1]
        else:
            if after not in kept.by_id:
                raise CursorNotFound(after)
            cursor = kept.by_id[after][0]
            if order == "asc":
                start = bisect.bisect_right(positions, cursor)
                chosen = positions[start : start + limit + 1]
            else:
                end = bisect.bisect_left(positions, cursor)
                chosen = positions[max(0, end - limit - 1) : end][::-1]
        return ItemPage([kept.item(p) for p in chosen[:limit]], has_more=len(chosen) > limit)

    async def get_item(self, tenant: str, conversation_id: str, item_id: str) -> StoredItem | None:
        kept = self._live(tenant, conversation_id)
        if kept is None or item_id not in kept.by_id:
            return None
        return kept.item(kept.by_id[item_id][0])

    async def delete_item(self, tenant: str, conversation_id: str, item_id: str) -> Conversation | None:
        kept = self._live(tenant, conversation_id)
        if kept is None or item_id not in kept.by_id:
            return None
        positions = kept.by_id[item_id]
        position = positions.pop(0)
        if not positions:
            del kept.by_id[item_id]
        size = len(kept.blobs.pop(position)[1])
        kept.positions.remove(position)
        kept.size -= size
        self._budget.refund(size)
        return kept.conversation

    async def delete_tenant(self, tenant: str) -> int:
        self._ensure_started()
        doomed = [k for k, kept in self._kept.items() if kept.conversation.tenant == tenant]
        for conversation_id in doomed:
            self._budget.refund(self._kept.pop(conversation_id).size)
        return len(doomed)
