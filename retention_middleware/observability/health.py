"""Liveness and readiness: is the process alive, and can it serve a request that needs the store?

``readiness()`` checks the store (MongoDB reachable and writable; the memory store has room) and,
for the proxy, that the upstream accepts a TCP connection. Each check is bounded by ``timeout`` so a
probe never hangs. The answer names the first failing part with a reason code, which is what a
Kubernetes readiness probe (and the person reading ``kubectl describe``) needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from urllib.parse import urlsplit

from ..store.base import ResponseStore, StoreError

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclasses.dataclass(frozen=True)
class Readiness:
    """``ready`` with ``reason`` None, or not ready with a reason code (``store_unavailable``, ...)."""

    ready: bool
    reason: str | None
    checks: dict[str, str]
    responses_backend: str | None = None
    """Which backend serves the Responses API (``ResponsesBackend.describe()``), when known."""

    def to_dict(self) -> dict[str, object]:
        answer: dict[str, object] = {"status": "ready" if self.ready else "not_ready", "reason": self.reason}
        answer["checks"] = self.checks
        if self.responses_backend is not None:
            answer["responses_backend"] = self.responses_backend
        return answer


async def _check_store(store: ResponseStore, timeout: float) -> str:
    try:
        await asyncio.wait_for(store.check(), timeout)
    except StoreError as error:
        return error.code
    except asyncio.TimeoutError:
        return "store_unavailable"
    return "ok"


async def _check_upstream(upstream: str, timeout: float) -> str:
    parts = urlsplit(upstream)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)
    try:
        # A TCP connect only: any HTTP request would cost the upstream work and could need credentials.
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return "upstream_unavailable"
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return "ok"


async def readiness(
    store: ResponseStore, *, upstream: str | None = None, timeout: float = 2.0, responses_backend: str | None = None
) -> Readiness:
    """Check the store and (when given) the upstream URL concurrently; the store's failure is named first.
    ``responses_backend`` is reported as it is: it says which backend is in use, and is no check."""
    checks = {"store": _check_store(store, timeout)}
    if upstream is not None:
        checks["upstream"] = _check_upstream(upstream, timeout)
    results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    reason = next((result for result in results.values() if result != "ok"), None)
    return Readiness(reason is None, reason, results, responses_backend)
