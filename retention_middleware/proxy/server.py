"""The proxy's HTTP/1.1 server protocol: uvicorn's httptools protocol with every wait bounded.

uvicorn bounds none of these by itself (measured with uvicorn 0.54 and httptools 0.9): a request head
of any size is buffered (a 64 MiB header, 100,000 headers); a client sending its head at one byte a
second is waited for forever; a body that stops arriving, a chunked body that never ends or a short
``Content-Length`` keep the request open forever; and a ``POST`` carrying ``Connection: Upgrade`` with
``Upgrade: h2c`` (what ``curl --http2`` sends) or ``websocket`` loses its body, because llhttp takes
everything after the head for the new protocol. uvicorn's h11 protocol caps the head
(``h11_max_incomplete_event_size``) but has the same timeouts missing and is slower, so the proxy
keeps httptools and adds, per connection:

- a head limit (``max_header_bytes``, ``max_headers``): 431 as soon as the head passes it, before the
  rest is read;
- a head timeout (``header_timeout``) from the connection's or the request's first byte: 408, closed;
- a body timeout (``body_timeout``): the longest silence while the body is read (time the server
  itself paused reading does not count): 408 if the answer has not started, closed in any case;
- a connection cap (``max_connections``): a connection beyond it is answered 503 and closed;
- an ``Upgrade`` other than a WebSocket handshake (a ``GET``) is ignored, as RFC 9110 allows: the
  request is parsed and served as plain HTTP/1.1.

The idle keep-alive timeout is uvicorn's own ``timeout_keep_alive`` (``idle_timeout``). Every wait is a
``Deadline`` (``proxy/deadline.py``), so a request arms no loop timer of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import OpenAIError
from ..limits.headers import HEADER_LINE_OVERHEAD, headers_too_large
from ..settings import RetentionSettings
from .deadline import Deadline
from .disconnect_signal import DISCONNECT_SIGNAL, DisconnectSignal
from .head_write import HeadJoiningTransport
from .refusals import TIMED_OUT, over_capacity, response_bytes

# After a refusal the client may still be sending (the rest of a huge head, a body). Closing with
# unread bytes makes the kernel send a reset, which can destroy the answer before the client reads
# it; so the write side is shut, and what still arrives is read and dropped for a moment first.
_LINGER_SECONDS = 2.0


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing; httptools re-raises it as a callback error."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One client connection. Limits are class attributes, set by ``protocol_class``."""

    max_header_bytes = 32 * 1024
    max_headers = 200
    header_timeout = 10.0
    body_timeout = 60.0
    max_connections = 1000
    idle_timeout = 75.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's keep-alive timer, in seconds; its Config takes whole seconds only.
        self.timeout_keep_alive = self.idle_timeout  # type: ignore[assignment]
        self._reading_head = True
        self._received_of_head = 0  # bytes received while the head was incomplete (a lower bound)
        self._head_size = 0  # what the parser has reported of the head: target and header lines
        self._header_count = 0
        # Deadlines rather than a loop timer per request and wait (proxy/deadline.py).
        self._head_wait = Deadline(self.loop, self._head_timed_out)
        self._body_wait = Deadline(self.loop, self._body_timed_out)
        self._idle_wait = Deadline(self.loop, self.timeout_keep_alive_handler)
        self._skip_framing_head = False  # parsing the synthetic head of an ignored Upgrade
        self._head_too_large = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._client_gone: DisconnectSignal | None = None

    # -- connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            # Answered, not dropped: the client learns to retry instead of seeing a reset.
            self.app = over_capacity
        self._head_wait.start(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)
        cycle = self.cycle
        if self._client_gone is not None and cycle is not None and cycle.disconnected:
            self._client_gone.fire()  # after uvicorn's own: receive() now answers http.disconnect

    def data_received(self, data: bytes) -> None:
        if self._linger_timer is not None:
            return  # refused: dropped unread, never buffered
        self._unset_keepalive_if_required()
        if self._reading_head:
            self._received_of_head += len(data)
            if self._head_wait.due is None:
                self._head_wait.start(self.header_timeout)
        self._feed(data)
        # Still inside the head after this chunk: every byte counted belongs to it.
        if self._reading_head and self._received_of_head > self.max_header_bytes and not self._finished():
            self._refuse(headers_too_large(self.max_header_bytes, self.max_headers))

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._continue_without_upgrade(data[upgrade.args[0] :])
        except (httptools.HttpParserError, _HeadTooLarge):
            if self._head_too_large:
                self._refuse(headers_too_large(self.max_header_bytes, self.max_headers))
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")

    # -- Upgrade requests that are not WebSocket handshakes ---------------------------------------

    def _should_upgrade(self) -> bool:
        # A WebSocket handshake is a GET (RFC 6455); a POST asking to upgrade is served as HTTP.
        return super()._should_upgrade() and self.scope.get("method") == "GET"

    def _declared_framing(self) -> bytes | None:
        framing = None
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return b"transfer-encoding: " + value
            if name == b"content-length" and value.strip() not in (b"", b"0"):
                framing = b"content-length: " + value
        return framing

    def _continue_without_upgrade(self, rest: bytes) -> None:
        # llhttp stopped at the end of the head and reported the message complete without its body.
        # A fresh parser takes the rest: first a synthetic head carrying only the request's framing
        # (so it reads the body exactly as declared), then any requests that follow.
        framing = self._declared_framing()
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        if framing is None:
            self._feed(rest)
            return
        self._skip_framing_head = True
        self._feed(b"POST / HTTP/1.1\r\n" + framing + b"\r\n\r\n" + rest)

    # -- parser callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._skip_framing_head:
            return
        self._head_size = 0
        self._header_count = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._skip_framing_head:
            return
        self._head_size += len(url)
        if self._head_size > self.max_header_bytes:
            self._head_too_large = True
            raise _HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._skip_framing_head:
            return
        self._head_size += len(name) + len(value) + HEADER_LINE_OVERHEAD
        self._header_count += 1
        if self._head_size > self.max_header_bytes or self._header_count > self.max_headers:
            self._head_too_large = True
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._skip_framing_head:
            self._skip_framing_head = False
            return
        self._reading_head = False
        self._received_of_head = 0
        self._head_wait.stop()
        super().on_headers_complete()
        upgrading = self.parser.should_upgrade() and self._should_upgrade()  # the WebSocket protocol takes over
        if not upgrading and not self._finished():
            self._body_wait.start(self.body_timeout)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        # The head goes out with the first body write (``head_write``): one send, not two.
        cycle.transport = HeadJoiningTransport(self.transport, self.loop)
        # The app runs alone on the connection (a pipelined request waits for it), so the signal of
        # the cycle started last is the one a lost connection fires.
        self._client_gone = DisconnectSignal()
        cycle.scope.setdefault("extensions", {})[DISCONNECT_SIGNAL] = self._client_gone
        super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        self._body_wait.start(self.body_timeout)  # the longest silence, not the whole upload
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self.parser.should_upgrade() and not self._should_upgrade() and self._declared_framing() is not None:
            return  # the body is still to come: _continue_without_upgrade parses it
        self._body_wait.stop()
        self._reading_head = True
        super().on_message_complete()

    # -- uvicorn's keep-alive wait, as a deadline --------------------------------------------------

    def _unset_keepalive_if_required(self) -> None:
        self._idle_wait.stop()

    def on_response_complete(self) -> None:
        # uvicorn's own, but for the keep-alive wait: a deadline moved on instead of a timer per answer.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_wait.stop()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_wait.start(self.timeout_keep_alive)

    # -- timeouts and refusals -------------------------------------------------------------------

    def _head_timed_out(self) -> None:
        if self._answering():
            # A pipelined head waits for the answer before it; the clock starts after.
            self._head_wait.start(self.header_timeout)
            return
        if self._reading_head and not self._finished():
            if self._received_of_head or self._head_size:
                self._refuse(TIMED_OUT)
            else:
                self.transport.close()  # connected and said nothing: there is no request to answer

    def _body_timed_out(self) -> None:
        if self._finished():
            return
        if self.flow.read_paused:
            # The server paused reading because the app is behind: the silence is not the client's.
            self._body_wait.start(self.body_timeout)
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            cycle.disconnected = True  # the app sees the client gone at once; its own answer is dropped
            cycle.message_event.set()
            self._refuse(TIMED_OUT)
        else:
            self.transport.close()

    def _answering(self) -> bool:
        """Whether an earlier request's answer is on the wire right now (pipelining)."""
        cycle = self.cycle
        return cycle is not None and cycle.response_started and not cycle.response_complete and not cycle.disconnected

    def _finished(self) -> bool:
        """Closed or closing, or refused and lingering: nothing more is parsed or answered."""
        return self._linger_timer is not None or self.transport.is_closing()

    def _refuse(self, error: OpenAIError) -> None:
        """Answer with ``error`` directly on the transport and close the connection."""
        self._cancel_timers()
        if self._answering():
            self.transport.close()  # the wire carries another request's answer: no room for ours
            return
        self.transport.write(response_bytes(error, self.server_state.default_headers))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(_LINGER_SECONDS, self.transport.close)

    def _cancel_timers(self) -> None:
        self._head_wait.cancel()
        self._body_wait.cancel()
        self._idle_wait.cancel()


def protocol_class(settings: RetentionSettings) -> type[BoundedHttpToolsProtocol]:
    """A protocol class carrying ``settings``' limits, for ``uvicorn.Config(http=...)``."""
    limits = {
        "max_header_bytes": settings.max_header_bytes,
        "max_headers": settings.max_headers,
        "header_timeout": settings.header_timeout.total_seconds(),
        "body_timeout": settings.body_timeout.total_seconds(),
        "max_connections": settings.max_connections,
        "idle_timeout": settings.idle_timeout.total_seconds(),
    }
    return type("ConfiguredHttpToolsProtocol", (BoundedHttpToolsProtocol,), limits)


WORKER_PROTOCOL = "retention_middleware.proxy.server:WorkerHttpToolsProtocol"
"""What ``--workers`` hands uvicorn: each worker is a fresh interpreter, which cannot be sent a class
made at run time, so it imports this name and builds the class from its ``RETENTION_*`` environment."""


def __getattr__(name: str) -> Any:
    if name == "WorkerHttpToolsProtocol":
        return protocol_class(RetentionSettings.from_env())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
