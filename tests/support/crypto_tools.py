"""Encrypting stores built by hand for the tests: master-key ones on a chosen vault, caller-key ones,
and a bound request key (what the middleware binds per request)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from retention_middleware.crypto.caller_key import CallerKeys
from retention_middleware.crypto.context import RequestKeys
from retention_middleware.crypto.fields import CallerKeySealer, VaultSealer
from retention_middleware.crypto.keys import parse_master_keys
from retention_middleware.crypto.store import EncryptingStore
from retention_middleware.crypto.vault import KeyVault, VaultBackend
from retention_middleware.store import ResponseStore


def master_key_store(inner: ResponseStore, keys: str, backend: VaultBackend) -> EncryptingStore:
    """``inner`` sealed under master keys ``keys`` (``new,old…``), data keys in ``backend``."""
    vault = KeyVault(backend, parse_master_keys(keys, "test keys"))
    return EncryptingStore(inner, VaultSealer(vault), vault)


def caller_key_store(inner: ResponseStore, secret: str) -> EncryptingStore:
    return EncryptingStore(inner, CallerKeySealer(CallerKeys(secret)), None)


@contextmanager
def as_caller(token: str | None) -> Iterator[RequestKeys]:
    """The request keys of a caller holding bearer ``token`` (None: no Authorization header)."""
    keys = RequestKeys(None if token is None else token.encode()).bind()
    try:
        yield keys
    finally:
        keys.unbind()
