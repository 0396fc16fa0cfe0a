"""Seal and open one content field of one record: the API every store layer (and conversations) uses.

``await sealer.seal(tenant, record_id, field, value)`` turns any JSON value into the sealed form
``{"$sealed": "<base64 envelope>"}``, itself a JSON value, so a store keeps it where it kept the value;
``await sealer.open(tenant, record_id, field, sealed)`` gives the value back or raises ``DecryptError``.
``field`` names what the value is (``response.input_items``, ``content.request``, …; a new kind of
record picks its own, e.g. ``conversation.items``): it is bound as associated data with the tenant and
the record id, so a sealed value is accepted nowhere but where it was sealed.

Open refuses anything not sealed: with encryption on, a value in clear (written before encryption was
turned on, or planted in the database) is never handed out.
"""

from __future__ import annotations

import binascii
from abc import ABC, abstractmethod
from typing import Any, Protocol

import orjson

from ..store.base import StoreError
from .caller_key import CallerKeys
from .cipher import DataKey, DecryptError, field_associated_data, key_id_of, open_sealed, seal
from .context import current_keys
from .vault import KeyUnavailable, KeyVault

SEALED = "$sealed"


class CallerKeyMissing(StoreError):
    """Caller-key mode, and the request carries no bearer token to derive a key from."""

    code = "caller_key_missing"


class FieldSealer(Protocol):
    async def seal(self, tenant: str, record_id: str, field: str, value: Any) -> dict[str, str]: ...

    async def open(self, tenant: str, record_id: str, field: str, sealed: Any) -> Any: ...


def _plaintext(value: Any, field: str) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        raise StoreError(f"{field} is not JSON-serialisable") from None


def _envelope(sealed: Any) -> bytes:
    if not (isinstance(sealed, dict) and len(sealed) == 1 and isinstance(sealed.get(SEALED), str)):
        raise DecryptError("the stored value is not sealed")
    try:
        # Not validating the alphabet (a regex pass, slower than the decryption): GCM authenticates
        # whatever bytes come out, so a stray character can only make the value fail to open.
        return binascii.a2b_base64(sealed[SEALED])
    except (binascii.Error, ValueError):
        raise DecryptError("the sealed value is not valid base64") from None


def _value(plaintext: bytes) -> Any:
    try:
        return orjson.loads(plaintext)
    except orjson.JSONDecodeError:  # only possible with a forged key, but never a 500
        raise DecryptError("the opened value is not JSON") from None


class _Sealer(ABC):
    """Seal/open around whichever key the mode finds."""

    @abstractmethod
    async def _key_for_sealing(self, tenant: str) -> DataKey: ...

    @abstractmethod
    async def _key_for_opening(self, tenant: str, key_id: bytes) -> DataKey | None: ...

    async def seal(self, tenant: str, record_id: str, field: str, value: Any) -> dict[str, str]:
        key = await self._key_for_sealing(tenant)
        envelope = seal(key, field_associated_data(tenant, record_id, field), _plaintext(value, field))
        return {SEALED: binascii.b2a_base64(envelope, newline=False).decode("ascii")}

    async def open(self, tenant: str, record_id: str, field: str, sealed: Any) -> Any:
        envelope = _envelope(sealed)
        key = await self._key_for_opening(tenant, key_id_of(envelope))
        if key is None:
            raise DecryptError("no key opens this value (erased, replaced, or another caller's)")
        return _value(open_sealed(key, field_associated_data(tenant, record_id, field), envelope))


class VaultSealer(_Sealer):
    """Master-key mode: the tenant's data key from the vault."""

    def __init__(self, vault: KeyVault) -> None:
        self.vault = vault

    async def _key_for_sealing(self, tenant: str) -> DataKey:
        return await self.vault.key_for_writing(tenant)

    async def _key_for_opening(self, tenant: str, key_id: bytes) -> DataKey | None:
        try:
            return await self.vault.key_for_reading(tenant, key_id)
        except KeyUnavailable:  # wrapped by a master key no longer configured: closed, like a wrong key
            return None


class CallerKeySealer(_Sealer):
    """Caller-key mode: the key derived from the bearer token of the request being served."""

    def __init__(self, caller_keys: CallerKeys) -> None:
        self.caller_keys = caller_keys

    async def _key_for_sealing(self, tenant: str) -> DataKey:
        key = self.caller_keys.of_request(current_keys())
        if key is None:
            raise CallerKeyMissing("caller-key encryption needs the request's bearer token, and it has none")
        return key

    async def _key_for_opening(self, tenant: str, key_id: bytes) -> DataKey | None:
        key = self.caller_keys.of_request(current_keys())
        return key if key is not None and key.key_id == key_id else None
