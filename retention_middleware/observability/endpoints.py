"""The proxy's own endpoints: ``/metrics``, ``/healthz`` and ``/readyz``, answered here, never forwarded.

``ProbeEndpoints`` sits in front of the middleware, so probes and scrapes are not requests of the
product: they get no access line and do not move the request metrics. Paths are settings
(``RETENTION_METRICS_PATH``, ``RETENTION_HEALTH_PATH``, ``RETENTION_READY_PATH``); any method other
than GET or HEAD on them goes on to the upstream like any other request.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from .._types import ASGIApp, Receive, Scope, Send
from ..store.base import ResponseStore
from .health import readiness


def metrics_text() -> bytes:
    """The exposition of the default registry, or, with ``PROMETHEUS_MULTIPROC_DIR``, every worker's sum."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class ProbeEndpoints:
    """ASGI app answering the probe paths itself and passing everything else to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        store: ResponseStore,
        *,
        upstream: str | None,
        metrics_path: str = "/metrics",
        health_path: str = "/healthz",
        ready_path: str = "/readyz",
        timeout: float = 2.0,
        responses_backend: Callable[[], str] | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.upstream = upstream
        self.timeout = timeout
        # Asked at each probe: with ``auto`` the answer changes once the upstream has been asked.
        self.responses_backend = responses_backend
        self._paths = {metrics_path: self._metrics, health_path: self._health, ready_path: self._ready}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        answer = self._paths.get(scope["path"])
        if answer is None:
            await self.app(scope, receive, send)
            return
        status, content_type, body = await answer()
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-store")]  # fmt: skip
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    async def _metrics(self) -> tuple[int, bytes, bytes]:
        return 200, CONTENT_TYPE_LATEST.encode(), metrics_text()

    async def _health(self) -> tuple[int, bytes, bytes]:
        return 200, b"application/json", b'{"status":"ok"}'

    async def _ready(self) -> tuple[int, bytes, bytes]:
        backend = None if self.responses_backend is None else self.responses_backend()
        result = await readiness(self.store, upstream=self.upstream, timeout=self.timeout, responses_backend=backend)
        return (200 if result.ready else 503), b"application/json", orjson.dumps(result.to_dict())
