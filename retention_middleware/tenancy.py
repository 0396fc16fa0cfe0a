"""Who owns a request: the tenant every stored record and access-log line is filed under.

The tenant is the value of a trusted header set by an auth gateway (``RETENTION_TENANT_HEADER``), or
an HMAC-SHA256 of the bearer token under a server secret. The secret is ``RETENTION_TENANT_SECRET``;
without one, the memory store (which dies with the process anyway) uses a random secret made at
start-up, so callers are isolated by their key by default. ``anonymous`` is the tenant of a request
that carries neither, and of every request when the operator chose ``RETENTION_TENANCY=shared``.
The raw API key is never stored, logged or kept in a cache.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from ._types import Headers
from .errors import invalid_request

ANONYMOUS = "anonymous"


class TenantResolver:
    """Derives the tenant from request headers; built once per middleware from settings.

    ``secret=None`` with ``ephemeral=True`` means a random secret: tenants are stable for the life of
    this resolver only, which is right for the memory store and wrong for a database that outlives
    the process. With neither (a database and only a trusted header), a request without the header
    is ``anonymous``.
    """

    def __init__(self, secret: str | None, header: str | None, *, shared: bool = False, ephemeral: bool = True) -> None:
        self._header = header.lower().encode("latin-1") if header else None
        self._mac: hmac.HMAC | None = None
        if not shared and (secret or ephemeral):
            key = secret.encode("utf-8") if secret else secrets.token_bytes(32)
            # The keyed state is computed once; each request copies it (two SHA-256 blocks saved).
            # There is no token-to-tenant cache: a cache would keep raw keys, the largest ones an
            # attacker chooses, in memory for as long as they stay hot. HMAC of a key is ~1 µs.
            self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def tenant_of(self, headers: Headers) -> str:
        """The tenant; an OpenAIError (400) when the headers name two different callers."""
        authorization: bytes | None = None
        tenant: bytes | None = None
        for name, value in headers:
            if name == b"authorization":
                if authorization is not None:
                    # Which of two keys is "the" caller depends on who reads the headers; the
                    # upstream may pick the other one. Refuse rather than guess.
                    raise invalid_request(
                        "The request has more than one Authorization header; send exactly one.",
                        code="duplicate_header",
                    )
                authorization = value
            elif name == self._header:
                if tenant is not None:
                    raise invalid_request(
                        "The request has more than one tenant header; send exactly one.", code="duplicate_header"
                    )
                tenant = value
        if tenant:
            # Header bytes are latin-1 by the HTTP spec; the gateway's id is used as it is.
            return tenant.decode("latin-1")
        if self._mac is not None and authorization:
            scheme, _, token = authorization.partition(b" ")
            token = token.strip()
            if scheme.lower() == b"bearer" and token:
                mac = self._mac.copy()
                mac.update(token)
                return mac.hexdigest()[:32]
        return ANONYMOUS
