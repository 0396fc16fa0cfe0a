"""UpstreamProxy: the streaming forwarder behind ``retention-proxy``.

Every method, path and query string goes to the configured upstream over a pool of keep-alive
connections (``upstream_pool``) shared by every request. Bodies stream both ways as they come: a
request body that arrived whole goes out in the same write as the request head, one still arriving
is written on as each part comes (chunked, unless the client gave its length); each chunk read from
the upstream is sent on at once (no decompression, and an HTTP chunk from the upstream is one body
message to the client). Hop-by-hop headers are dropped both ways.

Failures are answered in OpenAI's shape and never carry upstream text, which could echo content:
502 ``upstream_unavailable`` when the upstream cannot be reached, 504 ``upstream_timeout`` when it is
silent for longer than the timeout before the response starts. Once the response has started the
status line is gone, so a later upstream failure re-raises: the ASGI server then drops the
connection and the client sees a truncated body, never a stream that looks complete.

A client that disconnects cancels the upstream exchange at once, which drops the upstream
connection, and an inference server stops generating when its client goes away.

Its own client on llhttp rather than aiohttp's (or httpx's): the forwarder sits on every request's
path, and per request aiohttp's client cost ~130 us of CPU against ~25 us for this one
(``benchmarks``, peers section), with the same parser uvicorn serves the client side with.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import quote_from_bytes, urlsplit

from .._types import Headers, Receive, Scope, Send
from ..errors import OpenAIError, UpstreamFailedMidResponse
from ..observability.upstream_errors import note_error
from ..settings import RetentionSettings
from .downstream import Body, Downstream
from .gc_tuning import tune_after_startup
from .upstream_connection import UpstreamConnection, UpstreamError, UpstreamSilent
from .upstream_pool import ConnectTimeout, PoolTimeout, UpstreamPool, UpstreamUnreachable
from .upstream_tls import upstream_ssl

logger = logging.getLogger("retention_middleware.proxy")

# RFC 9110 section 7.6.1, plus the obsolete "trailers" spelling. The request side also drops what
# this proxy sets itself: Host (the upstream's), the body's framing (Content-Length, chunked) and
# Expect (the ASGI server has already sent 100 Continue when the body was read).
_HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
     b"trailers", b"transfer-encoding", b"upgrade")
)  # fmt: skip
_REQUEST_DROP = _HOP_BY_HOP | {b"host", b"expect", b"content-length"}
_URL_SAFE = b"!#$%&'()*+,/:;=?@[]~"
# A request target goes out as the client sent it unless it has a byte HTTP/1.1 does not allow there.
_TARGET_UNSAFE = re.compile(rb"[^\x21-\x7e]")
# RFC 9110 9.2.2: a request these methods carry may be sent again when a kept-alive connection turns
# out to have been closed before any of the answer came (the upstream's idle timeout racing ours).
_IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))
# Methods whose request has a body by definition: without one they say so, with a length of 0.
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))

UNAVAILABLE = OpenAIError(
    502, "The upstream server could not be reached.", type="server_error", code="upstream_unavailable"
)
BAD_GATEWAY = OpenAIError(
    502, "The upstream server closed the connection without a response.", type="server_error",
    code="upstream_unavailable",
)  # fmt: skip
TIMEOUT = OpenAIError(504, "The upstream server did not answer in time.", type="server_error", code="upstream_timeout")
POOL_EXHAUSTED = OpenAIError(
    504, "Every connection to the upstream server stayed busy for too long.", type="server_error",
    code="upstream_pool_exhausted",
)  # fmt: skip


def filter_headers(headers: Sequence[tuple[bytes, bytes]], drop: frozenset[bytes]) -> Headers:
    """``headers`` without the names in ``drop`` nor any the ``Connection`` header lists, names in
    lower case (each lowered once: this runs twice per request)."""
    named = [(name.lower(), value) for name, value in headers]
    for name, value in named:
        if name == b"connection":
            drop = drop | {token.strip().lower() for token in value.split(b",")}
    return [(name, value) for name, value in named if name not in drop]


class UpstreamProxy:
    """ASGI app forwarding everything to one upstream, streaming both ways.

    Build it from ``RetentionSettings`` (``upstream``, ``upstream_timeout``,
    ``upstream_connect_timeout``, ``upstream_max_connections``) or with keywords, which win over
    the settings. The connection pool opens on lifespan startup or the first request, and closes on
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
        self._host = base.hostname or "127.0.0.1"
        self._port = base.port or (443 if base.scheme == "https" else 80)
        self._host_header = base.netloc.rsplit("@", 1)[-1].encode("idna")
        self._tls = upstream_ssl(self.settings) if base.scheme == "https" else None
        self._prefix = base.path.rstrip("/").encode("utf-8")
        self._pool: UpstreamPool | None = None

    def _open(self) -> UpstreamPool:
        if self._pool is None:
            s = self.settings
            read = s.upstream_timeout.total_seconds()
            self._pool = UpstreamPool(
                self._host, self._port, tls=self._tls, limit=s.upstream_max_connections,
                connect_timeout=s.upstream_connect_timeout.total_seconds(), pool_timeout=read, read_timeout=read,
            )  # fmt: skip
        return self._pool

    async def aclose(self) -> None:
        """Close the pool and its upstream connections; the next request opens a new one."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

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

    def _target(self, scope: Scope) -> bytes:
        raw = self._prefix + (scope.get("raw_path") or scope["path"].encode("utf-8"))
        if scope.get("query_string"):
            raw += b"?" + scope["query_string"]
        # The path goes out byte for byte as the client sent it (%2F stays %2F).
        return quote_from_bytes(raw, safe=_URL_SAFE).encode("ascii") if _TARGET_UNSAFE.search(raw) else raw

    def _head(self, scope: Scope, body: Body) -> bytes:
        method: str = scope["method"]
        parts = [method.encode("ascii"), b" ", self._target(scope), b" HTTP/1.1\r\nhost: ", self._host_header]
        for name, value in filter_headers(scope["headers"], _REQUEST_DROP):
            parts += (b"\r\n", name, b": ", value)
        if isinstance(body, bytes):
            parts.append(b"\r\ncontent-length: %d" % len(body))
        elif body is not None:
            declared = _declared_length(scope["headers"])
            parts.append(b"\r\ncontent-length: " + declared if declared else b"\r\ntransfer-encoding: chunked")
        elif method in _BODY_METHODS:
            parts.append(b"\r\ncontent-length: 0")
        parts.append(b"\r\n\r\n")
        return b"".join(parts)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = Downstream(receive, send)
        body = await client.body()
        if client.gone:
            return
        task = asyncio.current_task()
        if task is None:  # no asyncio ASGI server calls an app outside a task
            raise RuntimeError("UpstreamProxy must be called from an asyncio task")
        # A disconnect cancels this task wherever it waits: connecting, waiting for headers, or
        # between two chunks of a long generation.
        watcher = client.watch(scope, task)
        try:
            await self._relay(scope, body, client)
        except asyncio.CancelledError:
            # The disconnect's cancellation ends the exchange quietly; anyone else's propagates.
            if not client.cancelled or (sys.version_info >= (3, 11) and task.uncancel() > 0):
                raise
            if watcher is None:
                await client.note_disconnect()
        except Exception:
            # The client is gone (its upload was cut short): nobody is left to answer.
            if not client.gone:
                raise
        finally:
            client.finishing()
            if watcher is not None:
                watcher.cancel()

    async def _fail(self, scope: Scope, client: Downstream, error: OpenAIError, phase: str) -> None:
        # One content-free line per failed answer: which upstream (no path, no query) and when it failed.
        logger.warning("upstream %s: %s %s while %s", self.upstream, error.status, error.code, phase)
        note_error(scope, error.code or "upstream_unavailable")
        await client.answer_error(error)

    async def _connection(self, scope: Scope, client: Downstream, *, fresh: bool = False) -> UpstreamConnection | None:
        """A pooled connection, or None once the failure to get one has been answered."""
        try:
            return await self._open().acquire(fresh=fresh)
        except PoolTimeout:
            await self._fail(scope, client, POOL_EXHAUSTED, "waiting for a free pooled connection")
        except ConnectTimeout:
            await self._fail(scope, client, TIMEOUT, "connecting")
        except UpstreamUnreachable:
            await self._fail(scope, client, UNAVAILABLE, "connecting")
        except UpstreamError:  # the pool closed under the request (shutdown)
            await self._fail(scope, client, UNAVAILABLE, "connecting")
        return None

    async def _send_request(self, connection: UpstreamConnection, scope: Scope, body: Body) -> None:
        head = self._head(scope, body)
        if body is None or isinstance(body, bytes):
            connection.send(head, body, heading=scope["method"] == "HEAD")
            return
        connection.send(head, None, heading=False)
        await _upload(connection, body, chunked=_declared_length(scope["headers"]) is None)

    async def _relay(self, scope: Scope, body: Body, client: Downstream) -> None:
        connection = await self._connection(scope, client)
        if connection is None:
            return
        try:
            try:
                await self._send_request(connection, scope, body)
                await connection.head()
            except UpstreamError as error:
                retry = connection.reused and not connection.responded and not isinstance(error, UpstreamSilent)
                if not (retry and scope["method"] in _IDEMPOTENT and not isinstance(body, AsyncIterator)):
                    raise
                # A kept-alive connection the upstream had closed: once more, on a connection of its own.
                connection.abort()
                fresh = await self._connection(scope, client, fresh=True)
                if fresh is None:
                    return
                connection = fresh
                await self._send_request(connection, scope, body)
                await connection.head()
        except UpstreamSilent:
            connection.abort()
            await self._fail(scope, client, TIMEOUT, "waiting for the response headers")
            return
        except UpstreamError:
            connection.abort()
            if client.gone:
                return
            await self._fail(scope, client, BAD_GATEWAY, "waiting for the response headers")
            return
        except BaseException:
            connection.abort()
            raise
        try:
            last = await self._stream_answer(scope, connection, client)
        except BaseException:
            connection.abort()  # mid-body: it cannot be reused, and the upstream must see it go
            raise
        # Everything is read: the connection goes back to the pool before the last send, which may
        # take a while (a store write in the middleware) or fail (the client left).
        self._open().release(connection)
        client.finishing()
        # The last chunk (the whole body, for most answers) is sent as the last message itself,
        # rather than followed by an empty one: one message less through every layer, and one write
        # less (a chunked answer's terminator goes with it).
        await client.send({"type": "http.response.body", "body": last, "more_body": False})

    async def _stream_answer(self, scope: Scope, connection: UpstreamConnection, client: Downstream) -> bytes:
        """Send the head and every chunk but the last, and return the last once the body is complete."""
        status = connection.status
        if status >= 400:
            note_error(scope, "upstream_status")
        await client.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": filter_headers(connection.headers, _HOP_BY_HOP),
            }
        )
        # Each chunk goes on as it is read. The status is already sent, so an upstream failure from
        # here on can only be told by the middleware (an error event, or a dropped connection); one
        # line says what happened, and the traceback would say nothing more.
        try:
            while True:
                chunk = await connection.chunk()
                if connection.at_end:
                    break
                if chunk:
                    await client.send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as error:
            if client.gone:
                raise  # our own close of a request nobody waits for: nothing to tell
            code = "upstream_timeout" if isinstance(error, UpstreamSilent) else "upstream_disconnected"
            logger.warning("upstream %s: %s %s while reading the response body", self.upstream, status, code)
            note_error(scope, code)
            raise UpstreamFailedMidResponse(code) from None
        return chunk


def _declared_length(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"content-length":
            return value.strip()
    return None


async def _upload(connection: UpstreamConnection, body: AsyncIterator[bytes], *, chunked: bool) -> None:
    """A request body still arriving from the client, written on part by part as it comes."""
    async for part in body:
        if part:
            connection.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            await connection.drain()
    if chunked:
        connection.write(b"0\r\n\r\n")
