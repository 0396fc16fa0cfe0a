"""Who owns a request: the tenant every stored record and access-log line is filed under.

The tenant is the value of a trusted header set by an auth gateway (``RETENTION_TENANT_HEADER``), or
an HMAC-SHA256 of the bearer token under a server secret (``RETENTION_TENANT_SECRET``), or
``anonymous`` when neither is configured or present. The raw API key is never stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from functools import lru_cache

from ._types import Headers

ANONYMOUS = "anonymous"


class TenantResolver:
    """Derives the tenant from request headers; built once per middleware from settings."""

    def __init__(self, secret: str | None, header: str | None) -> None:
        self._header = header.lower().encode("latin-1") if header else None
        self._hash_token: Callable[[bytes], str] | None = None
        if secret:
            key = secret.encode("utf-8")

            # Keys repeat across requests; caching their digest keeps HMAC off the hot path. The cache
            # lives in process memory only, like the key itself while the request is served.
            @lru_cache(maxsize=4096)
            def hash_token(token: bytes) -> str:
                return hmac.new(key, token, hashlib.sha256).hexdigest()[:32]

            self._hash_token = hash_token

    def tenant_of(self, headers: Headers) -> str:
        if self._header is None and self._hash_token is None:
            return ANONYMOUS
        authorization = None
        for name, value in headers:
            if name == self._header and value:
                # Header bytes are latin-1 by the HTTP spec; the gateway's id is used as it is.
                return value.decode("latin-1")
            if name == b"authorization":
                authorization = value
        if self._hash_token is not None and authorization:
            scheme, _, token = authorization.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return self._hash_token(token.strip())
        return ANONYMOUS
