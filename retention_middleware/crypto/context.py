"""The keys of the request being served, in a ContextVar: how the caller's bearer token reaches the store.

The store's methods take a tenant, not a request, and several handlers call them; rather than thread
a key handle through every signature, the middleware binds one ``RequestKeys`` per HTTP request (tasks
the app starts inherit it) and the sealing layer reads it. It also carries back the one fact the access
log needs from below: that a stored record failed to decrypt (``decrypt_failed``). The bearer token is
kept only in caller-key mode, only for the request's lifetime, and never leaves this object.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

from .._types import Headers
from .cipher import DataKey


def bearer_token(headers: Headers) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


class RequestKeys:
    """Per-request key state: the caller's token (caller-key mode), its derived key, and failures."""

    __slots__ = ("token", "derived", "decrypt_failed", "_reset")

    def __init__(self, token: bytes | None) -> None:
        self.token = token
        self.derived: DataKey | None = None
        """The key derived from ``token``, computed once per request."""
        self.decrypt_failed = False
        self._reset: Token[RequestKeys | None] | None = None

    def bind(self) -> RequestKeys:
        self._reset = _CURRENT.set(self)
        return self

    def unbind(self) -> None:
        if self._reset is not None:
            _CURRENT.reset(self._reset)
            self._reset = None
        self.token = self.derived = None  # the key material goes with the request


_CURRENT: ContextVar[RequestKeys | None] = ContextVar("retention_request_keys", default=None)


def current_keys() -> RequestKeys | None:
    return _CURRENT.get()


def note_decrypt_failure() -> None:
    keys = _CURRENT.get()
    if keys is not None:
        keys.decrypt_failed = True
