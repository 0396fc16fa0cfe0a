"""UpstreamConnection: one keep-alive HTTP/1.1 connection to the upstream, one exchange at a time.

An asyncio protocol around llhttp (``httptools``, the parser uvicorn already serves with): the
request goes out in one write (head and a whole body together), and the response is parsed as it
arrives into a status, raw headers and body chunks, each chunk handed on exactly as the upstream
framed it. Nothing is decompressed, re-framed or copied beyond what the parser hands over.

It is the forwarder's client, where aiohttp's was: per request that client built a URL model, a
request object, a response object, a stream reader, timer contexts and trace hooks, which measured
at ~130 us of CPU for a 1 KB chat answer (``benchmarks``, peers section); this costs a few tens.

Waits are bounded here, where the bytes arrive: ``read_timeout`` is the longest silence of the
upstream while a response is awaited or read (time the reader paused reading for backpressure does
not count). A failure is one of the exceptions below, which say only what happened, never what the
upstream sent.
"""

from __future__ import annotations

import asyncio
import select
from collections import deque
from typing import TYPE_CHECKING

import httptools

from .deadline import Deadline

if TYPE_CHECKING:
    from .upstream_pool import UpstreamPool

# Backpressure: past this many bytes read but not yet taken, reading pauses until they are taken.
_HIGH_WATER = 64 * 1024  # what aiohttp read ahead per connection (its read_bufsize)
# An answer's head is held whole until it is complete (httptools joins a header's pieces), so it is
# bounded: far above any inference server's few hundred bytes, far below what would hurt the process.
MAX_HEAD_BYTES = 256 * 1024
MAX_HEADERS = 1000


class UpstreamError(Exception):
    """The exchange failed; the subclass says how."""


class UpstreamClosed(UpstreamError):
    """The upstream closed the connection, or sent what is not HTTP/1.1, before the answer was complete."""


class UpstreamSilent(UpstreamError):
    """The upstream sent nothing for longer than the read timeout."""


class UpstreamConnection(asyncio.Protocol):
    """One pooled connection. ``send`` an exchange, then ``head`` and ``chunk`` until ``complete``."""

    __slots__ = (
        "_pool", "_loop", "_parser", "transport", "_waiter", "_chunks", "_buffered", "_paused",
        "_writable", "status", "headers", "_head_done", "complete", "_error", "_silence",
        "_heading", "_bodiless", "responded", "reused", "idle_since", "_delimited", "_keep_alive",
        "_head_bytes", "counted", "_fd",
    )  # fmt: skip

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self._fd = -1  # the socket's, to look for a close the loop has not run yet
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._writable: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._head_done = False
        self.complete = False
        """The whole response has arrived (it may not all have been taken yet); it stays set while the
        connection is idle, until ``send`` starts the next exchange."""
        self._error: UpstreamError | None = None
        self._silence = Deadline(self._loop, self._silent)
        self._heading = False  # the request in flight is a HEAD: its answer has no body
        self._bodiless = False
        self._delimited = True  # the body's end is framed (length or chunked), not the connection's close
        self._keep_alive = False  # llhttp's verdict, read while it still holds it (it resets after a message)
        self._head_bytes = 0  # bytes received while the current answer's head is incomplete
        self.responded = False
        """Some byte of the current response has arrived."""
        self.reused = False
        """The connection served an exchange before this one."""
        self.idle_since = 0.0
        self.counted = False
        """The pool counts it among its ``limit`` connections."""

    # -- the exchange ------------------------------------------------------------------------------

    def send(self, head: bytes, body: bytes | None, *, heading: bool) -> None:
        """Start an exchange: the request head, with a whole body in the same write."""
        assert self.transport is not None
        self._heading = heading
        self.complete = False
        self._silence.start(self._pool.read_timeout)
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)

    def write(self, data: bytes) -> None:
        """More of a request body that is still arriving."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the upstream reads the request body slower than it comes."""
        if self._writable is not None:
            await self._writable
        if self._error is not None and not self._head_done:
            raise self._error

    async def head(self) -> None:
        """Wait for the response's status and headers (``status``, ``headers``)."""
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def chunk(self) -> bytes:
        """The next piece of the body as the upstream framed it; ``b""`` once the body is complete."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks.popleft()
                self._buffered -= len(data)
                if self._paused and self._buffered < _HIGH_WATER // 4 and self.transport is not None:
                    self._paused = False
                    self._silence.start(self._pool.read_timeout)  # our own pause is not the upstream's silence
                    self.transport.resume_reading()
                return data
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()

    @property
    def at_end(self) -> bool:
        """Everything of the response has arrived and been taken."""
        return self.complete and not self._chunks

    def reusable(self) -> bool:
        # Not after a 5xx: servers often close the connection right after one without saying so
        # (uvicorn does after an app's exception, once it has logged it), and a request written on it
        # meanwhile is lost unanswered. One new connection per server error costs less.
        return (
            self.complete and not self._chunks and self._error is None and self.transport is not None
            and not self.transport.is_closing() and self._keep_alive and self.status < 500
        )  # fmt: skip

    def usable(self) -> bool:
        """Whether a kept-alive connection can take an exchange now. Besides the transport's own
        state, the socket must have nothing to read: an upstream that closes right after an answer
        (uvicorn does, after an app's exception) has its FIN already on the socket while the loop has
        not yet run the close, and a request written then would be lost (one ``select``, ~1 us)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if self._fd < 0:
            return True
        try:
            readable, _, _ = select.select((self._fd,), (), (), 0)
        except (OSError, ValueError):
            return False
        return not readable

    def reset(self) -> None:
        """Ready for the next exchange on the same connection."""
        self.status = 0
        self.headers = []
        self._head_done = False
        self.responded = False
        self._bodiless = False
        self._delimited = True
        self.reused = True
        self._keep_alive = False
        self._head_bytes = 0
        if self._heading:
            # llhttp cannot be told a response had no body; a fresh parser starts the next one clean.
            self._parser = httptools.HttpResponseParser(self)
        self._heading = False

    def close(self) -> None:
        self._silence.cancel()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now: the upstream sees it go, and stops generating."""
        self._silence.cancel()
        if self.transport is not None:
            self.transport.abort()

    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None and not self.complete:
            self._error = error
        self._silence.stop()
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- the read timeout ------------------------------------------------------------------------------

    def _silent(self) -> None:
        if self.complete or self._error is not None:
            return
        if self._paused:
            self._silence.start(self._pool.read_timeout)  # we stopped reading: the upstream is not silent
            return
        self._fail(UpstreamSilent())
        self.abort()

    # -- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1

    def data_received(self, data: bytes) -> None:
        self._silence.start(self._pool.read_timeout)
        self.responded = True
        if not self._head_done:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(UpstreamClosed())
                self.abort()
                return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):  # the latter: a 101 nobody asked for
            self._fail(UpstreamClosed())
            self.abort()
        if self._bodiless and not self.complete and self._head_done:
            self._complete()

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost says what that meant

    def connection_lost(self, exc: Exception | None) -> None:
        transport, self.transport = self.transport, None
        del transport
        if self._head_done and not self._delimited and not self.complete:
            self._complete()  # a body without length or chunks ends with the connection (RFC 9112 6.3)
        self._fail(UpstreamClosed())
        self._pool.lost(self)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- parser callbacks ------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            # An answer to no request (after the answer in the same read, or on an idle connection):
            # kept, the connection would hand it to the next request. The parser error drops it.
            raise UpstreamClosed()

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head_done:  # after the head, these are a chunked body's trailers, which are not passed on
            self.headers.append((name, value))
            if len(self.headers) > MAX_HEADERS:
                raise UpstreamClosed()  # stops the parser: a parser error, the connection is dropped

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            self.headers = []  # an interim answer (103 Early Hints): the real one follows
            return
        self.status = status
        self._head_done = True
        self._keep_alive = self._parser.should_keep_alive()
        if self._heading:
            self._bodiless = True
        elif status not in (204, 304):
            self._delimited = any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers)
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._head_done and not self._bodiless:
            self._keep_alive = self._parser.should_keep_alive()
            self._complete()

    def _complete(self) -> None:
        self.complete = True
        self._silence.stop()
        self._wake()
