"""Caller-held keys (``RETENTION_ENCRYPTION=caller-key``): the data key is derived from the bearer token.

HKDF-SHA256 with the caller's token as input key material and the server secret
(``RETENTION_TENANT_SECRET``) as salt: the same token always yields the same key, another token (of the
same tenant header or not) another one, and nothing the server stores or is configured with (database,
backups, server secret, master keys) yields it without the token. The price is the trade-off the README
states: a caller who changes API key can no longer read what was stored under the old one.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .cipher import KEY_BYTES, KEY_ID_BYTES, DataKey
from .context import RequestKeys

_INFO = b"retention-middleware/caller-data-key/v1"


class CallerKeys:
    """Derives a caller's data key from its bearer token under the server secret."""

    def __init__(self, secret: str) -> None:
        self._salt = secret.encode("utf-8")
        # Tokens repeat across requests and HKDF costs ~15 us; the tenant resolver already keeps the
        # same tokens in a cache of this size, so this adds no secret the process did not hold.
        self.derive = lru_cache(maxsize=4096)(self._derive)

    def _derive(self, token: bytes) -> DataKey:
        raw = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=self._salt, info=_INFO).derive(token)
        # The id lets an envelope under another caller's key be refused before GCM runs; it is a hash of
        # the key, so it reveals nothing a ciphertext does not.
        key_id = hmac.new(raw, b"key id", hashlib.sha256).digest()[:KEY_ID_BYTES]
        return DataKey.of(key_id, raw)

    def of_request(self, keys: RequestKeys | None) -> DataKey | None:
        """The current request's key (derived once per request), or None without a bearer token."""
        if keys is None or keys.token is None:
            return None
        if keys.derived is None:
            keys.derived = self.derive(keys.token)
        return keys.derived
