"""RetentionMiddleware: classify each request and hand it to the handler that owns it.

Pure ASGI. Websocket scopes pass straight through; the lifespan passes through with one addition,
preparing the store at start-up (and closing it at shutdown). Every HTTP request gets exactly one
access-log line, also when the app raises or the client goes away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from ._types import ASGIApp, Message, Receive, Scope, Send
from .completions import CompletionsHandler
from .errors import OpenAIError, UpstreamFailedMidResponse, send_error
from .exchange import Exchange
from .inflight import InFlightRegistry
from .logs.access_log import AccessRecord, emit
from .policy.content_log import ContentLog
from .policy.disclosure import ModelsDisclosureHandler
from .policy.erasure import ErasureHandler
from .responses import CreateResponseHandler, StoredResponseHandler
from .routes import Route, classify
from .settings import RetentionSettings
from .store import make_store
from .store.base import ResponseStore, StoreConfigurationError, StoreError
from .tenancy import TenantResolver

logger = logging.getLogger("retention_middleware")

Handler = Callable[[Exchange], Awaitable[None]]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


_INTERNAL_ERROR = OpenAIError(
    500,
    "The server had an error while processing your request.",
    type="server_error",
    code="internal_error",
)


class RetentionMiddleware:
    """Zero-data-retention middleware for an OpenAI-compatible ASGI app.

    ``RetentionMiddleware(app)`` reads its settings from ``RETENTION_*`` environment variables (this is
    how ``vllm serve --middleware retention_middleware.RetentionMiddleware`` builds it); pass
    ``settings=`` or keyword overrides (``RetentionMiddleware(app, ttl=timedelta(hours=12))``) to
    configure it in code. ``store`` replaces the store the settings name; ``clock`` (aware, UTC)
    dates stored records, which tests use to move time.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: RetentionSettings | None = None,
        *,
        store: ResponseStore | None = None,
        clock: Callable[[], datetime] | None = None,
        **overrides: Any,
    ) -> None:
        self.app = app
        if settings is None:
            settings = RetentionSettings.from_env(**overrides)
        elif overrides:
            settings = dataclasses.replace(settings, **overrides)
        self.settings = settings
        clock = clock or _utc_now
        self.store = store if store is not None else make_store(settings, clock=clock)
        self._tenants = TenantResolver(settings.tenant_secret, settings.tenant_header)
        inflight = InFlightRegistry()
        self.content_log = ContentLog(settings, self.store, clock)
        completions = CompletionsHandler(app, settings.max_body, self.content_log, inflight, settings.max_json_depth)
        stored = StoredResponseHandler(self.store, inflight)
        self._handlers: dict[Route, Handler] = {
            Route.CHAT: completions,
            Route.COMPLETIONS: completions,
            Route.EMBEDDINGS: completions,
            Route.RESPONSES_CREATE: CreateResponseHandler(app, settings, self.store, inflight, self.content_log, clock),
            Route.RESPONSES_RETRIEVE: stored,
            Route.RESPONSES_DELETE: stored,
            Route.RESPONSES_INPUT_ITEMS: stored,
            Route.MODELS: ModelsDisclosureHandler(app, settings),
            Route.RETENTION_ERASE: ErasureHandler(self.store, inflight),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        route, raw_id = classify(scope["method"], scope["path"])
        record = AccessRecord(scope["method"], scope["path"], self._tenants.tenant_of(scope["headers"]))
        if self.settings.log_client_address and scope.get("client"):
            record.client = scope["client"][0]
        exchange = Exchange(scope, receive, send, record, route, raw_id, self.settings.log_guard)
        failed = False
        try:
            await self._handlers.get(route, self._passthrough)(exchange)
        except asyncio.CancelledError:
            # The server cancelled the request (shutdown, or a client gone): nobody is left to answer.
            failed = True
            record.error = record.error or "cancelled"
            raise
        except UpstreamFailedMidResponse as error:
            # Logged in one line by the forwarder. Returning with the response unfinished makes the
            # server drop the connection, so the client never takes a cut-off body for a whole one.
            failed = True
            record.error = error.code
        except BaseException:
            failed = True
            record.error = record.error or "app_error"
            if not exchange.response_started:
                # Answer in OpenAI's shape while we still can, then let the server see the error.
                try:
                    await send_error(exchange.send, _INTERNAL_ERROR)
                except Exception:  # the connection may be gone; the original error matters more
                    pass
            raise
        finally:
            exchange.finish(failed=failed)
            emit(record)

    async def _passthrough(self, exchange: Exchange) -> None:
        await self.app(exchange.scope, exchange.receive, exchange.send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The store is prepared when the server announces start-up, before the app's own start-up
        # runs; a misconfigured database turns the app's "complete" into "failed" with our message.
        startup_failure: str | None = None

        async def lifespan_receive() -> Message:
            nonlocal startup_failure
            message = await receive()
            if message["type"] == "lifespan.startup":
                startup_failure = await self._start_store()
            return message

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and startup_failure is not None:
                message = {"type": "lifespan.startup.failed", "message": startup_failure}
            elif message["type"] == "lifespan.shutdown.complete":
                await self.store.close()
            await send(message)

        await self.app(scope, lifespan_receive, lifespan_send)

    async def _start_store(self) -> str | None:
        try:
            await self.store.start()
        except StoreConfigurationError as error:
            logger.error("retention store misconfigured: %s", error)
            return str(error)
        except StoreError as error:
            # Not fatal: the store is retried before its first use, and requests are served meanwhile
            # as RETENTION_STORE_FAILURE says.
            logger.warning("retention store unavailable at start-up (%s); will retry on first use", error.code)
        return None
