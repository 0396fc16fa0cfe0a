"""The apps under test: the echo model bare, and the same model behind the middleware.

The passthrough route is the echo model's own chat completions endpoint mounted a second time under
``/raw``: the middleware does not inspect that path, yet the app behind it does exactly the work of
a real ~1 KB chat completion. A bare "return 200" app would make any middleware look expensive by
comparison and would not say what an operator pays per request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import ASGIApp, Receive, Scope, Send
from retention_middleware.demo import EchoModel
from retention_middleware.store import ResponseStore

from .payloads import PASSTHROUGH_PREFIX

ACCESS_LOGGER = "retention_middleware.access"


class Mounted:
    """Serves ``app`` at its own paths and again under ``/raw``, as a sub-app mount would."""

    def __init__(self, app: ASGIApp, prefix: str = PASSTHROUGH_PREFIX) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            scope = {**scope, "path": scope["path"][len(self.prefix) :], "root_path": self.prefix}
        await self.app(scope, receive, send)


def upstream() -> ASGIApp:
    """The bare app every figure is compared with."""
    return Mounted(EchoModel())


# A fixed secret, so the benchmark can find its own stored responses under the tenant the key maps to.
BENCHMARK_TENANT_SECRET = "benchmark-tenant-secret-0123456789"


def wrapped(app: ASGIApp, *, store: ResponseStore | None = None, log_guard: bool = True) -> RetentionMiddleware:
    """The middleware with default settings, never read from this process's environment."""
    settings = RetentionSettings(log_guard=log_guard, tenant_secret=BENCHMARK_TENANT_SECRET)
    return RetentionMiddleware(app, settings, store=store)


class FormattingNullHandler(logging.Handler):
    """Formats every record, as a real handler would, then drops it: the log's CPU cost, no I/O."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.records += 1


@contextmanager
def access_log_enabled() -> Iterator[FormattingNullHandler]:
    """The access logger on at INFO with one formatting handler, as operators run it."""
    logger = logging.getLogger(ACCESS_LOGGER)
    handler = FormattingNullHandler()
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def access_log_is_silent() -> bool:
    """True when nobody listens, which is the default the "log off" figures need."""
    return not logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO)
