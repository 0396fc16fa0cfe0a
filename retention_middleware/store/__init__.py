"""Persistence for stored responses and content records: MongoDB, or an in-process memory store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..settings import RetentionSettings
from .base import (
    ContentRecord,
    ResponseChain,
    ResponseStore,
    StoreConfigurationError,
    StoredResponse,
    StoreError,
    StoreFull,
    StoreRefused,
)
from .memory import MemoryStore
from .mongo import MongoStore

__all__ = [
    "ContentRecord",
    "MemoryStore",
    "MongoStore",
    "ResponseChain",
    "ResponseStore",
    "StoreConfigurationError",
    "StoreError",
    "StoreFull",
    "StoreRefused",
    "StoredResponse",
    "make_store",
]


def make_store(settings: RetentionSettings, *, clock: Callable[[], datetime] | None = None) -> ResponseStore:
    """The store ``settings.store`` names: ``memory`` or a MongoDB URI. Nothing connects until ``start()``."""
    if settings.uses_mongodb:
        return MongoStore(settings, clock=clock)
    return MemoryStore(settings.memory_budget, clock=clock)
