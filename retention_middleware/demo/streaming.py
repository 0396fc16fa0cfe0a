"""One streamed (SSE) answer of the echo model, paced per token and stopped when the client leaves.

Every streaming endpoint sends through ``Stream`` so that pacing (``chunk_delay``), the yield to the
event loop between tokens and disconnect detection behave the same for chat, completions and
Responses streams.
"""

from __future__ import annotations

import asyncio

from .._types import Receive, Send

_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


class Stream:
    """One SSE response; watches ``receive`` so generation stops when the client goes away."""

    def __init__(self, receive: Receive, send: Send, delay: float) -> None:
        self._send = send
        self._delay = delay
        self.gone = False
        self._watcher = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True

    async def start(self) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})

    async def emit(self, chunk: bytes, *, token: bool = False) -> None:
        if token:
            # Yield to the loop per token even without a delay, as a real server does between
            # tokens: other requests interleave, and the disconnect watcher gets to run.
            await asyncio.sleep(self._delay)
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def finish(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def close(self) -> None:
        self._watcher.cancel()
