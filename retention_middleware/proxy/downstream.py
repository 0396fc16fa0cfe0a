"""The client's side of one forwarded request: its body as it arrives, and its disconnect.

Per-request state of ``UpstreamProxy``, which is shared by every request and so must hold none.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from .._types import Message, Receive, Scope, Send
from ..errors import OpenAIError, send_error
from .disconnect_signal import DISCONNECT_SIGNAL, DisconnectSignal

Body = bytes | AsyncIterator[bytes] | None
"""What the upstream request carries: nothing, a body that came whole, or one still arriving."""


class ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


class Downstream:
    """``receive`` and ``send`` of one request, with what the forwarder must know about them."""

    __slots__ = ("_receive", "send", "_body_done", "_body_complete", "gone", "cancelled", "_responding", "_signal")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self.send = send
        self._body_done: asyncio.Future[None] | None = None  # made only if someone waits for it
        self._body_complete = False
        self.gone = False
        """The client went away before its answer was complete."""
        self.cancelled = False
        """``watch_disconnect`` cancelled the forwarding task."""
        self._responding = True
        self._signal: DisconnectSignal | None = None

    async def body(self) -> Body:
        """The request body for the upstream; ``gone`` is set if the client left first."""
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.gone = True
            return None
        first: bytes = message.get("body", b"")
        if message.get("more_body", False):
            # Streamed as it arrives; without a Content-Length from the client, it goes chunked.
            return self._rest_of_body(first)
        self._body_arrived()
        # A body that came whole goes with its length, and in the same write as the request head.
        return first or None

    def _body_arrived(self) -> None:
        self._body_complete = True
        if self._body_done is not None and not self._body_done.done():
            self._body_done.set_result(None)

    async def _rest_of_body(self, first: bytes) -> AsyncIterator[bytes]:
        if first:
            yield first
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                raise ClientGone
            if message.get("body"):
                yield message["body"]
            if not message.get("more_body", False):
                self._body_arrived()
                return

    def finishing(self) -> None:
        """The answer is complete, or about to be: from now on a disconnect cancels nothing.

        Called before the last message is sent, because the ASGI server reports a finished response
        with the same ``http.disconnect`` as a client that left, and the wrapping middleware may
        still be at work (a store write) in that last ``send``.
        """
        self._responding = False
        if self._signal is not None:
            self._signal.clear()

    async def answer_error(self, error: OpenAIError) -> None:
        self.finishing()
        await send_error(self.send, error)

    def watch(self, scope: Scope, task: asyncio.Task[object]) -> asyncio.Task[None] | None:
        """Have ``task`` cancelled when the client disconnects before its answer is complete: through
        the server's ``DisconnectSignal`` when it offers one, else by a watcher task (returned, for
        the caller to cancel when the request is over)."""
        signal = scope.get("extensions", {}).get(DISCONNECT_SIGNAL)
        if isinstance(signal, DisconnectSignal):
            signal.register(lambda: self._left(task))
            self._signal = signal
            return None
        return asyncio.get_running_loop().create_task(self.watch_disconnect(task))

    def _left(self, task: asyncio.Task[object]) -> None:
        if self._responding:
            self.gone = True
            self.cancelled = True
            task.cancel()

    async def note_disconnect(self) -> None:
        """Take the ``http.disconnect`` the server now has for us, so every layer in between (the
        middleware's access record) sees the client leave, as it does through the watcher."""
        await self._receive()

    async def watch_disconnect(self, task: asyncio.Task[object]) -> None:
        """Cancel ``task`` as soon as the client disconnects, unless its answer is complete."""
        # receive() belongs to the body generator until the body is complete; after that the only
        # message left to come is http.disconnect.
        if not self._body_complete:
            self._body_done = asyncio.get_running_loop().create_future()
            await self._body_done
        message: Message = await self._receive()
        while message["type"] != "http.disconnect":
            message = await self._receive()
        self._left(task)
