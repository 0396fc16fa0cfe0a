"""What a conversation store keeps, and the protocol both conversation stores implement.

A conversation (OpenAI's Conversations API) is owned by one tenant and holds an ordered list of
items. Each item has a position, given once and never reused, so a page of items is a range of
positions and a deleted item leaves a gap rather than renumbering the rest. The whole conversation
expires together: ``expires_at`` is the conversation TTL after the last item was added, and every
read filters on it, whatever the backend's physical clean-up has done so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

Item = dict[str, Any]


@dataclass(frozen=True)
class Conversation:
    id: str
    tenant: str
    created_at: datetime
    expires_at: datetime
    metadata: dict[str, str]


@dataclass(frozen=True)
class StoredItem:
    """One item of a conversation; ``item["id"]`` is ``id``."""

    id: str
    position: int
    item: Item


@dataclass(frozen=True)
class ItemPage:
    items: list[StoredItem]
    has_more: bool


class CursorNotFound(Exception):
    """The ``after`` item of a page request is not (or no longer) in the conversation."""


class ConversationStore(Protocol):
    """Conversations and their items. Every method may raise StoreError.

    Items arrive with their ids set (the handler mints the missing ones); the store gives positions.
    A method that takes a conversation id answers None / False when this tenant has no live
    conversation with that id, the same for missing, expired, deleted and another tenant's.
    """

    ttl: timedelta

    async def start(self) -> None:
        """Prepare the backend (indexes). Idempotent; also called lazily before first use."""

    async def close(self) -> None: ...

    async def create(
        self, tenant: str, conversation_id: str, metadata: dict[str, str], items: Sequence[Item]
    ) -> Conversation:
        """Insert a new conversation with its first items, all or nothing."""

    async def get(self, tenant: str, conversation_id: str) -> Conversation | None: ...

    async def update_metadata(self, tenant: str, conversation_id: str, metadata: dict[str, str]) -> Conversation | None:
        """Replace the metadata; the expiry is unchanged (it counts from the last item added)."""

    async def delete(self, tenant: str, conversation_id: str) -> bool:
        """Remove the conversation and all its items before returning."""

    async def append(self, tenant: str, conversation_id: str, items: Sequence[Item]) -> list[StoredItem] | None:
        """Add items at the end and restart the expiry; None (and nothing added) if the conversation
        is gone, also when it is deleted while the items are being written."""

    async def items(self, tenant: str, conversation_id: str) -> list[Item] | None:
        """Every live item, oldest first (what a response in this conversation is sent upstream)."""

    async def page(
        self, tenant: str, conversation_id: str, *, after: str | None, limit: int, order: str
    ) -> ItemPage | None:
        """Up to ``limit`` items after the item ``after`` in ``order``; raises CursorNotFound."""

    async def get_item(self, tenant: str, conversation_id: str, item_id: str) -> StoredItem | None: ...

    async def delete_item(self, tenant: str, conversation_id: str, item_id: str) -> Conversation | None:
        """Remove one item; the conversation (as it stands after) if the item was there, else None."""

    async def delete_tenant(self, tenant: str) -> int:
        """Remove every conversation of the tenant with its items; returns how many conversations."""
