"""Small ASGI pieces the tests share: counting what crosses an ASGI boundary, capturing all logs."""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from retention_middleware._types import ASGIApp, Message, Receive, Scope, Send
from retention_middleware.demo import EchoModel


class CountingUpstream:
    """The echo model, counting the HTTP requests that reach it (0 means: never forwarded)."""

    def __init__(self) -> None:
        self.model = EchoModel()
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.model(scope, receive, send)


class SentMessages:
    """Wraps an app and records every message it sends, as a client at that boundary would see them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.messages: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def recording_send(message: Message) -> None:
            self.messages.append(dict(message))
            await send(message)

        await self.app(scope, receive, recording_send)

    @property
    def body_messages(self) -> list[Message]:
        return [m for m in self.messages if m["type"] == "http.response.body"]

    def clear(self) -> None:
        self.messages.clear()


def random_split(data: bytes, rng: random.Random, max_piece: int = 64) -> list[bytes]:
    """``data`` cut at random byte boundaries (mid-line and mid-UTF-8 included)."""
    pieces = []
    position = 0
    while position < len(data):
        size = rng.randint(1, max_piece)
        pieces.append(data[position : position + size])
        position += size
    return pieces or [b""]


async def read_request_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_pieces(send: Send, status: int, content_type: bytes, pieces: list[bytes]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    for index, piece in enumerate(pieces):
        await send({"type": "http.response.body", "body": piece, "more_body": index < len(pieces) - 1})


class LogCapture:
    """Every log line the process writes, through a handler on the root logger installed before the
    middleware and, on demand, a second one added later on another logger."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self._handlers: list[tuple[logging.Logger, logging.Handler]] = []

    def attach(self, logger: logging.Logger) -> None:
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        handler.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        self._handlers.append((logger, handler))

    def text(self) -> str:
        return self.stream.getvalue()

    def access_lines(self) -> list[str]:
        prefix = "INFO retention_middleware.access "
        return [line[len(prefix) :] for line in self.text().splitlines() if line.startswith(prefix)]

    def detach(self) -> None:
        for logger, handler in self._handlers:
            logger.removeHandler(handler)


@contextmanager
def capture_all_logs() -> Iterator[LogCapture]:
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    # The test's own HTTP client logs every URL it requests; it is the client, not the server.
    client_logger = logging.getLogger("httpx")
    client_level = client_logger.level
    client_logger.setLevel(logging.WARNING)
    capture = LogCapture()
    capture.attach(root)
    try:
        yield capture
    finally:
        capture.detach()
        root.setLevel(previous_level)
        client_logger.setLevel(client_level)


def sse_body(events: list[Any]) -> bytes:
    """Chat-completions style SSE: ``data: {json}`` per event, ``[DONE]`` at the end."""
    import orjson

    out = b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events)
    return out + b"data: [DONE]\n\n"


def asgi_client(app: ASGIApp, **kwargs: Any) -> Any:
    """An httpx client calling ``app`` in-process (the whole answer is read before it returns)."""
    import httpx

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", **kwargs)


async def answer_lifespan(receive: Receive, send: Send) -> None:
    """The lifespan side of a test upstream: complete start-up, then shutdown."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def run_lifespan(app: ASGIApp) -> list[Message]:
    """Drive ``app`` through start-up and shutdown, as a server would; the messages it sent back."""
    incoming: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    return sent
