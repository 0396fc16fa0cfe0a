"""What a store keeps and the protocol every store implements.

A store holds two kinds of record, both owned by a tenant and both carrying their own expiry:
stored Responses API turns (one per response, so deleting one is one atomic operation) and, for
the documented opt-in exceptions, content records. Reads never return an expired record, whatever
the backend's physical clean-up has done so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class StoreError(Exception):
    """The store could not do what was asked; ``code`` goes to the access log, never the message."""

    code = "store_unavailable"


class StoreRefused(StoreError):
    """The database is up but refused us: bad credentials, or a user without the needed rights."""

    code = "store_refused"


class StoreFull(StoreError):
    """The memory store's byte budget is spent; it refuses new records rather than evict live ones."""

    code = "store_full"


class StoreOutcomeUnknown(StoreError):
    """A write was sent but its answer never came (a timeout, a dropped connection, an unmet write
    concern): it may or may not have been applied, and the access log says ``"stored": "unknown"``."""

    code = "store_outcome_unknown"


class StoreConfigurationError(Exception):
    """The database is reachable but set up in a way we must not silently change (e.g. index conflicts)."""


@dataclass(frozen=True)
class StoredResponse:
    """One turn of the Responses API as the client saw it."""

    id: str
    tenant: str
    created_at: datetime
    expires_at: datetime
    model: str | None
    status: str | None
    previous_response_id: str | None
    ancestors: tuple[str, ...]
    """Ids of every earlier turn in this conversation, oldest first (not including this one)."""
    input_items: list[Any]
    """The request's input as a list of item objects, as the client sent them (ids not invented)."""
    response: dict[str, Any]
    """The response object exactly as the client received it (``store`` and ``previous_response_id``
    restored)."""
    usage: dict[str, Any] | None


@dataclass(frozen=True)
class ResponseChain:
    """A response and whichever of its ancestors still exist, fetched in one query."""

    response: StoredResponse | None
    ancestors: dict[str, StoredResponse]
    """The ancestors that are present and unexpired, by id; a missing id was deleted or has expired."""


@dataclass(frozen=True)
class ContentRecord:
    """Content kept under one of the documented exceptions (opt-in or a model disclosed as logging)."""

    id: str
    tenant: str
    model: str | None
    endpoint: str
    reason: str
    created_at: datetime
    expires_at: datetime
    request: Any
    response: Any


@dataclass(frozen=True)
class ResponsePage:
    """One page of a tenant's stored responses (``GET /v1/responses``), in the order asked for."""

    responses: list[StoredResponse]
    has_more: bool
    """Whether more responses follow in the direction of travel."""


class ResponseStore(Protocol):
    """Persistence for stored responses and content records. Every method may raise StoreError."""

    async def start(self) -> None:
        """Prepare the backend (indexes, sweeper). Idempotent; also called lazily before first use."""

    async def close(self) -> None: ...

    async def check(self, needed: int = 0) -> None:
        """Raise StoreError unless a write of about ``needed`` bytes could succeed now (reachable,
        budget left); MongoDB proves it with a round trip bounded by ``mongo_timeout``."""

    async def put(self, record: StoredResponse) -> None:
        """Insert a new record. Raises StoreError (StoreFull for the memory budget)."""

    async def replace(self, record: StoredResponse) -> bool:
        """Overwrite the record with this id and tenant only if it still exists unexpired (the final
        write over an ``in_progress`` one); False when it is gone, deleted on any replica."""

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        """The unexpired record of this tenant with this id, or None."""

    async def get_chain(self, tenant: str, response_id: str) -> ResponseChain:
        """The record and its ancestors (of this tenant, unexpired) in one round trip."""

    async def delete(self, tenant: str, response_id: str) -> bool:
        """Remove the record before returning; True if this tenant had it (expired ones count as gone)."""

    async def delete_tenant(self, tenant: str) -> int:
        """Remove every stored response of the tenant; returns how many were removed."""

    async def list_responses(
        self, tenant: str, *, limit: int, order: str, after: str | None = None, before: str | None = None
    ) -> ResponsePage | None:
        """A page of the tenant's unexpired responses by (``created_at``, id), ``order`` "asc" or
        "desc": the first ``limit`` after the cursor ``after``, or the last ``limit`` before ``before``.
        None when a cursor is not one of the tenant's unexpired responses."""

    async def put_content(self, record: ContentRecord) -> None: ...

    async def delete_tenant_content(self, tenant: str) -> int:
        """Remove every content record of the tenant; returns how many were removed."""

    async def count_content(self, tenant: str) -> int:
        """How many unexpired content records the tenant has (for tests and operators)."""

    async def find_content(self, tenant: str) -> Sequence[ContentRecord]:
        """The tenant's unexpired content records, oldest first."""
