"""The conversation store that goes with a response store: same database, or the same memory budget."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..settings import RetentionSettings
from .base import ResponseStore
from .conversations import ConversationStore
from .conversations_memory import ConversationMemoryStore
from .conversations_mongo import ConversationMongoStore
from .memory import MemoryStore
from .mongo import MongoStore


def make_conversation_store(
    store: ResponseStore, settings: RetentionSettings, *, clock: Callable[[], datetime] | None = None
) -> ConversationStore:
    """Conversations beside ``store``: in its MongoDB database, or charged to its memory budget.

    A store of another kind (a test double, a custom backend) gets conversations in memory under a
    budget of their own, ``settings.memory_budget``.
    """
    ttl = settings.conversation_ttl or settings.ttl
    if isinstance(store, MongoStore):
        return ConversationMongoStore(store, ttl, clock=clock)
    budget = store if isinstance(store, MemoryStore) else MemoryStore(settings.memory_budget, clock=clock)
    return ConversationMemoryStore(budget, ttl, clock=clock)
