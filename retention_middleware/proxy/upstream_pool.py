"""UpstreamPool: at most ``limit`` keep-alive connections to one upstream, shared by every request.

``acquire`` hands out an idle connection (the one used last, so that spare ones age out), opens a
new one while fewer than ``limit`` exist, or waits for one to come back, for at most
``pool_timeout``. A connection left idle for ``idle_timeout`` is closed, and one the upstream closes
while idle is dropped at once (its end is read like any other byte).

The pool remembers nothing about requests: a connection carries no state from one exchange to the
next but its socket, so one tenant's exchange cannot leave anything for another's.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

from .upstream_connection import UpstreamConnection, UpstreamError


class UpstreamUnreachable(UpstreamError):
    """The upstream refused the connection, or its name or address could not be reached."""


class ConnectTimeout(UpstreamError):
    """Opening the connection (TCP, and TLS for https) took longer than the connect timeout."""


class PoolTimeout(UpstreamError):
    """Every connection stayed busy for longer than the pool timeout."""


class PoolClosed(UpstreamError):
    """The pool was closed while a request waited for a connection."""


class UpstreamPool:
    """Connections to ``host:port``, over TLS when ``tls`` is given."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        limit: int,
        connect_timeout: float,
        pool_timeout: float,
        read_timeout: float,
        idle_timeout: float = 15.0,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._host = host
        self._port = port
        self._tls = tls
        self.limit = limit
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self.read_timeout = read_timeout
        self._idle_timeout = idle_timeout
        self._idle: list[UpstreamConnection] = []
        self._open = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[UpstreamConnection | None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    async def acquire(self, *, fresh: bool = False) -> UpstreamConnection:
        """A connection for one exchange; ``fresh``: not one kept alive (a retry after a stale one)."""
        while True:
            idle = self._idle
            while idle and not fresh:
                connection = idle.pop()
                if connection.usable():
                    return connection
                connection.abort()
            if self._open < self.limit:
                return await self._connect()
            handed = await self._wait_for_one()
            if handed is not None:
                if handed.usable():
                    return handed
                handed.abort()

    def release(self, connection: UpstreamConnection) -> None:
        """Take back ``connection`` after its exchange: kept if it can serve another, else closed."""
        if self._closed or not connection.reusable():
            if connection.complete:
                connection.close()
            else:
                connection.abort()  # mid-answer: the upstream must see it go
            return
        connection.reset()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        connection.idle_since = self.loop.time()
        self._idle.append(connection)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self._idle_timeout, self._close_idle)

    def lost(self, connection: UpstreamConnection) -> None:
        """``connection`` closed (either side): its place is free."""
        if not connection.counted:
            return  # opened after its request gave up (see _connect): its place was freed then
        connection.counted = False
        self._open -= 1
        try:
            self._idle.remove(connection)
        except ValueError:
            pass
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # a place is free: the waiter opens a connection
                return

    async def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolClosed())
        self._waiters.clear()

    async def _connect(self) -> UpstreamConnection:
        self._open += 1
        try:
            opening = self.loop.create_connection(
                lambda: UpstreamConnection(self), self._host, self._port, ssl=self._tls,
                server_hostname=self._host if self._tls is not None else None,
            )  # fmt: skip
            # A connect that completes just as its request is cancelled may still hand asyncio a
            # connection nobody receives: it is not counted (its place is freed below) and it goes
            # when the upstream closes it.
            _, connection = await asyncio.wait_for(opening, self._connect_timeout)
        except asyncio.TimeoutError:
            self._open -= 1
            raise ConnectTimeout() from None
        except (OSError, ssl.SSLError):
            self._open -= 1
            raise UpstreamUnreachable() from None
        except BaseException:
            self._open -= 1
            raise
        connection.counted = True
        return connection

    async def _wait_for_one(self) -> UpstreamConnection | None:
        waiter: asyncio.Future[UpstreamConnection | None] = self.loop.create_future()
        self._waiters.append(waiter)
        timer = self.loop.call_later(self._pool_timeout, _time_out, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Handed a connection in the same step it was cancelled: give it to the next in line.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is not None:
                    self.release(handed)
            raise
        finally:
            timer.cancel()

    def _close_idle(self) -> None:
        self._sweep = None
        now = self.loop.time()
        keep = []
        for connection in self._idle:
            if now - connection.idle_since >= self._idle_timeout:
                connection.close()
            else:
                keep.append(connection)
        self._idle = keep
        if keep:
            self._sweep = self.loop.call_later(self._idle_timeout, self._close_idle)


def _time_out(waiter: asyncio.Future[UpstreamConnection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(PoolTimeout())
