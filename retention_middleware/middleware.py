"""RetentionMiddleware: classify each request and hand it to the handler that owns it.

Pure ASGI. Websocket scopes pass straight through, except the Responses API's WebSocket mode on
``/v1/responses`` (``responses.websocket``); the lifespan passes through with one addition,
preparing the store at start-up (and closing it at shutdown). Every HTTP request gets exactly one
access-log line, also when the app raises or the client goes away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from ._types import ASGIApp, Message, Receive, Scope, Send
from .completions import CompletionsHandler
from .conversations import ConversationsHandler
from .crypto import EncryptingStore, encryption_for, startup_line
from .errors import OpenAIError, UpstreamFailedMidResponse, send_error
from .exchange import Exchange
from .inflight import InFlightRegistry
from .limits.head_method import without_body
from .limits.headers import HeadLimits
from .logs.access_log import AccessRecord, emit
from .observability.health import Readiness, readiness
from .observability.metrics import RequestMetrics
from .observability.request_id import tag_scope
from .observability.startup import startup_warnings
from .policy.content_log import ContentLog
from .policy.disclosure import ModelsDisclosureHandler
from .policy.erasure import ErasureHandler
from .responses import CreateResponseHandler, StoredResponseHandler
from .responses.listing import ListResponsesHandler
from .responses.stateless import StatelessResponsesHandler
from .responses.websocket import ResponsesSocket
from .routes import Route, classify, is_responses_socket
from .settings import RetentionSettings
from .store import make_store
from .store.base import ResponseStore, StoreConfigurationError, StoreError
from .store.conversations_factory import make_conversation_store
from .tenancy import ANONYMOUS, TenantResolver

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


# Served by the middleware, so a HEAD gets what a GET would, without the body.
_SERVED_FOR_HEAD = frozenset({Route.RESPONSES_RETRIEVE, Route.RESPONSES_INPUT_ITEMS})


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
        raw_store = self.store
        self._encryption = encryption_for(settings)  # None when encryption at rest is off
        if self._encryption is not None:
            self.store = self._encryption.wrap(self.store)
        self.conversations = make_conversation_store(raw_store, settings, clock=clock)
        if self._encryption is not None and isinstance(self.store, EncryptingStore):
            self.conversations = self._encryption.wrap_conversations(self.conversations, self.store)
        shared = settings.tenancy == "shared"
        # A random secret only where records die with the process: a database outlives it.
        self._tenants = TenantResolver(
            settings.tenant_secret, settings.tenant_header, shared=shared, ephemeral=not settings.uses_mongodb
        )
        if shared:
            logger.warning(
                "RETENTION_TENANCY=shared: callers are not told apart; anyone who learns a response id "
                "can read or delete it"
            )
        self.metrics = RequestMetrics(
            enabled=settings.metrics, tenant_label=settings.metrics_tenant_label, max_models=settings.metrics_max_models
        )
        self._head_limits = HeadLimits(settings.max_header_bytes, settings.max_headers)
        inflight = InFlightRegistry()
        self.content_log = ContentLog(settings, self.store, clock)
        completions = CompletionsHandler(app, settings.max_body, self.content_log, inflight, settings.max_json_depth)
        stored = StoredResponseHandler(self.store, inflight)
        create = CreateResponseHandler(
            app, settings, self.store, inflight, self.content_log, clock, conversations=self.conversations
        )
        self.responses_backend = create.backend
        """Which backend serves the Responses API; ``describe()`` says so (the banner, ``/readyz``)."""
        self._handlers: dict[Route, Handler] = {
            Route.CHAT: completions,
            Route.COMPLETIONS: completions,
            Route.EMBEDDINGS: completions,
            Route.RESPONSES_CREATE: create,
            Route.RESPONSES_RETRIEVE: stored,
            Route.RESPONSES_DELETE: stored,
            Route.RESPONSES_INPUT_ITEMS: stored,
            Route.RESPONSES_LIST: ListResponsesHandler(self.store),
            Route.RESPONSES_COMPACT: StatelessResponsesHandler(app, settings, self.store),
            Route.RESPONSES_INPUT_TOKENS: StatelessResponsesHandler(app, settings, self.store),
            Route.MODELS: ModelsDisclosureHandler(app, settings),
            Route.RETENTION_ERASE: ErasureHandler(self.store, inflight, conversations=self.conversations),
            Route.CONVERSATIONS: ConversationsHandler(self.conversations, settings),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(scope, receive, send)
            elif scope["type"] == "websocket" and is_responses_socket(scope["path"]):
                # Each response.create on the socket is served as a POST through __call__ itself.
                await ResponsesSocket(self, scope, receive, send, self.settings.max_body).run()
            else:
                await self.app(scope, receive, send)
            return
        # Refusals (an oversized head, two callers in one request) are answered here, before any
        # handler or the app sees the request, and still get their access-log line.
        refusal = self._head_limits.check(scope)
        tenant = ANONYMOUS
        if refusal is None:
            try:
                tenant = self._tenants.tenant_of(scope["headers"])
            except OpenAIError as error:
                refusal = error
        route, raw_id = classify(scope["method"], scope["path"], scope.get("raw_path"))
        record = AccessRecord(scope["method"], scope["path"], tenant)
        if self.settings.log_client_address and scope.get("client"):
            record.client = scope["client"][0]
        scope = tag_scope(scope, record)
        self.metrics.started()
        head_only = scope["method"] == "HEAD" and route in _SERVED_FOR_HEAD
        if head_only:
            send = without_body(send)
        exchange = Exchange(scope, receive, send, record, route, raw_id, self.settings.log_guard)
        keys = self._encryption.bind(scope["headers"]) if self._encryption is not None else None
        failed = False
        try:
            if refusal is not None:
                record.error = refusal.code
                await send_error(exchange.send, refusal)
            else:
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
            if keys is not None:
                keys.unbind()
                if keys.decrypt_failed:
                    record.error = "decrypt_failed"  # answered as missing; the log says why
            if head_only:
                record.bytes_out = 0  # counted as the handler sent it; the body was dropped on the way out
            emit(record)
            self.metrics.finished(route.value, record)

    async def readiness(self, *, timeout: float = 2.0) -> Readiness:
        """Whether the store can serve now (MongoDB reachable; memory store not full), for a host's probe;
        the answer also names the Responses backend in use."""
        return await readiness(self.store, timeout=timeout, responses_backend=self.responses_backend.describe())

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
                await self.conversations.close()
                await self.store.close()
            await send(message)

        await self.app(scope, lifespan_receive, lifespan_send)

    async def _start_store(self) -> str | None:
        if self.settings.policy != "zero":  # the zero policy stores nothing to encrypt
            on = self.settings.encryption != "off" and self._encryption is not None
            logger.log(logging.INFO if on else logging.WARNING, "%s", startup_line(self.settings))
        for line in startup_warnings(self.settings, os.environ):
            logger.warning("%s", line)
        try:
            await self.store.start()
            await self.conversations.start()
        except StoreConfigurationError as error:
            logger.error("retention store misconfigured: %s", error)
            return str(error)
        except StoreError as error:
            # Not fatal: the store is retried before its first use, and requests are served meanwhile
            # as RETENTION_STORE_FAILURE says.
            logger.warning("retention store unavailable at start-up (%s); will retry on first use", error.code)
        return None
