"""UpstreamProxy: the streaming httpx forwarder behind ``retention-proxy``.

Every method, path and query string goes to the configured upstream over one shared
``httpx.AsyncClient``. Bodies stream both ways as they come: the request body is fed to httpx from
``receive`` by an async generator, and each chunk httpx reads from the upstream is sent on at once
(``aiter_raw``: no decompression, no re-chunking). Hop-by-hop headers are dropped both ways.

Failures are answered in OpenAI's shape and never carry upstream text, which could echo content:
502 ``upstream_unavailable`` when the upstream cannot be reached, 504 ``upstream_timeout`` when it is
silent for longer than the timeout before the response starts. Once the response has started the
status line is gone, so a later upstream failure re-raises: the ASGI server then drops the
connection and the client sees a truncated body, never a stream that looks complete.

A client that disconnects cancels the upstream exchange at once, which closes the upstream
connection, and an inference server stops generating when its client goes away.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import quote_from_bytes

import anyio
import httpx

from ._types import Headers, Receive, Scope, Send
from .errors import OpenAIError, send_error
from .settings import RetentionSettings

# RFC 9110 section 7.6.1, plus the obsolete "trailers" spelling. The request side also drops what
# this proxy answers itself: Host (rewritten by httpx to the upstream's) and Expect (the ASGI
# server has already sent 100 Continue when the body was read).
_HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
     b"trailers", b"transfer-encoding", b"upgrade")
)  # fmt: skip
_REQUEST_DROP = _HOP_BY_HOP | {b"host", b"expect"}
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"

UNAVAILABLE = OpenAIError(
    502, "The upstream server could not be reached.", type="server_error", code="upstream_unavailable"
)
BAD_GATEWAY = OpenAIError(
    502, "The upstream server closed the connection without a response.", type="server_error",
    code="upstream_unavailable",
)  # fmt: skip
TIMEOUT = OpenAIError(504, "The upstream server did not answer in time.", type="server_error", code="upstream_timeout")


def filter_headers(headers: Headers, drop: frozenset[bytes]) -> Headers:
    """``headers`` without the names in ``drop`` nor any the ``Connection`` header lists."""
    for name, value in headers:
        if name.lower() == b"connection":
            drop = drop | {token.strip().lower() for token in value.split(b",")}
    return [(name.lower(), value) for name, value in headers if name.lower() not in drop]


class _ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


class _Exchange:
    """One forwarded request: the state that must not live on the shared proxy."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self.receive = receive
        self.send = send
        self.body_done = anyio.Event()
        self.client_gone = False

    async def first_body(self) -> tuple[bytes, bool]:
        message = await self.receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        more = bool(message.get("more_body", False))
        if not more:
            self.body_done.set()
        return message.get("body", b""), more

    async def rest_of_body(self, first: bytes) -> AsyncIterator[bytes]:
        """The request body as it arrives, each ``http.request`` message passed on as it comes."""
        if first:
            yield first
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            if message.get("body"):
                yield message["body"]
            if not message.get("more_body", False):
                self.body_done.set()
                return

    async def watch_disconnect(self, scope: anyio.CancelScope) -> None:
        # receive() belongs to the body generator until the body is complete; after that the
        # only message left to come is http.disconnect.
        await self.body_done.wait()
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.client_gone = True
        scope.cancel()


class UpstreamProxy:
    """ASGI app forwarding everything to one upstream, streaming both ways.

    Build it from ``RetentionSettings`` (``upstream``, ``upstream_timeout``,
    ``upstream_connect_timeout``, ``upstream_max_connections``) or with keywords, which win over
    the settings. ``transport`` replaces httpx's network transport (tests, unix sockets). The
    client opens on lifespan startup or the first request and closes on lifespan shutdown or
    ``aclose()``.
    """

    def __init__(
        self,
        settings: RetentionSettings | None = None,
        *,
        upstream: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_connections: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        overrides: dict[str, Any] = {}
        if upstream is not None:
            overrides["upstream"] = upstream
        if timeout is not None:
            overrides["upstream_timeout"] = timedelta(seconds=timeout)
        if connect_timeout is not None:
            overrides["upstream_connect_timeout"] = timedelta(seconds=connect_timeout)
        if max_connections is not None:
            overrides["upstream_max_connections"] = max_connections
        # replace() runs the settings' own validation on the overrides.
        self.settings = dataclasses.replace(settings or RetentionSettings(), **overrides)
        base = httpx.URL(self.settings.upstream)
        self.upstream = str(base.copy_with(raw_path=b"", query=None, fragment=None)).rstrip("/")
        self._prefix = base.raw_path.rstrip(b"/")
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _open(self) -> httpx.AsyncClient:
        if self._client is None:
            s = self.settings
            read = s.upstream_timeout.total_seconds()
            connections = s.upstream_max_connections
            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=httpx.Timeout(read, connect=s.upstream_connect_timeout.total_seconds()),
                limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
                # No proxies or netrc from the environment, no redirects followed, and no cookie
                # jar: the client is shared by every tenant, so it must not remember anything.
                trust_env=False,
                follow_redirects=False,
                cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            )
        return self._client

    async def aclose(self) -> None:
        """Close the shared client and its upstream connections; the next request reopens it."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._forward(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _url(self, scope: Scope) -> str:
        raw = self._prefix + (scope.get("raw_path") or scope["path"].encode("utf-8"))
        if scope.get("query_string"):
            raw += b"?" + scope["query_string"]
        path = raw.decode("ascii") if raw.isascii() else quote_from_bytes(raw, safe=_URL_SAFE)
        return self.upstream + path

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = _Exchange(receive, send)
        try:
            first, more = await exchange.first_body()
        except _ClientGone:
            return
        request = httpx.Request(
            scope["method"],
            self._url(scope),
            headers=filter_headers(scope["headers"], _REQUEST_DROP),
            # A body that came whole goes with its length; otherwise it streams as it arrives.
            content=exchange.rest_of_body(first) if more else first,
        )
        failure: Exception | None = None
        # The task group lets the disconnect watcher cancel the exchange wherever it waits:
        # connecting, waiting for headers, or between two chunks of a long generation.
        async with anyio.create_task_group() as group:
            group.start_soon(exchange.watch_disconnect, group.cancel_scope)
            try:
                await self._exchange(request, exchange)
            except Exception as exc:
                # Raised after the group, so callers see the exception itself, not a group.
                failure = exc
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _exchange(self, request: httpx.Request, exchange: _Exchange) -> None:
        try:
            response = await self._open().send(request, stream=True)
        except _ClientGone:
            return
        except httpx.TimeoutException:
            await send_error(exchange.send, TIMEOUT)
            return
        except httpx.ConnectError:
            await send_error(exchange.send, UNAVAILABLE)
            return
        except httpx.TransportError:
            await send_error(exchange.send, BAD_GATEWAY)
            return
        try:
            await exchange.send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": filter_headers(response.headers.raw, _HOP_BY_HOP),
                }
            )
            if response.is_stream_consumed:
                # A transport that answers with a whole body (httpx.MockTransport) has nothing to stream.
                await exchange.send({"type": "http.response.body", "body": response.content})
                return
            # Each chunk goes on as httpx reads it. An upstream failure from here on propagates:
            # the status is already sent, so only a dropped connection can tell the client.
            async for chunk in response.aiter_raw():
                if chunk:
                    await exchange.send({"type": "http.response.body", "body": chunk, "more_body": True})
            await exchange.send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()
