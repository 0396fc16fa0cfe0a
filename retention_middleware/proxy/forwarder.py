"""UpstreamProxy: the streaming aiohttp forwarder behind ``retention-proxy``.

Every method, path and query string goes to the configured upstream over one shared
``aiohttp.ClientSession``. Bodies stream both ways as they come: the request body is fed to aiohttp
from ``receive`` by an async generator, and each chunk aiohttp reads from the upstream is sent on at
once (no decompression, and an HTTP chunk from the upstream is one body message to the client).
Hop-by-hop headers are dropped both ways.

Failures are answered in OpenAI's shape and never carry upstream text, which could echo content:
502 ``upstream_unavailable`` when the upstream cannot be reached, 504 ``upstream_timeout`` when it is
silent for longer than the timeout before the response starts. Once the response has started the
status line is gone, so a later upstream failure re-raises: the ASGI server then drops the
connection and the client sees a truncated body, never a stream that looks complete.

A client that disconnects cancels the upstream exchange at once, which closes the upstream
connection, and an inference server stops generating when its client goes away.

aiohttp rather than httpx because the forwarder sits on every request's path: aiohttp writes the
request head and a whole body in one socket write and skips httpx's per-request cookie and URL-model
work, and the disconnect watcher is a plain asyncio task rather than an anyio task group. Together
that measured at less than half the latency the httpx forwarder added (``benchmarks/proxy_latency.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import quote_from_bytes, urlsplit

import aiohttp
from yarl import URL

from .._types import Headers, Receive, Scope, Send
from ..errors import OpenAIError, UpstreamFailedMidResponse
from ..observability.upstream_errors import note_error
from ..settings import RetentionSettings
from .downstream import Body, Downstream
from .gc_tuning import tune_after_startup
from .upstream_tls import upstream_ssl

logger = logging.getLogger("retention_middleware.proxy")

# RFC 9110 section 7.6.1, plus the obsolete "trailers" spelling. The request side also drops what
# this proxy answers itself: Host (set by aiohttp to the upstream's) and Expect (the ASGI server
# has already sent 100 Continue when the body was read).
_HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
     b"trailers", b"transfer-encoding", b"upgrade")
)  # fmt: skip
_REQUEST_DROP = _HOP_BY_HOP | {b"host", b"expect"}
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"
# Headers aiohttp would add of its own; the client's own, if it sent them, go through unchanged.
_NO_DEFAULTS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

UNAVAILABLE = OpenAIError(
    502, "The upstream server could not be reached.", type="server_error", code="upstream_unavailable"
)
BAD_GATEWAY = OpenAIError(
    502, "The upstream server closed the connection without a response.", type="server_error",
    code="upstream_unavailable",
)  # fmt: skip
logger = logging.getLogger("retention_middleware.proxy")

TIMEOUT = OpenAIError(504, "The upstream server did not answer in time.", type="server_error", code="upstream_timeout")
POOL_EXHAUSTED = OpenAIError(
    504, "Every connection to the upstream server stayed busy for too long.", type="server_error",
    code="upstream_pool_exhausted",
)  # fmt: skip


def filter_headers(headers: Sequence[tuple[bytes, bytes]], drop: frozenset[bytes]) -> Headers:
    """``headers`` without the names in ``drop`` nor any the ``Connection`` header lists."""
    for name, value in headers:
        if name.lower() == b"connection":
            drop = drop | {token.strip().lower() for token in value.split(b",")}
    return [(name.lower(), value) for name, value in headers if name.lower() not in drop]


class UpstreamProxy:
    """ASGI app forwarding everything to one upstream, streaming both ways.

    Build it from ``RetentionSettings`` (``upstream``, ``upstream_timeout``,
    ``upstream_connect_timeout``, ``upstream_max_connections``) or with keywords, which win over
    the settings. The client session opens on lifespan startup or the first request, and closes on
    lifespan shutdown or ``aclose()``.
    """

    def __init__(
        self,
        settings: RetentionSettings | None = None,
        *,
        upstream: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_connections: int | None = None,
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
        base = urlsplit(self.settings.upstream)
        self.upstream = f"{base.scheme}://{base.netloc}"
        self._prefix = base.path.rstrip("/").encode("utf-8")
        self._session: aiohttp.ClientSession | None = None
        self._holding = 0  # exchanges holding (or waiting for) a pooled upstream connection

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            s = self.settings
            read = s.upstream_timeout.total_seconds()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=s.upstream_max_connections, ssl=upstream_ssl(s)),
                # connect: waiting for a free pooled connection and opening one; sock_read: silence
                # between two reads of the response, headers included.
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=read, sock_connect=s.upstream_connect_timeout.total_seconds(), sock_read=read
                ),
                # No proxies or netrc from the environment and no cookie jar: the session is shared
                # by every tenant, so it must not remember anything.
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=_NO_DEFAULTS,
            )
        return self._session

    async def aclose(self) -> None:
        """Close the shared session and its upstream connections; the next request reopens it."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

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
                tune_after_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _url(self, scope: Scope) -> URL:
        raw = self._prefix + (scope.get("raw_path") or scope["path"].encode("utf-8"))
        if scope.get("query_string"):
            raw += b"?" + scope["query_string"]
        path = raw.decode("ascii") if raw.isascii() else quote_from_bytes(raw, safe=_URL_SAFE)
        # encoded: the path goes out byte for byte as the client sent it (%2F stays %2F).
        return URL(self.upstream + path, encoded=True)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = Downstream(receive, send)
        body = await client.body()
        if client.gone:
            return
        task = asyncio.current_task()
        if task is None:  # no asyncio ASGI server calls an app outside a task
            raise RuntimeError("UpstreamProxy must be called from an asyncio task")
        # The watcher cancels this task wherever it waits: connecting, waiting for headers, or
        # between two chunks of a long generation.
        watcher = asyncio.get_running_loop().create_task(client.watch_disconnect(task))
        try:
            await self._exchange(scope, body, client)
        except asyncio.CancelledError:
            # The watcher's cancellation ends the exchange quietly; anyone else's propagates.
            if not client.cancelled or (sys.version_info >= (3, 11) and task.uncancel() > 0):
                raise
        except Exception:
            # The client is gone (its upload was cut short): nobody is left to answer.
            if not client.gone:
                raise
        finally:
            client.finishing()
            watcher.cancel()

    async def _exchange(self, scope: Scope, body: Body, client: Downstream) -> None:
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in filter_headers(scope["headers"], _REQUEST_DROP)
        ]
        self._holding += 1
        try:
            await self._relay(scope, headers, body, client)
        finally:
            self._holding -= 1

    async def _fail(self, scope: Scope, client: Downstream, error: OpenAIError, phase: str) -> None:
        # One content-free line per failed answer: which upstream (no path, no query) and when it failed.
        logger.warning("upstream %s: %s %s while %s", self.upstream, error.status, error.code, phase)
        note_error(scope, error.code or "upstream_unavailable")
        await client.answer_error(error)

    async def _relay(self, scope: Scope, headers: list[tuple[str, str]], body: Body, client: Downstream) -> None:
        try:
            response = await self._open().request(
                scope["method"], self._url(scope), headers=headers, data=body, allow_redirects=False
            )
        except aiohttp.ConnectionTimeoutError:
            # aiohttp's connect timeout covers the wait for a free pooled connection too. With every
            # other connection held by a request in flight, the wait was for the pool, not the upstream.
            if self._holding - 1 >= self.settings.upstream_max_connections:
                await self._fail(scope, client, POOL_EXHAUSTED, "waiting for a free pooled connection")
            else:
                await self._fail(scope, client, TIMEOUT, "connecting")
            return
        except asyncio.TimeoutError:  # aiohttp's other timeouts: silence before the response headers
            await self._fail(scope, client, TIMEOUT, "waiting for the response headers")
            return
        except aiohttp.ClientConnectorError:
            await self._fail(scope, client, UNAVAILABLE, "connecting")
            return
        except aiohttp.ClientError:
            if client.gone:
                return
            await self._fail(scope, client, BAD_GATEWAY, "waiting for the response headers")
            return
        if response.status >= 400:
            note_error(scope, "upstream_status")
        complete = False
        try:
            await client.send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": filter_headers(response.raw_headers, _HOP_BY_HOP),
                }
            )
            # Each chunk goes on as aiohttp reads it. The status is already sent, so an upstream
            # failure from here on can only be told by the middleware (an error event, or a dropped
            # connection); one line says what happened, and the traceback would say nothing more.
            content = response.content
            ended = False
            try:
                async for chunk, _ in content.iter_chunks():
                    if not chunk:
                        continue
                    # The last chunk (the whole body, for most answers) is sent as the last message
                    # itself, rather than followed by an empty one: one message less through every
                    # layer, and one write less (a chunked answer's terminator goes with it).
                    ended = content.at_eof()
                    if ended:
                        complete = True
                        client.finishing()
                    await client.send({"type": "http.response.body", "body": chunk, "more_body": not ended})
                    if ended:
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                if client.gone:
                    raise  # our own close of a request nobody waits for: nothing to tell
                code = "upstream_timeout" if isinstance(error, asyncio.TimeoutError) else "upstream_disconnected"
                logger.warning("upstream %s: %s %s while reading the response body", self.upstream,
                               response.status, code)  # fmt: skip
                note_error(scope, code)
                raise UpstreamFailedMidResponse(code) from None
            if not ended:
                complete = True
                client.finishing()
                await client.send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if complete:
                response.release()  # the connection goes back to the pool
            else:
                response.close()  # mid-body: the connection cannot be reused, and the upstream must see it go
