"""Run an ASGI app under uvicorn on a free loopback port, in a background thread, for tests.

    with serve(app) as base_url:            # sync tests, or async tests that close their clients
        ...
    async with aserve(app) as base_url:     # async tests: start/stop off the event loop
        ...

The listening socket is bound here (port 0) and handed to uvicorn, so there is no race for a port.
uvicorn runs with its own event loop in a daemon thread, ``log_config=None`` (the process's logging
set-up is left alone; records still propagate to pytest's capture) and no access log. Leaving the
block stops the server (lifespan shutdown included), joins the thread and closes the socket; a
server that fails to start or to stop raises instead of leaking.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import uvicorn

LOOPBACK = "127.0.0.1"


def unused_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (for "upstream down" tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerThread:
    """One uvicorn server in a background thread; ``start()`` / ``stop()`` or use ``serve``.

    ``config`` goes to ``uvicorn.Config`` and overrides the test defaults below.
    """

    def __init__(self, app: Any, *, host: str = LOOPBACK, **config: Any) -> None:
        # IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (see retention_middleware.proxy.cli).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.bind((host, 0))
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self.base_url = f"http://{host}:{self.port}"
        options: dict[str, Any] = {
            "log_config": None,
            "access_log": False,
            "lifespan": "auto",
            "ws": "none",
            "http": "h11",
            "loop": "asyncio",
            "interface": "asgi3",
            # Streams a test left open are cancelled after this, so stop() cannot hang.
            "timeout_graceful_shutdown": 2,
            **config,
        }
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._socket])
        except BaseException as exc:  # reported by start() / stop() in the test's thread
            self._error = exc

    def start(self, timeout: float = 10.0) -> str:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                self._socket.close()
                raise RuntimeError(f"uvicorn exited during start-up (lifespan failed?): {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn did not start within {timeout} s")
            time.sleep(0.002)
        return self.base_url

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(timeout)
        self._socket.close()
        if self._thread.is_alive():
            raise RuntimeError(f"uvicorn on port {self.port} did not stop within {2 * timeout} s")
        if self._error is not None:
            raise RuntimeError("uvicorn failed while serving") from self._error


@contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    """Serve ``app`` on a free loopback port for the duration of the block; yields the base URL."""
    server = ServerThread(app, **config)
    base_url = server.start()
    try:
        yield base_url
    finally:
        server.stop()


@asynccontextmanager
async def aserve(app: Any, **config: Any) -> AsyncIterator[str]:
    """``serve`` for async tests: waits for start-up and shutdown without blocking the test's loop."""
    server = ServerThread(app, **config)
    base_url = await asyncio.to_thread(server.start)
    try:
        yield base_url
    finally:
        await asyncio.to_thread(server.stop)
