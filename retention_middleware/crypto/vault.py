"""The key vault: one data key per tenant, kept wrapped (AES-256-GCM) by the newest master key.

Data keys live apart from the data, in their own collection (``data_keys`` in MongoDB, a dict in
memory for the memory store), as MongoDB's client-side encryption keeps its key vault: an operator can
back the vault up on a shorter cycle than the data, and erasing a tenant deletes its one key document,
after which every copy of its records, in backups included, is noise.

A read never creates a key (an erased tenant's records must stay unreadable); a write creates one
when the tenant has none. Two replicas creating the first key of a tenant at once both insert, and the
loser adopts the winner's key. Unwrapped keys are cached per process for ``CACHE_SECONDS``, so a
request costs no vault round trip; an envelope naming another key id bypasses the cache once.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Protocol

from cryptography.exceptions import InvalidTag

from ..store.base import StoreError
from .cipher import KEY_BYTES, KEY_ID_BYTES, NONCE_BYTES, DataKey, associated_data
from .keys import MasterKey, MasterKeys

CACHE_SECONDS = 60.0
"""How long an unwrapped data key is reused: bounds how long another replica keeps an erased key."""
CACHE_TENANTS = 10_000


class KeyUnavailable(StoreError):
    """A tenant's data key is wrapped under a master key that is not configured (any more)."""

    code = "key_unavailable"


@dataclass(frozen=True)
class WrappedKey:
    """A vault entry: the tenant's data key sealed by one master key (no key material in clear)."""

    tenant: str
    key_id: bytes
    master_key_id: str
    wrapped: bytes
    created_at: datetime


class VaultBackend(Protocol):
    async def load(self, tenant: str) -> WrappedKey | None: ...

    async def insert(self, entry: WrappedKey) -> WrappedKey:
        """Insert unless the tenant has a key already; return the entry that is now stored."""

    async def delete(self, tenant: str) -> int: ...

    async def entries(self) -> Sequence[WrappedKey]: ...

    async def rewrap(self, old: WrappedKey, new: WrappedKey) -> bool:
        """Replace ``old`` by ``new`` only if ``old`` is still what is stored (an erasure may have won)."""

    async def clear(self) -> None:
        """Forget everything (the memory store's close); a database vault keeps its keys."""


class MemoryVault:
    """The vault of the memory store: as volatile as the records it opens."""

    def __init__(self) -> None:
        self._entries: dict[str, WrappedKey] = {}

    async def load(self, tenant: str) -> WrappedKey | None:
        return self._entries.get(tenant)

    async def insert(self, entry: WrappedKey) -> WrappedKey:
        return self._entries.setdefault(entry.tenant, entry)

    async def delete(self, tenant: str) -> int:
        return 1 if self._entries.pop(tenant, None) is not None else 0

    async def entries(self) -> Sequence[WrappedKey]:
        return list(self._entries.values())

    async def rewrap(self, old: WrappedKey, new: WrappedKey) -> bool:
        if self._entries.get(old.tenant) != old:
            return False
        self._entries[old.tenant] = new
        return True

    async def clear(self) -> None:
        self._entries.clear()


def _wrap_ad(tenant: str, key_id: bytes) -> bytes:
    return associated_data("data-key", tenant, key_id.hex())


def wrap(master: MasterKey, tenant: str, key_id: bytes, raw: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + master.aead.encrypt(nonce, raw, _wrap_ad(tenant, key_id))


class KeyVault:
    """Per-tenant data keys under the configured master keys."""

    def __init__(self, backend: VaultBackend, master_keys: MasterKeys) -> None:
        self.backend = backend
        self.master_keys = master_keys
        self._cache: OrderedDict[str, tuple[DataKey, float]] = OrderedDict()

    def _unwrap(self, entry: WrappedKey) -> DataKey:
        return DataKey.of(entry.key_id, self._raw(entry))

    def _cached(self, tenant: str) -> DataKey | None:
        hit = self._cache.get(tenant)
        if hit is None or time.monotonic() - hit[1] > CACHE_SECONDS:
            return None
        self._cache.move_to_end(tenant)
        return hit[0]

    def _remember(self, tenant: str, key: DataKey) -> DataKey:
        self._cache[tenant] = (key, time.monotonic())
        self._cache.move_to_end(tenant)
        while len(self._cache) > CACHE_TENANTS:
            self._cache.popitem(last=False)
        return key

    async def key_for_writing(self, tenant: str) -> DataKey:
        """The tenant's data key, created (and stored wrapped) if it has none."""
        key = self._cached(tenant)
        if key is not None:
            return key
        entry = await self.backend.load(tenant)
        if entry is None:
            raw, key_id = os.urandom(KEY_BYTES), os.urandom(KEY_ID_BYTES)
            newest = self.master_keys.newest
            wrapped = wrap(newest, tenant, key_id, raw)
            entry = await self.backend.insert(
                WrappedKey(tenant, key_id, newest.key_id, wrapped, datetime.now(timezone.utc))
            )
        return self._remember(tenant, self._unwrap(entry))

    async def key_for_reading(self, tenant: str, key_id: bytes) -> DataKey | None:
        """The tenant's data key if it is the one ``key_id`` names; None if erased or replaced."""
        key = self._cached(tenant)
        if key is not None and key.key_id == key_id:
            return key
        entry = await self.backend.load(tenant)
        if entry is None:
            self._cache.pop(tenant, None)
            return None
        key = self._remember(tenant, self._unwrap(entry))
        return key if key.key_id == key_id else None

    async def destroy(self, tenant: str) -> int:
        """Delete the tenant's data key (crypto-shredding); how many keys were destroyed (0 or 1)."""
        self._cache.pop(tenant, None)
        destroyed = await self.backend.delete(tenant)
        self._cache.pop(tenant, None)  # a read racing the delete may have cached it again
        return destroyed

    async def rotate(self) -> tuple[int, int, int]:
        """Re-wrap every data key under the newest master key.

        Returns (re-wrapped now, already under the newest, not unwrappable with the configured keys).
        """
        newest = self.master_keys.newest
        rewrapped = current = unreadable = 0
        for entry in await self.backend.entries():
            if entry.master_key_id == newest.key_id:
                current += 1
                continue
            try:
                raw = self._raw(entry)
            except KeyUnavailable:
                unreadable += 1
                continue
            new = replace(entry, master_key_id=newest.key_id, wrapped=wrap(newest, entry.tenant, entry.key_id, raw))
            if await self.backend.rewrap(entry, new):
                rewrapped += 1
        return rewrapped, current, unreadable

    def _raw(self, entry: WrappedKey) -> bytes:
        master = self.master_keys.by_id(entry.master_key_id)
        if master is None:
            raise KeyUnavailable(
                f"a data key is wrapped by master key {entry.master_key_id}, which is not configured; "
                "list it in RETENTION_ENCRYPTION_KEY after the newest and run rotate-keys"
            )
        nonce, sealed = entry.wrapped[:NONCE_BYTES], entry.wrapped[NONCE_BYTES:]
        try:
            return master.aead.decrypt(nonce, sealed, _wrap_ad(entry.tenant, entry.key_id))
        except InvalidTag:
            raise KeyUnavailable("a data key in the vault failed authentication (tampered or moved)") from None

    def forget(self) -> None:
        self._cache.clear()
