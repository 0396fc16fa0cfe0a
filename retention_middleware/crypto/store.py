"""EncryptingStore: any ResponseStore with its content fields sealed on the way in, opened on the way out.

The wrapped store keeps doing what it does (queries, expiry, budgets, deletes) on metadata in clear:
tenant, dates, status, model, usage, ancestors. Only what a client said or was answered is sealed:
a response's ``input_items`` and ``response``, a content record's ``request`` and ``response``.

Failure is closed: a record that does not open (another key, an erased key, tampered or clear bytes)
is treated as absent, so a GET answers 404 and a chain through it the 400 that names it. The request's
access-log line gets ``decrypt_failed``; the warning logged names the record id, never its bytes.

A new kind of record joins by adding its store methods here, each sealing its content fields with
``self.sealer`` under a field name of its own and treating a ``DecryptError`` as absence through
``_refused``; the ResponseStore protocol makes mypy name any method left out. Conversations have a
protocol of their own, wrapped the same way by ``EncryptingConversationStore`` with this ``sealer``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..store.base import ContentRecord, ResponseChain, ResponsePage, ResponseStore, StoredResponse
from .cipher import DecryptError
from .context import note_decrypt_failure
from .fields import FieldSealer
from .vault import KeyVault

logger = logging.getLogger("retention_middleware")

INPUT_ITEMS = "response.input_items"
RESPONSE = "response.response"
CONTENT_REQUEST = "content.request"
CONTENT_RESPONSE = "content.response"


@runtime_checkable
class KeyHolder(Protocol):
    """A store that holds per-tenant keys, so erasure can destroy them (crypto-shredding)."""

    async def destroy_tenant_keys(self, tenant: str) -> int: ...


class EncryptingStore:
    """The ResponseStore protocol around ``inner``, sealing content with ``sealer``."""

    def __init__(self, inner: ResponseStore, sealer: FieldSealer, vault: KeyVault | None) -> None:
        self.inner = inner
        self.sealer = sealer
        self.vault = vault
        """The key vault in master-key mode; None in caller-key mode, where the server holds no key."""

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()
        if self.vault is not None:
            self.vault.forget()
            await self.vault.backend.clear()  # a memory vault ends with its memory store

    async def check(self, needed: int = 0) -> None:
        # Sealed content is base64 in JSON: about a third larger than the clear bytes it holds.
        await self.inner.check(needed + needed // 3 if needed else 0)

    # -- stored responses -------------------------------------------------------------------------

    async def put(self, record: StoredResponse) -> None:
        await self.inner.put(await self._sealed(record))

    async def _sealed(self, record: StoredResponse) -> StoredResponse:
        seal = self.sealer.seal
        return dataclasses.replace(
            record,
            input_items=[await seal(record.tenant, record.id, INPUT_ITEMS, record.input_items)],
            response=await seal(record.tenant, record.id, RESPONSE, record.response),
        )

    async def replace(self, record: StoredResponse) -> bool:
        return await self.inner.replace(await self._sealed(record))

    async def _opened(self, record: StoredResponse) -> StoredResponse | None:
        try:
            sealed_items = record.input_items[0] if len(record.input_items) == 1 else None
            input_items = await self.sealer.open(record.tenant, record.id, INPUT_ITEMS, sealed_items)
            response = await self.sealer.open(record.tenant, record.id, RESPONSE, record.response)
        except DecryptError:
            _refused(record.id)
            return None
        if not isinstance(input_items, list) or not isinstance(response, dict):
            _refused(record.id)
            return None
        return dataclasses.replace(record, input_items=input_items, response=response)

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        record = await self.inner.get(tenant, response_id)
        return None if record is None else await self._opened(record)

    async def get_chain(self, tenant: str, response_id: str) -> ResponseChain:
        chain = await self.inner.get_chain(tenant, response_id)
        root = None if chain.response is None else await self._opened(chain.response)
        if root is None:
            return ResponseChain(response=None, ancestors={})
        ancestors: dict[str, StoredResponse] = {}
        for ancestor_id, sealed in chain.ancestors.items():
            opened = await self._opened(sealed)
            if opened is not None:  # one that does not open is missing: the chain names it
                ancestors[ancestor_id] = opened
        return ResponseChain(response=root, ancestors=ancestors)

    async def list_responses(
        self, tenant: str, *, limit: int, order: str, after: str | None = None, before: str | None = None
    ) -> ResponsePage | None:
        page = await self.inner.list_responses(tenant, limit=limit, order=order, after=after, before=before)
        if page is None:
            return None
        opened = [record for record in [await self._opened(sealed) for sealed in page.responses] if record]
        # A record that does not open is left out of the page, as if missing (fail closed).
        return ResponsePage(responses=opened, has_more=page.has_more)

    async def delete(self, tenant: str, response_id: str) -> bool:
        return await self.inner.delete(tenant, response_id)  # needs no key: a caller can always delete

    async def delete_tenant(self, tenant: str) -> int:
        return await self.inner.delete_tenant(tenant)

    # -- content records --------------------------------------------------------------------------

    async def put_content(self, record: ContentRecord) -> None:
        seal = self.sealer.seal
        sealed = dataclasses.replace(
            record,
            request=await seal(record.tenant, record.id, CONTENT_REQUEST, record.request),
            response=await seal(record.tenant, record.id, CONTENT_RESPONSE, record.response),
        )
        await self.inner.put_content(sealed)

    async def delete_tenant_content(self, tenant: str) -> int:
        return await self.inner.delete_tenant_content(tenant)

    async def count_content(self, tenant: str) -> int:
        return await self.inner.count_content(tenant)

    async def find_content(self, tenant: str) -> Sequence[ContentRecord]:
        opened: list[ContentRecord] = []
        for record in await self.inner.find_content(tenant):
            try:
                request = await self.sealer.open(record.tenant, record.id, CONTENT_REQUEST, record.request)
                response = await self.sealer.open(record.tenant, record.id, CONTENT_RESPONSE, record.response)
            except DecryptError:
                _refused(record.id)
                continue
            opened.append(dataclasses.replace(record, request=request, response=response))
        return opened

    # -- keys -------------------------------------------------------------------------------------

    async def destroy_tenant_keys(self, tenant: str) -> int:
        """Delete the tenant's data key: every copy of its records anywhere becomes unreadable."""
        return 0 if self.vault is None else await self.vault.destroy(tenant)

    async def rotate_keys(self) -> tuple[int, int, int]:
        """Re-wrap every data key under the newest master key (see ``KeyVault.rotate``)."""
        return (0, 0, 0) if self.vault is None else await self.vault.rotate()


def _refused(record_id: str) -> None:
    note_decrypt_failure()
    logger.warning("stored record %s could not be decrypted; treated as missing (decrypt_failed)", record_id)
